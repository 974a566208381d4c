//! A connection's bounded queue of bytes to write, with room for output that must wait
//! until the changes it reports are durable.

use std::collections::VecDeque;

/// What the shell must do once the queued bytes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand the socket to TLS (after `<proceed/>`, RFC 6120 §5.4.2.3).
    StartTls,
    /// Close the connection.
    Close,
}

/// Output that must wait for record `seq` to be durable. `dependent`: it reports that
/// change (and is dropped if the change fails); otherwise it only must not overtake it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub seq: u64,
    pub dependent: bool,
}

/// The queue is over its byte or stanza bound; the connection must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// The bounds of one queue.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub bytes: usize,
    pub stanzas: usize,
}

struct Held {
    seq: u64,
    /// The output reports the change `seq` itself (dropped if the change fails), rather
    /// than only waiting behind such output to keep the order.
    dependent: bool,
    bytes: Vec<u8>,
}

#[derive(Default)]
pub struct Outbox {
    /// Bytes ready to write.
    buf: Vec<u8>,
    /// Output waiting for the store to make a record durable, in order: anything queued
    /// after held output waits too, so the peer sees events in the order they happened.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Pushes since the shell last took the ready bytes, plus held entries.
    stanzas: usize,
    /// Bytes the shell took last and may still be writing: they count against the bound
    /// until the next take (the shell takes again only after its write finished).
    in_flight: usize,
    /// Set once: nothing may be queued after it.
    after: Option<Action>,
    /// The shell has been told there is something to do and has not collected it yet.
    pub(crate) signalled: bool,
}

impl Outbox {
    /// Queues the bytes that `write` produces. `depends_on` is the record the output
    /// reports, if any. Fails (queuing nothing) when a bound would be exceeded.
    pub fn push_with(
        &mut self,
        hold: Option<Hold>,
        bounds: Bounds,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Overflow> {
        if self.after.is_some() {
            return Ok(());
        }
        if self.stanzas + 1 > bounds.stanzas {
            return Err(Overflow);
        }
        let order_hold = self.held.back().map(|h| Hold {
            seq: h.seq,
            dependent: false,
        });
        match hold.or(order_hold) {
            None => {
                let before = self.buf.len();
                write(&mut self.buf);
                if self.in_flight + self.buf.len() + self.held_bytes > bounds.bytes {
                    self.buf.truncate(before);
                    return Err(Overflow);
                }
            }
            Some(Hold { seq, dependent }) => {
                let mut v = Vec::new();
                write(&mut v);
                if self.in_flight + self.buf.len() + self.held_bytes + v.len() > bounds.bytes {
                    return Err(Overflow);
                }
                self.held_bytes += v.len();
                self.held.push_back(Held {
                    seq,
                    dependent,
                    bytes: v,
                });
            }
        }
        self.stanzas += 1;
        Ok(())
    }

    /// Moves held output whose record is now durable to the ready bytes.
    /// Returns whether anything became ready.
    pub fn release(&mut self, committed: u64) -> bool {
        let mut moved = false;
        while self.held.front().is_some_and(|h| h.seq <= committed) {
            if let Some(h) = self.held.pop_front() {
                self.held_bytes -= h.bytes.len();
                self.buf.extend_from_slice(&h.bytes);
                moved = true;
            }
        }
        moved
    }

    /// The store failed: output that reported the lost changes is dropped, output that
    /// only waited behind it is released. Returns whether anything became ready.
    pub fn fail_held(&mut self) -> bool {
        let mut moved = false;
        while let Some(h) = self.held.pop_front() {
            self.held_bytes -= h.bytes.len();
            self.stanzas = self.stanzas.saturating_sub(1);
            if !h.dependent {
                self.buf.extend_from_slice(&h.bytes);
                self.stanzas += 1;
                moved = true;
            }
        }
        moved
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Ends the queue with an action; the first one set wins.
    pub fn finish(&mut self, action: Action) {
        if self.after.is_none() {
            self.after = Some(action);
        }
    }

    /// The TLS layer took over the socket: output flows again.
    pub fn resume_after_tls(&mut self) {
        if self.after == Some(Action::StartTls) {
            self.after = None;
        }
    }

    /// Drops everything queued and closes: used when the peer is not reading.
    pub fn abort(&mut self) {
        self.buf.clear();
        self.held.clear();
        self.held_bytes = 0;
        self.stanzas = 0;
        self.after = Some(Action::Close);
    }

    /// `<proceed/>` was queued: the connection is between plaintext and TLS.
    pub fn starttls_pending(&self) -> bool {
        self.after == Some(Action::StartTls)
    }

    pub fn is_finished(&self) -> bool {
        self.after.is_some()
    }

    /// Hands the ready bytes to the shell by swapping buffers (no copy, no allocation in
    /// steady state) and, when everything is out, the final action. A held tail keeps the
    /// action back until it has been released and written.
    pub fn take(&mut self, into: &mut Vec<u8>) -> Option<Action> {
        into.clear();
        std::mem::swap(into, &mut self.buf);
        self.in_flight = into.len();
        self.signalled = false;
        self.stanzas = self.held.len();
        if self.held.is_empty() {
            self.after
        } else {
            None
        }
    }

    pub fn has_ready(&self) -> bool {
        !self.buf.is_empty() || (self.after.is_some() && self.held.is_empty())
    }

    pub fn queued_bytes(&self) -> usize {
        self.in_flight + self.buf.len() + self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        bytes: 100,
        stanzas: 10,
    };

    fn push(o: &mut Outbox, dep: Option<u64>, s: &[u8]) -> Result<(), Overflow> {
        let hold = dep.map(|seq| Hold {
            seq,
            dependent: true,
        });
        o.push_with(hold, B, |v| v.extend_from_slice(s))
    }

    #[test]
    fn held_output_keeps_order_with_later_output() {
        let mut o = Outbox::default();
        push(&mut o, None, b"a").unwrap();
        push(&mut o, Some(5), b"b").unwrap();
        push(&mut o, None, b"c").unwrap();
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out), None);
        assert_eq!(out, b"a");
        assert!(!o.release(4));
        assert!(o.release(5));
        o.take(&mut out);
        assert_eq!(out, b"bc");
    }

