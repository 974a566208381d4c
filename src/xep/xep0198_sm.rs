//! XEP-0198 Stream Management 1.6: acknowledgements (`<r/>`/`<a/>` with 32-bit counters),
//! and resumption of a session after its TCP connection dropped.
//!
//! A session with SM keeps a copy of every stanza sent to it until the client
//! acknowledges it. When its connection drops without a closing handshake, the session
//! hibernates: it keeps its connection slot (so its memory stays inside the connection
//! bound), its presence and its unacknowledged stanzas, for the resumption time agreed
//! at `<enable/>`. A new connection that authenticates as the same account can
//! `<resume/>` it; otherwise, at the deadline, the session ends and its unacknowledged
//! messages go where a message for an unavailable resource goes (offline storage),
//! as §5 of the XEP asks. The same happens when a session ends any other way.

use std::collections::VecDeque;

use super::{Module, NS_STANZAS_XMLNS};
use crate::c2s::{C2s, Stage};
use crate::core::Core;
use crate::error::StreamCondition;
use crate::limits::{CAP_SPARE_SM_COPIES, SPARE_SM_COPY_BYTES};
use crate::router::ConnId;
use crate::xml::{NS_CLIENT, RawElement};

pub const NS_SM: &str = "urn:xmpp:sm:3";

pub static MODULE: Module = Module {
    name: "stream management",
    spec: "XEP-0198 1.6.1",
    server_features: &[],
    account_features: &[],
    stream_features: &["<sm xmlns='urn:xmpp:sm:3'/>"],
    iq: &[],
};

/// A request for acknowledgement goes out after this many unacknowledged stanzas, so a
/// client that never volunteers `<a/>` still frees our copies.
const REQUEST_EVERY: usize = 5;

/// Per-session SM state.
pub struct SmState {
    /// Opaque id for `<resume previd=''/>`.
    pub id: String,
    pub resume: bool,
    /// Agreed resumption time.
    pub max_secs: u32,
    /// Stanzas received from the client since `<enable/>` (mod 2^32).
    pub h_in: u32,
    /// Stanzas sent to the client since `<enabled/>` (mod 2^32).
    pub h_out: u32,
    /// Copies of the sent stanzas the client has not acknowledged, oldest first.
    pub unacked: VecDeque<Vec<u8>>,
    pub unacked_bytes: usize,
    pub request_outstanding: bool,
}

impl SmState {
    /// The client acknowledged `h` stanzas in all; drops those copies. Errs when `h`
    /// acknowledges more than was sent (XEP-0198 §3, `handled-count-too-high`).
    pub fn ack(&mut self, h: u32) -> Result<(), u32> {
        self.ack_into(h, &mut CopyPool::default())
    }

    /// [`SmState::ack`], handing the dropped copies' buffers to `pool` for reuse.
    pub fn ack_into(&mut self, h: u32, pool: &mut CopyPool) -> Result<(), u32> {
        let acked_before = self.h_out.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(acked_before) as usize;
        if newly > self.unacked.len() {
            return Err(self.h_out);
        }
        for _ in 0..newly {
            if let Some(s) = self.unacked.pop_front() {
                self.unacked_bytes -= s.len();
                pool.give(s);
            }
        }
        self.request_outstanding = false;
        Ok(())
    }
}

/// Buffers of acknowledged copies, kept for the next copies so that a session with
/// stream management allocates nothing per stanza: one pool per server, of at most
/// [`CAP_SPARE_SM_COPIES`] buffers of at most [`SPARE_SM_COPY_BYTES`] each.
#[derive(Default)]
pub struct CopyPool {
    spare: Vec<Vec<u8>>,
}

impl CopyPool {
    /// A copy of `stanza`, in the smallest spare buffer it fits when one does without
    /// much room to spare: copies are counted by their length against the queue bounds,
    /// so the memory they really hold must stay close to that.
    pub fn copy(&mut self, stanza: &[u8]) -> Vec<u8> {
        let need = stanza.len();
        let roomy = need + need / 2 + 64;
        let best = self
            .spare
            .iter()
            .enumerate()
            .filter(|(_, b)| (need..=roomy).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut buf = self.spare.swap_remove(i);
                buf.clear();
                buf.extend_from_slice(stanza);
                buf
            }
            None => stanza.to_vec(),
        }
    }

    /// Keeps a buffer no longer needed, if there is room and it is not too large.
    pub fn give(&mut self, buf: Vec<u8>) {
        if self.spare.len() < CAP_SPARE_SM_COPIES && buf.capacity() <= SPARE_SM_COPY_BYTES {
            self.spare.push(buf);
        }
    }
}

