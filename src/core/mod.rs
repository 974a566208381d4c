//! The protocol core: every connection's state, the routing table and the account state,
//! driven by the shell through a handful of entry points and never touching I/O.
//!
//! Inputs: [`Core::open`], [`Core::handle_bytes`], [`Core::tls_established`],
//! [`Core::handle_closed`], [`Core::handle_timeout`], [`Core::records_committed`], the
//! admin calls and [`Core::shutdown`]. Outputs: [`Core::take_ready`] names connections with
//! something to write, [`Core::take_output`] hands over their bytes and next action,
//! [`Core::take_records`] the changes to make durable, [`Core::next_timeout`] when to call
//! back. Like quinn-proto's `Connection`, but for a whole server.

mod outbox;
pub(crate) mod route;

use std::collections::BTreeMap;

pub use outbox::{Action, Outbox};

use crate::c2s::{C2s, write_stream_error, write_stream_header};
use crate::db::{Db, Record};
use crate::error::StreamCondition;
use crate::jid::Jid;
use crate::limits::{CAP_CONNECTIONS, Limits};
use crate::router::{AccountId, ConnId, OnlineTable, SlotTable};
use crate::sasl::Credentials;
use crate::time::{Entropy, Millis};
use crate::xml::{FrameLimits, RawElement};

/// What the core needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub domain: String,
    pub limits: Limits,
    pub require_encryption: bool,
    pub allow_plain_unencrypted: bool,
    /// Keys the fake SCRAM salts of unknown users (so they look like real accounts).
    pub server_secret: Vec<u8>,
}

/// Directed presence recipients remembered per session (RFC 6121 §4.6.3), bounded so a
/// client cannot grow the session by sending presence to many addresses.
pub const CAP_DIRECTED_PRESENCE: usize = 32;

/// A bound resource.
pub struct Session {
    pub jid: Jid,
    pub account: AccountId,
    /// Initial presence was sent and no unavailable since (RFC 6121 §4.2, §4.5).
    pub available: bool,
    pub priority: i8,
    /// The last available presence, re-sent to contacts that come online (probes).
    pub last_presence: Option<RawElement>,
    /// The resource asked for the roster, so it receives roster pushes (RFC 6121 §2.1.6).
    pub interested: bool,
    /// Entities that got directed available presence and must get unavailable at logout.
    pub directed: Vec<Jid>,
}

impl Session {
    pub fn new(jid: Jid, account: AccountId) -> Session {
        Session {
            jid,
            account,
            available: false,
            priority: 0,
            last_presence: None,
            interested: false,
            directed: Vec::new(),
        }
    }
}

/// One client connection.
pub(crate) struct Conn {
    pub(crate) out: Outbox,
    /// Taken out while this connection's input is processed (so the rest of the core can
    /// be borrowed), and dropped once the connection is finished.
    pub(crate) proto: Option<Box<C2s>>,
    pub(crate) user: Option<(String, AccountId)>,
    pub(crate) session: Option<Session>,
    pub(crate) deadline: Option<Millis>,
    /// Prefixes the client declared on its stream header, copied into forwarded stanzas.
    pub(crate) extra_prefixes: Vec<(String, String)>,
}

/// Connection refused: the table is full (or the server shutting down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// Errors of the admin interface (CLI through the control socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    Exists,
    NoSuchUser,
    TooManyAccounts,
    InvalidJid,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminError::Exists => "the account already exists",
            AdminError::NoSuchUser => "no such account",
            AdminError::TooManyAccounts => "the server holds its maximum number of accounts",
            AdminError::InvalidJid => "not a valid address of this server",
        })
    }
}

pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) conns: SlotTable<Conn, CAP_CONNECTIONS>,
    pub(crate) online: OnlineTable,
    pub(crate) db: Db,
    pub(crate) accounts: BTreeMap<String, AccountId>,
    next_account: u32,
    pub(crate) rng: Box<dyn Entropy + Send>,
    pub(crate) now: Millis,
    /// Records not yet handed to the store; record number `k` is the k-th ever made.
    pending_records: Vec<Record>,
    next_seq: u64,
    committed_seq: u64,
    /// Set while handling one input whose changes were persisted: later output of that
    /// input waits for the record to be durable (acknowledge only what would survive a
    /// power cut).
    hold: Option<u64>,
    held_conns: Vec<ConnId>,
    ready: Vec<ConnId>,
    /// Connections whose queue overflowed, torn down once the current input is done.
    overflowed: Vec<ConnId>,
    next_deadline: Option<Millis>,
    shutting_down: bool,
}

