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

/// The queue is over its byte bound; the connection must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

#[derive(Default)]
pub struct Outbox {
    /// Bytes ready to write.
    buf: Vec<u8>,
    /// Output waiting for the store to make record `seq` durable. Kept in order, and
    /// anything queued after it waits too, so the peer sees events in the order they
    /// happened.
    held: VecDeque<(u64, Vec<u8>)>,
    held_bytes: usize,
    /// Set once: nothing may be queued after it.
    after: Option<Action>,
    /// The shell has been told there is something to do and has not collected it yet.
    pub(crate) signalled: bool,
}

impl Outbox {
    /// Queues the bytes that `write` produces. `hold` is the record sequence number the
    /// output depends on, if any. Fails (queuing nothing) when the bound is exceeded.
    pub fn push_with(
        &mut self,
        hold: Option<u64>,
        max_bytes: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Overflow> {
        if self.after.is_some() {
            return Ok(());
        }
        let hold = hold.or_else(|| self.held.back().map(|(s, _)| *s));
        match hold {
            None => {
                let before = self.buf.len();
                write(&mut self.buf);
                if self.buf.len() + self.held_bytes > max_bytes {
                    self.buf.truncate(before);
                    return Err(Overflow);
                }
            }
            Some(seq) => {
                let mut v = Vec::new();
                write(&mut v);
                if self.buf.len() + self.held_bytes + v.len() > max_bytes {
                    return Err(Overflow);
                }
                self.held_bytes += v.len();
                self.held.push_back((seq, v));
            }
        }
        Ok(())
    }

    /// Moves held output whose record is now durable to the ready bytes.
    /// Returns whether anything became ready.
    pub fn release(&mut self, committed: u64) -> bool {
        let mut moved = false;
        while let Some((seq, _)) = self.held.front() {
            if *seq > committed {
                break;
            }
            if let Some((_, v)) = self.held.pop_front() {
                self.held_bytes -= v.len();
                self.buf.extend_from_slice(&v);
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

    /// Drops everything queued and closes: used when the peer is not reading.
    pub fn abort(&mut self) {
        self.buf.clear();
        self.held.clear();
        self.held_bytes = 0;
        self.after = Some(Action::Close);
    }

    /// The TLS layer took over the socket: output flows again.
    pub fn resume_after_tls(&mut self) {
        if self.after == Some(Action::StartTls) {
            self.after = None;
        }
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
        self.signalled = false;
        if self.held.is_empty() {
            self.after
        } else {
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.held.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.buf.len() + self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_output_keeps_order_with_later_output() {
        let mut o = Outbox::default();
        o.push_with(None, 100, |v| v.extend_from_slice(b"a"))
            .unwrap();
        o.push_with(Some(5), 100, |v| v.extend_from_slice(b"b"))
            .unwrap();
        o.push_with(None, 100, |v| v.extend_from_slice(b"c"))
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out), None);
        assert_eq!(out, b"a");
        assert!(!o.release(4));
        assert!(o.release(5));
        o.take(&mut out);
        assert_eq!(out, b"bc");
    }

    #[test]
    fn overflow_queues_nothing() {
        let mut o = Outbox::default();
        o.push_with(None, 4, |v| v.extend_from_slice(b"abc"))
            .unwrap();
        assert_eq!(
            o.push_with(None, 4, |v| v.extend_from_slice(b"de")),
            Err(Overflow)
        );
        assert_eq!(o.queued_bytes(), 3);
    }

    #[test]
    fn action_waits_for_held_output() {
        let mut o = Outbox::default();
        o.push_with(Some(1), 100, |v| v.extend_from_slice(b"x"))
            .unwrap();
        o.finish(Action::Close);
        let mut out = Vec::new();
        assert_eq!(o.take(&mut out), None);
        o.release(1);
        assert_eq!(o.take(&mut out), Some(Action::Close));
        assert_eq!(out, b"x");
    }
}