    #[test]
    fn failed_changes_drop_their_output_but_not_what_waited_behind_it() {
        let mut o = Outbox::default();
        push(&mut o, Some(3), b"result").unwrap();
        push(&mut o, None, b"<message/>").unwrap();
        assert!(o.fail_held());
        let mut out = Vec::new();
        o.take(&mut out);
        assert_eq!(out, b"<message/>");
    }

    #[test]
    fn overflow_by_bytes_or_stanzas_queues_nothing() {
        let mut o = Outbox::default();
        let small = Bounds {
            bytes: 4,
            stanzas: 10,
        };
        o.push_with(None, small, |v| v.extend_from_slice(b"abc"))
            .unwrap();
        assert_eq!(
            o.push_with(None, small, |v| v.extend_from_slice(b"de")),
            Err(Overflow)
        );
        assert_eq!(o.queued_bytes(), 3);
        let few = Bounds {
            bytes: 1000,
            stanzas: 2,
        };
        let mut o = Outbox::default();
        o.push_with(None, few, |v| v.push(b'x')).unwrap();
        o.push_with(None, few, |v| v.push(b'x')).unwrap();
        assert_eq!(o.push_with(None, few, |v| v.push(b'x')), Err(Overflow));
        let mut out = Vec::new();
        o.take(&mut out);
        assert!(
            o.push_with(None, few, |v| v.push(b'x')).is_ok(),
            "taking resets the count"
        );
    }

    #[test]
    fn action_waits_for_held_output() {
        let mut o = Outbox::default();
        push(&mut o, Some(1), b"x").unwrap();
        o.finish(Action::Close);
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out), None);
        o.release(1);
        assert_eq!(o.take(&mut out), Some(Action::Close));
        assert_eq!(out, b"x");
    }
}