impl Core {
    /// `<enable/>` (only after binding, only once).
    pub(crate) fn sm_enable(&mut self, id: ConnId, raw: &RawElement) {
        let already = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .is_none_or(|s| s.sm.is_some());
        if already {
            return self.sm_failed(id, "unexpected-request");
        }
        let resume = matches!(raw.attr("resume"), Some("true") | Some("1"));
        let limits = &self.cfg.limits;
        let asked = raw.attr("max").and_then(|m| m.parse::<u32>().ok());
        let max_secs = asked
            .unwrap_or(limits.sm_resume_secs)
            .clamp(1, limits.sm_max_resume_secs);
        let mut b = [0u8; 12];
        self.rng.fill(&mut b);
        let sm_id = crate::c2s::hex(&b);
        let reply = if resume {
            format!("<enabled xmlns='urn:xmpp:sm:3' id='{sm_id}' resume='true' max='{max_secs}'/>")
        } else {
            format!("<enabled xmlns='urn:xmpp:sm:3' id='{sm_id}'/>")
        };
        // The reply goes out before any stanza counts (§4: counting starts after it).
        self.send_nonza(id, |out| out.extend_from_slice(reply.as_bytes()));
        if let Some(s) = self.conns.get_mut(id).and_then(|c| c.session.as_mut()) {
            s.sm = Some(Box::new(SmState {
                id: sm_id,
                resume,
                max_secs,
                h_in: 0,
                h_out: 0,
                unacked: VecDeque::new(),
                unacked_bytes: 0,
                request_outstanding: false,
            }));
        }
    }

    fn sm_failed(&mut self, id: ConnId, condition: &str) {
        let reply = format!(
            "<failed xmlns='urn:xmpp:sm:3'><{condition} xmlns='{NS_STANZAS_XMLNS}'/></failed>"
        );
        self.send_nonza(id, |out| out.extend_from_slice(reply.as_bytes()));
    }

    /// `<r/>`: answer with the count of stanzas handled.
    pub(crate) fn sm_request(&mut self, id: ConnId) {
        let Some(h) = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .and_then(|s| s.sm.as_ref())
            .map(|sm| sm.h_in)
        else {
            return self.sm_failed(id, "unexpected-request");
        };
        self.send_nonza(id, |out| {
            out.extend_from_slice(b"<a xmlns='urn:xmpp:sm:3' h='");
            out.extend_from_slice(h.to_string().as_bytes());
            out.extend_from_slice(b"'/>");
        });
    }

