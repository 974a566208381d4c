//! XEP-0352 Client State Indication 1.0: while a client says it is inactive (a phone in a
//! pocket), presence updates and chat states are held back, keeping only the latest per
//! sender, and everything held goes out, in order, before the next stanza that matters
//! (a message with a body, an iq, an error) or when the client becomes active again.
//! The buffer is bounded; when full it is flushed rather than grown.

use super::Module;
use crate::core::Core;
use crate::router::ConnId;

pub const NS_CSI: &str = "urn:xmpp:csi:0";

pub static MODULE: Module = Module {
    name: "client state indication",
    spec: "XEP-0352 1.0.0",
    server_features: &[],
    account_features: &[],
    stream_features: &["<csi xmlns='urn:xmpp:csi:0'/>"],
    iq: &[],
};

pub use crate::limits::{CSI_MAX_HELD, CSI_MAX_HELD_BYTES};

/// How a stanza for a session may be treated while the client is inactive. The router
/// names the sender with a borrowed `&str` (`Urgency<&str>`); only a stanza actually held
/// keeps an owned copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency<S = String> {
    /// Deliver now (and flush what was held first, to keep order).
    Now,
    /// Presence from this sender: only the latest matters.
    Presence(S),
    /// A chat state notification (typing…) from this sender: only the latest matters.
    ChatState(S),
}

impl Urgency<&str> {
    fn into_owned(self) -> Urgency {
        match self {
            Urgency::Now => Urgency::Now,
            Urgency::Presence(s) => Urgency::Presence(s.to_string()),
            Urgency::ChatState(s) => Urgency::ChatState(s.to_string()),
        }
    }
}

#[derive(Default)]
pub struct CsiState {
    pub inactive: bool,
    held: Vec<(Urgency, Vec<u8>)>,
    held_bytes: usize,
}

impl CsiState {
    /// Holds `stanza` (replacing an older one of the same kind from the same sender).
    /// Returns false when the buffer is full and must be flushed first.
    fn hold(&mut self, urgency: Urgency, stanza: Vec<u8>) -> Result<(), Vec<u8>> {
        if let Some(pos) = self.held.iter().position(|(u, _)| *u == urgency) {
            let (_, old) = self.held.remove(pos);
            self.held_bytes -= old.len();
        }
        if self.held.len() >= CSI_MAX_HELD || self.held_bytes + stanza.len() > CSI_MAX_HELD_BYTES {
            return Err(stanza);
        }
        self.held_bytes += stanza.len();
        self.held.push((urgency, stanza));
        Ok(())
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.held_bytes = 0;
        self.held.drain(..).map(|(_, s)| s).collect()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl Core {
    /// `<active/>` / `<inactive/>` from the client.
    pub(crate) fn csi_set(&mut self, id: ConnId, inactive: bool) {
        if let Some(s) = self.conns.get_mut(id).and_then(|c| c.session.as_mut()) {
            s.csi.inactive = inactive;
        }
        if !inactive {
            self.csi_flush(id);
        }
    }

    /// Sends everything held for the session, in order.
    pub(crate) fn csi_flush(&mut self, id: ConnId) {
        let held = match self.conns.get_mut(id).and_then(|c| c.session.as_mut()) {
            Some(s) => s.csi.take(),
            None => return,
        };
        for stanza in held {
            self.send(id, |out| out.extend_from_slice(&stanza));
        }
    }

    /// Sends a stanza to a session, holding it back while the client is inactive if it
    /// can wait.
    pub(crate) fn send_with_urgency(
        &mut self,
        id: ConnId,
        urgency: Urgency<&str>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let inactive = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| s.csi.inactive);
        if !inactive {
            return self.send(id, write);
        }
        if urgency == Urgency::Now {
            self.csi_flush(id);
            return self.send(id, write);
        }
        let mut stanza = Vec::new();
        write(&mut stanza);
        let held = self
            .conns
            .get_mut(id)
            .and_then(|c| c.session.as_mut())
            .map(|s| s.csi.hold(urgency.into_owned(), stanza));
        if let Some(Err(stanza)) = held {
            self.csi_flush(id);
            self.send(id, |out| out.extend_from_slice(&stanza));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_presence_per_sender_is_kept_in_order() {
        let mut c = CsiState {
            inactive: true,
            ..CsiState::default()
        };
        c.hold(Urgency::Presence("a".into()), b"a1".to_vec())
            .unwrap();
        c.hold(Urgency::Presence("b".into()), b"b1".to_vec())
            .unwrap();
        c.hold(Urgency::ChatState("a".into()), b"ta".to_vec())
            .unwrap();
        c.hold(Urgency::Presence("a".into()), b"a2".to_vec())
            .unwrap();
        assert_eq!(
            c.take(),
            vec![b"b1".to_vec(), b"ta".to_vec(), b"a2".to_vec()]
        );
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut c = CsiState::default();
        for i in 0..CSI_MAX_HELD {
            c.hold(Urgency::Presence(format!("u{i}")), vec![b'x'; 10])
                .unwrap();
        }
        assert!(
            c.hold(Urgency::Presence("one-more".into()), vec![b'x'; 10])
                .is_err()
        );
        let mut c = CsiState::default();
        assert!(
            c.hold(
                Urgency::Presence("big".into()),
                vec![b'x'; CSI_MAX_HELD_BYTES + 1]
            )
            .is_err()
        );
    }
}