impl Core {
    pub fn new(cfg: CoreConfig, db: Db, rng: Box<dyn Entropy + Send>) -> Core {
        let mut accounts = BTreeMap::new();
        let mut next_account = 0u32;
        for name in db.users.keys() {
            accounts.insert(name.clone(), AccountId(next_account));
            next_account += 1;
        }
        Core {
            conns: SlotTable::new(cfg.limits.max_connections),
            online: OnlineTable::new(cfg.limits.max_resources_per_account),
            cfg,
            db,
            accounts,
            next_account,
            rng,
            now: Millis(0),
            pending_records: Vec::new(),
            next_seq: 1,
            committed_seq: 0,
            hold: None,
            held_conns: Vec::new(),
            ready: Vec::new(),
            overflowed: Vec::new(),
            next_deadline: None,
            shutting_down: false,
        }
    }

    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn frame_limits(&self, authenticated: bool) -> FrameLimits {
        let l = &self.cfg.limits;
        FrameLimits {
            max_stanza_bytes: if authenticated {
                l.max_stanza_bytes
            } else {
                l.max_stanza_bytes_preauth
            },
            max_depth: l.max_xml_depth,
            max_attributes: l.max_xml_attributes,
        }
    }

    /// Bytes to write to a connection that was refused before it got a slot
    /// (RFC 6120 §4.9.1.1: header, error, close).
    pub fn refusal(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_stream_header(&mut out, &self.cfg.domain, "refused", None);
        let cond = if self.shutting_down {
            StreamCondition::SystemShutdown
        } else {
            StreamCondition::ResourceConstraint
        };
        write_stream_error(
            &mut out,
            cond,
            Some("the server is at its connection limit"),
        );
        out
    }

    /// A new TCP connection (already through TLS for a direct-TLS listener, in which case
    /// `tls` carries the channel-binding data if the TLS layer could export it).
    pub fn open(&mut self, tls: Option<Option<Vec<u8>>>, now: Millis) -> Result<ConnId, Refused> {
        self.now = now;
        if self.shutting_down {
            return Err(Refused);
        }
        let limits = self.frame_limits(false);
        let deadline = now + u64::from(self.cfg.limits.auth_timeout_secs) * 1000;
        let (is_tls, cb) = match tls {
            Some(cb) => (true, cb),
            None => (false, None),
        };
        let id = self
            .conns
            .insert_with(|_| Conn {
                out: Outbox::default(),
                proto: Some(Box::new(C2s::new(limits, is_tls, cb))),
                user: None,
                session: None,
                deadline: Some(deadline),
                extra_prefixes: Vec::new(),
            })
            .map_err(|_| Refused)?;
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(id)
    }

    /// Bytes read from a connection.
    pub fn handle_bytes(&mut self, id: ConnId, data: &[u8], now: Millis) {
        self.now = now;
        let Some(mut proto) = self.conns.get_mut(id).and_then(|c| c.proto.take()) else {
            return;
        };
        if proto.tls_pending || self.conns.get(id).is_some_and(|c| c.out.is_finished()) {
            // Bytes after <proceed/> but before the handshake, or after we decided to
            // close: never interpreted.
            self.put_proto(id, proto);
            return;
        }
        if let Err(e) = proto.framer.feed(data) {
            self.stream_error(id, &mut proto, e.into(), None);
        }
        while !self.conns.get(id).is_some_and(|c| c.out.is_finished()) {
            self.hold = None;
            match proto.framer.next_frame() {
                Ok(Some(frame)) => self.c2s_frame(id, &mut proto, frame),
                Ok(None) => break,
                Err(e) => {
                    self.stream_error(id, &mut proto, e.into(), None);
                    break;
                }
            }
        }
        self.hold = None;
        self.put_proto(id, proto);
        self.settle();
    }