    /// `<a h=''/>`: the client acknowledges what we sent.
    pub(crate) fn sm_answer(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        let Some(h) = raw.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
            return self.stream_error(
                id,
                proto,
                StreamCondition::BadFormat,
                Some("<a/> needs a numeric h"),
            );
        };
        let result = self
            .conns
            .get_mut(id)
            .and_then(|c| c.session.as_mut())
            .and_then(|s| s.sm.as_mut())
            .map(|sm| sm.ack_into(h, &mut self.scratch.sm_copies));
        if let Some(Err(sent)) = result {
            let text = format!("you acknowledged {h} stanzas but only {sent} were sent");
            self.stream_error(id, proto, StreamCondition::UndefinedCondition, Some(&text));
        }
    }

    /// Counts a stanza received from an SM session.
    pub(crate) fn sm_count_inbound(&mut self, id: ConnId) {
        if let Some(sm) = self
            .conns
            .get_mut(id)
            .and_then(|c| c.session.as_mut())
            .and_then(|s| s.sm.as_mut())
        {
            sm.h_in = sm.h_in.wrapping_add(1);
        }
    }

    /// Keeps a copy of a stanza sent to an SM session; returns whether an `<r/>` should
    /// follow it, or `Err` when the client lets too much go unacknowledged.
    pub(crate) fn sm_record_outbound(&mut self, id: ConnId, stanza: &[u8]) -> Result<bool, ()> {
        let (max_bytes, max_stanzas) = (
            self.cfg.limits.max_outbound_queue_bytes,
            self.cfg.limits.max_outbound_queue_stanzas,
        );
        let Some(sm) = self
            .conns
            .get_mut(id)
            .and_then(|c| c.session.as_mut())
            .and_then(|s| s.sm.as_mut())
        else {
            return Ok(false);
        };
        if sm.unacked_bytes + stanza.len() > max_bytes || sm.unacked.len() + 1 > max_stanzas {
            return Err(());
        }
        sm.h_out = sm.h_out.wrapping_add(1);
        sm.unacked_bytes += stanza.len();
        sm.unacked.push_back(self.scratch.sm_copies.copy(stanza));
        let ask = !sm.request_outstanding && sm.unacked.len() >= REQUEST_EVERY;
        if ask {
            sm.request_outstanding = true;
        }
        Ok(ask)
    }

    /// Whether a connection that just dropped should keep its session for resumption.
    pub(crate) fn sm_should_hibernate(&self, id: ConnId) -> bool {
        !self.shutting_down_now()
            && self.conns.get(id).is_some_and(|c| {
                !c.out.is_finished()
                    && c.session
                        .as_ref()
                        .and_then(|s| s.sm.as_ref())
                        .is_some_and(|sm| sm.resume)
            })
    }

    /// The TCP connection is gone but the session waits for `<resume/>`.
    pub(crate) fn sm_hibernate(&mut self, id: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let secs = conn
            .session
            .as_ref()
            .and_then(|s| s.sm.as_ref())
            .map_or(0, |sm| sm.max_secs);
        conn.proto = None;
        // Unsent bytes are copies of stanzas in the unacknowledged queue: resent on resume.
        conn.out = crate::core::Outbox::default();
        let until = now + u64::from(secs) * 1000;
        conn.hibernating_until = Some(until);
        log::info!("[{id}] connection lost; session kept {secs} s for resumption");
        self.arm(until);
    }

    /// `<resume previd='' h=''/>` after authentication, instead of binding.
    pub(crate) fn sm_resume(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        let (Some(previd), Some(h)) = (
            raw.attr("previd"),
            raw.attr("h").and_then(|h| h.parse::<u32>().ok()),
        ) else {
            return self.sm_failed(id, "bad-request");
        };
        let Some(account) = self
            .conns
            .get(id)
            .and_then(|c| c.user.as_ref())
            .map(|(_, a)| *a)
        else {
            return;
        };
        let old = self.online.resources(account).iter().copied().find(|c| {
            *c != id
                && self
                    .conns
                    .get(*c)
                    .and_then(|x| x.session.as_ref())
                    .and_then(|s| s.sm.as_ref())
                    .is_some_and(|sm| sm.resume && sm.id == previd)
        });
        let Some(old) = old else {
            return self.sm_failed(id, "item-not-found");
        };
        let Some(mut session) = self.conns.get_mut(old).and_then(|c| c.session.take()) else {
            return;
        };
        let still_connected = self
            .conns
            .get(old)
            .is_some_and(|c| c.hibernating_until.is_none());
        if still_connected {
            // §5: a resumed session replaces the old stream; that connection just closes.
            if let Some(c) = self.conns.get_mut(old) {
                c.out.abort();
            }
            self.signal_conn(old);
        } else {
            self.free_slot(old);
        }
        self.online.replace(account, old, id);
        let Some(sm) = session.sm.as_mut() else {
            return;
        };
        if let Err(sent) = sm.ack(h) {
            let text = format!("you acknowledged {h} stanzas but only {sent} were sent");
            if let Some(c) = self.conns.get_mut(id) {
                c.session = Some(session);
            }
            return self.stream_error(id, proto, StreamCondition::UndefinedCondition, Some(&text));
        }
        let h_in = sm.h_in;
        let resend: Vec<Vec<u8>> = sm.unacked.iter().cloned().collect();
        let jid = session.jid.clone();
        if let Some(c) = self.conns.get_mut(id) {
            c.session = Some(session);
            c.deadline = None;
        }
        proto.stage = Stage::Bound;
        let previd = previd.to_string();
        self.send_nonza(id, |out| {
            out.extend_from_slice(b"<resumed xmlns='urn:xmpp:sm:3' h='");
            out.extend_from_slice(h_in.to_string().as_bytes());
            out.extend_from_slice(b"' previd='");
            crate::xml::escape::escape_attr(out, &previd);
            out.extend_from_slice(b"'/>");
        });
        // The copies are already counted; they go out again as they are. If a change
        // they report might not be durable yet, they wait for it like everything else.
        let pending = self.last_record_seq();
        let hold = (pending > self.committed_seq()).then_some(crate::core::Hold {
            seq: pending,
            dependent: false,
        });
        for stanza in resend {
            self.push_output(id, hold, |out| out.extend_from_slice(&stanza));
        }
        log::info!("[{id}] resumed the session of {jid} from [{old}]");
        self.csi_flush(id);
        let idle = u64::from(self.cfg.limits.idle_secs) * 1000;
        self.arm(self.now + idle);
    }

    /// A hibernating session's time is up.
    pub(crate) fn sm_expire(&mut self, id: ConnId) {
        log::info!("[{id}] resumption time over");
        self.end_session(id);
        self.free_slot(id);
    }

    /// Stanzas a session never had acknowledged, re-routed when it ends for good (§5):
    /// messages go where a message for an unavailable resource goes.
    pub(crate) fn sm_reroute_unacked(&mut self, unacked: VecDeque<Vec<u8>>) {
        for bytes in unacked {
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let Ok(raw) = RawElement::from_xml(text, NS_CLIENT) else {
                continue;
            };
            if raw.name() == "message" {
                self.redeliver_message(&raw);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SmState {
        SmState {
            id: "x".into(),
            resume: true,
            max_secs: 600,
            h_in: 0,
            h_out: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            request_outstanding: false,
        }
    }

    fn send(s: &mut SmState, n: usize) {
        for i in 0..n {
            s.h_out = s.h_out.wrapping_add(1);
            let b = format!("<message id='{i}'/>").into_bytes();
            s.unacked_bytes += b.len();
            s.unacked.push_back(b);
        }
    }

    #[test]
    fn acks_drop_copies_and_too_high_is_an_error() {
        let mut s = state();
        send(&mut s, 5);
        assert_eq!(s.ack(3), Ok(()));
        assert_eq!(s.unacked.len(), 2);
        assert_eq!(s.ack(3), Ok(()), "a repeated ack changes nothing");
        assert_eq!(s.ack(6), Err(5));
        assert_eq!(s.ack(5), Ok(()));
        assert!(s.unacked.is_empty() && s.unacked_bytes == 0);
    }

    #[test]
    fn acknowledged_copies_are_reused_up_to_a_bound() {
        let mut s = state();
        send(&mut s, 3);
        let mut pool = CopyPool::default();
        assert_eq!(s.ack_into(3, &mut pool), Ok(()));
        assert_eq!(pool.spare.len(), 3);
        let copy = pool.copy(b"<message/>");
        assert_eq!(copy, b"<message/>");
        assert_eq!(pool.spare.len(), 2);
        pool.give(Vec::with_capacity(1024));
        let small = pool.copy(b"<r/>");
        assert!(
            small.capacity() < 1024,
            "not a buffer much larger than the copy"
        );
        assert_eq!(pool.spare.len(), 2);
        let large = pool.copy(&[b'x'; 1000]);
        assert_eq!(large.capacity(), 1024, "one that fits");
        assert_eq!(pool.spare.len(), 1);
        pool.give(Vec::with_capacity(SPARE_SM_COPY_BYTES + 1));
        assert_eq!(pool.spare.len(), 1, "too large to keep");
        for _ in 0..2 * CAP_SPARE_SM_COPIES {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.spare.len(), CAP_SPARE_SM_COPIES);
    }

    #[test]
    fn counters_wrap_at_32_bits() {
        let mut s = state();
        s.h_out = u32::MAX - 1;
        send(&mut s, 4);
        assert_eq!(s.h_out, 2);
        assert_eq!(s.ack(u32::MAX), Ok(()));
        assert_eq!(s.unacked.len(), 3);
        assert_eq!(s.ack(2), Ok(()));
        assert!(s.unacked.is_empty());
    }
}