    fn put_proto(&mut self, id: ConnId, proto: Box<C2s>) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.proto = Some(proto);
        }
    }

    /// The TLS handshake after `<proceed/>` finished.
    pub fn tls_established(&mut self, id: ConnId, channel_binding: Option<Vec<u8>>, now: Millis) {
        self.now = now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(proto) = conn.proto.as_mut() {
            proto.tls = true;
            proto.tls_pending = false;
            proto.channel_binding = channel_binding;
        }
        conn.out.resume_after_tls();
    }

    /// The connection is gone (peer closed, I/O error, or we closed it).
    pub fn handle_closed(&mut self, id: ConnId, now: Millis) {
        self.now = now;
        self.end_session(id);
        self.conns.remove(id);
        self.held_conns.retain(|c| *c != id);
        self.settle();
    }

    /// Collects the connections that have output or an action pending.
    pub fn take_ready(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(into, &mut self.ready);
    }

    /// Swaps the connection's ready bytes into `into`; returns the action to take after
    /// writing them.
    pub fn take_output(&mut self, id: ConnId, into: &mut Vec<u8>) -> Option<Action> {
        match self.conns.get_mut(id) {
            Some(conn) => conn.out.take(into),
            None => {
                into.clear();
                Some(Action::Close)
            }
        }
    }

    pub fn next_timeout(&self) -> Option<Millis> {
        self.next_deadline
    }

    /// Closes connections whose deadline passed (unauthenticated too long).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        let mut expired = Vec::new();
        let mut next: Option<Millis> = None;
        for (id, conn) in self.conns.iter_mut() {
            if let Some(d) = conn.deadline {
                if d <= now {
                    conn.deadline = None;
                    expired.push(id);
                } else {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        self.next_deadline = next;
        for id in expired {
            log::info!("[{id}] closed: not authenticated in time");
            self.kill(
                id,
                StreamCondition::ConnectionTimeout,
                Some("authentication took too long"),
            );
        }
        self.settle();
    }

    /// Changes to make durable, in order; returns the number of the last one.
    pub fn take_records(&mut self, into: &mut Vec<Record>) -> Option<u64> {
        into.clear();
        if self.pending_records.is_empty() {
            return None;
        }
        std::mem::swap(into, &mut self.pending_records);
        Some(self.next_seq - 1)
    }

    /// Records up to `seq` are durable: release the output that waited for them.
    pub fn records_committed(&mut self, seq: u64) {
        self.committed_seq = self.committed_seq.max(seq);
        let committed = self.committed_seq;
        let mut still_held = Vec::new();
        let conns = std::mem::take(&mut self.held_conns);
        for id in conns {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if conn.out.release(committed) {
                self.signal(id);
            }
            if self.conns.get(id).is_some_and(|c| c.out.has_held()) {
                still_held.push(id);
            }
        }
        self.held_conns = still_held;
    }

    /// Number of the last record made (0 when none).
    pub fn last_record_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn has_pending_records(&self) -> bool {
        !self.pending_records.is_empty()
    }

    /// SIGTERM: every stream ends with `<system-shutdown/>` (RFC 6120 §4.9.3.17).
    pub fn shutdown(&mut self, now: Millis) {
        self.now = now;
        self.shutting_down = true;
        let ids: Vec<ConnId> = self.conns.ids().collect();
        for id in ids {
            self.kill(id, StreamCondition::SystemShutdown, None);
        }
        self.settle();
    }

    // ---- admin interface (the CLI, through the shell's control socket) ----

    pub fn admin_user_list(&self) -> Vec<String> {
        self.db
            .users
            .keys()
            .map(|u| format!("{u}@{}", self.cfg.domain))
            .collect()
    }

    /// Creates an account (`create`) or changes its password; returns the record number
    /// to wait for before reporting success.
    pub fn admin_user_set(
        &mut self,
        user: &str,
        credentials: Credentials,
        create: bool,
    ) -> Result<u64, AdminError> {
        let exists = self.db.user(user).is_some();
        if create && exists {
            return Err(AdminError::Exists);
        }
        if !create && !exists {
            return Err(AdminError::NoSuchUser);
        }
        if create && self.db.users.len() >= self.cfg.limits.max_accounts {
            return Err(AdminError::TooManyAccounts);
        }
        let seq = self.persist(Record::UserSet {
            user: user.to_string(),
            credentials,
        });
        if create {
            self.accounts
                .insert(user.to_string(), AccountId(self.next_account));
            self.next_account += 1;
        }
        self.hold = None;
        Ok(seq)
    }

    /// Deletes an account and closes its sessions.
    pub fn admin_user_delete(&mut self, user: &str) -> Result<u64, AdminError> {
        if self.db.user(user).is_none() {
            return Err(AdminError::NoSuchUser);
        }
        if let Some(account) = self.accounts.remove(user) {
            let sessions: Vec<ConnId> = self.online.resources(account).to_vec();
            for id in sessions {
                self.kill(id, StreamCondition::NotAuthorized, Some("account deleted"));
            }
        }
        let seq = self.persist(Record::UserDelete {
            user: user.to_string(),
        });
        self.hold = None;
        self.settle();
        Ok(seq)
    }

    // ---- internal services for protocol modules ----

    /// Applies a change and queues it for the store. Output produced afterwards while
    /// handling the same input is held until the change is durable.
    pub(crate) fn persist(&mut self, record: Record) -> u64 {
        self.db.apply(&record);
        self.pending_records.push(record);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.hold = Some(seq);
        seq
    }

    fn signal(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.out.signalled
        {
            conn.out.signalled = true;
            self.ready.push(id);
        }
    }

    /// Queues output for a connection. A peer that does not read until its queue is full
    /// loses its connection; everyone else goes on (STYLE.md: bounded outbound queues).
    pub(crate) fn send(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) {
        let max = self.cfg.limits.max_outbound_queue_bytes;
        let hold = self.hold;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let was_held = conn.out.has_held();
        match conn.out.push_with(hold, max, write) {
            Ok(()) => {
                if conn.out.has_held() {
                    if !was_held {
                        self.held_conns.push(id);
                    }
                } else {
                    self.signal(id);
                }
            }
            Err(outbox::Overflow) => {
                log::warn!("[{id}] outbound queue over {max} bytes: closing the connection");
                self.overflowed.push(id);
            }
        }
    }

    pub(crate) fn finish(&mut self, id: ConnId, action: Action) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.out.finish(action);
            if !conn.out.has_held() {
                self.signal(id);
            }
        }
    }

    /// Ends a connection with a stream error.
    pub(crate) fn kill(&mut self, id: ConnId, cond: StreamCondition, text: Option<&str>) {
        if self.conns.get(id).is_none_or(|c| c.out.is_finished()) {
            return;
        }
        let header_needed = self
            .conns
            .get(id)
            .and_then(|c| c.proto.as_ref())
            .is_some_and(|p| !p.header_sent);
        if header_needed {
            let domain = self.cfg.domain.clone();
            self.send(id, |out| write_stream_header(out, &domain, "closing", None));
        }
        // Output of the session (e.g. a <conflict/>) must not wait for unrelated records.
        let hold = self.hold.take();
        self.send(id, |out| write_stream_error(out, cond, text));
        self.hold = hold;
        self.finish(id, Action::Close);
        self.end_session(id);
    }

    /// Tears down the session of a connection: it leaves the routing table and its
    /// contacts see it go offline (RFC 6121 §4.5.2). Idempotent.
    pub(crate) fn end_session(&mut self, id: ConnId) {
        let Some(session) = self.conns.get_mut(id).and_then(|c| c.session.take()) else {
            return;
        };
        self.online.remove(session.account, id);
        log::info!("[{id}] session of {} ended", session.jid);
        self.presence_session_ended(id, session);
    }

    /// Tears down connections whose queues overflowed, until none is left (tearing one
    /// down sends presence that may overflow another).
    fn settle(&mut self) {
        while let Some(id) = self.overflowed.pop() {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.out.abort();
            }
            self.signal(id);
            self.end_session(id);
        }
    }
}

#[cfg(test)]
mod tests;
