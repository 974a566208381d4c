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
pub(crate) mod scratch;
mod throttle;
mod undo;

use core::net::IpAddr;
use std::collections::{BTreeMap, VecDeque};

pub use outbox::{Action, Bounds, Hold, Outbox};
pub use throttle::AuthThrottle;

use crate::c2s::{C2s, write_stream_error, write_stream_header};
use crate::db::{Db, Record};
use crate::error::StreamCondition;
use crate::jid::Jid;
use crate::limits::{CAP_CONNECTIONS, Limits, PROBE_TIMEOUT_SECS, SWEEP_INTERVAL_MS};
use crate::router::{AccountId, ConnId, OnlineTable, SlotTable};
use crate::sasl::Credentials;
use crate::time::{Entropy, Millis};
use crate::xml::{FrameLimits, RawElement};
use heapless::index_map::FnvIndexMap;
use undo::Undo;

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

pub use crate::limits::CAP_DIRECTED_PRESENCE;

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
    /// XEP-0198 state once the client enabled stream management.
    pub sm: Option<Box<crate::xep::xep0198_sm::SmState>>,
    /// XEP-0280: the resource receives carbon copies.
    pub carbons: bool,
    /// XEP-0352: whether the client is inactive, and what is held back meanwhile.
    pub csi: crate::xep::xep0352_csi::CsiState,
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
            sm: None,
            carbons: false,
            csi: Default::default(),
        }
    }
}

/// One client connection.
pub(crate) struct Conn {
    pub(crate) ip: IpAddr,
    pub(crate) out: Outbox,
    /// Taken out while this connection's input is processed (so the rest of the core can
    /// be borrowed), and dropped once the connection is finished.
    pub(crate) proto: Option<Box<C2s>>,
    pub(crate) user: Option<(String, AccountId)>,
    pub(crate) session: Option<Session>,
    /// The connection must have bound a resource by then (RFC 6120 leaves the policy to
    /// the server; unauthenticated connections must not hold table slots).
    pub(crate) deadline: Option<Millis>,
    /// Last time anything arrived, and when an idle probe (ping) was sent.
    pub(crate) last_input: Millis,
    pub(crate) probe_sent: Option<Millis>,
    /// Output withheld until then: the answer to a throttled login attempt.
    pub(crate) paused_until: Option<Millis>,
    /// The TCP connection is gone; the session waits for XEP-0198 resumption until then.
    pub(crate) hibernating_until: Option<Millis>,
    /// Prefixes the client declared on its stream header, copied into forwarded stanzas.
    pub(crate) extra_prefixes: Vec<(String, String)>,
}

/// Why a connection was refused before it got a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The connection table is at `max_connections`.
    Full,
    /// The address already has `max_connections_per_ip` connections.
    PerAddress,
    ShuttingDown,
}

/// Who asked for a change, so an error can be sent if the change cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Requester {
    pub conn: ConnId,
    /// The request: an iq whose result was held, or a message that was to be stored.
    pub kind: crate::stanza::Kind,
    pub stanza_id: Option<String>,
    /// The requester's full JID (the error's `to`) and the request's `to` (its `from`).
    pub to: String,
    pub from: Option<String>,
}

/// A change applied in memory that the store has not yet confirmed.
struct Uncommitted {
    seq: u64,
    change: Change,
    requester: Option<Requester>,
}

/// What an uncommitted change did in memory, so it can be taken back.
enum Change {
    Db(Box<Undo>),
    /// An offline message was queued for `account`.
    OfflineQueued {
        account: String,
        id: u64,
    },
    /// Nothing to take back in memory (an archive-only write).
    None,
}

/// Errors of the admin interface (CLI through the control socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    Exists,
    NoSuchUser,
    TooManyAccounts,
    InvalidJid,
    /// Issue 7: the server holds its maximum number of registration invitations.
    TooManyInvites,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminError::Exists => "the account already exists",
            AdminError::NoSuchUser => "no such account",
            AdminError::TooManyAccounts => "the server holds its maximum number of accounts",
            AdminError::InvalidJid => "not a valid address of this server",
            AdminError::TooManyInvites => {
                "the server holds its maximum number of unused invitations"
            }
        })
    }
}

pub struct Core {
    pub(crate) cfg: CoreConfig,
    // Boxed: the two fixed-capacity tables are ~128 KiB together; held inline they made
    // every move of the core a stack copy of that size, and the start-up stack stays resident.
    pub(crate) conns: Box<SlotTable<Conn, CAP_CONNECTIONS>>,
    pub(crate) online: Box<OnlineTable>,
    pub(crate) db: Db,
    pub(crate) accounts: BTreeMap<String, AccountId>,
    next_account: u32,
    pub(crate) rng: Box<dyn Entropy + Send>,
    pub(crate) now: Millis,
    /// Records not yet handed to the store; record number `k` is the k-th ever made.
    pending_records: Vec<Record>,
    /// Archive writes not yet handed to the store; they share the record numbering.
    pending_archive: Vec<crate::archive::ArchiveRecord>,
    pub(crate) next_archive_id: u64,
    /// Offline messages per account, oldest first (the in-memory side of the archive).
    pub(crate) offline: BTreeMap<String, crate::xep::xep0160_offline::OfflineQueue>,
    /// MAM queries for the store, and who is waiting for each answer.
    archive_requests: Vec<crate::archive::ArchiveRequest>,
    pub(crate) pending_queries: BTreeMap<u64, crate::xep::xep0313_mam::PendingQuery>,
    next_query_token: u64,
    /// Wall-clock time (Unix ms), handed in by the shell: archive timestamps and delay
    /// stamps. Never read from a clock here.
    pub(crate) wall_ms: u64,
    next_seq: u64,
    committed_seq: u64,
    /// Set while handling one input whose changes were persisted: later output of that
    /// input waits for the record to be durable (acknowledge only what would survive a
    /// power cut).
    hold: Option<u64>,
    /// Like `hold`, but the output only must not overtake the change (an SM `<a/>`
    /// covering stanzas whose effects are on their way to disk).
    wait: Option<u64>,
    held_conns: Vec<ConnId>,
    ready: Vec<ConnId>,
    /// Connections whose queue overflowed, torn down once the current input is done.
    overflowed: Vec<ConnId>,
    next_deadline: Option<Millis>,
    shutting_down: bool,
    /// Connections per peer address (bounded by the connection table).
    per_ip: FnvIndexMap<IpAddr, u16, CAP_CONNECTIONS>,
    pub(crate) throttle: AuthThrottle,
    uncommitted: VecDeque<Uncommitted>,
    /// The iq being handled, for [`Requester`].
    pub(crate) requester: Option<Requester>,
    ping_counter: u64,
    /// Issue 7: run-time state of the extension modules (caps cache, pending requests
    /// the server sent, per-connection extras, registration rate limit).
    pub(crate) ext: crate::xep::state::XepState,
    /// Buffers reused from one stanza to the next (issue 5: routing allocates nothing).
    pub(crate) scratch: scratch::Scratch,
}

/// Deadlines that only need to be roughly right (idle probes) are rounded up to the sweep
/// interval, so a router wakes up once per interval, not once per connection.
fn coarse(t: Millis) -> Millis {
    Millis(t.0.div_ceil(SWEEP_INTERVAL_MS) * SWEEP_INTERVAL_MS)
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
            conns: Box::new(SlotTable::new(cfg.limits.max_connections)),
            online: Box::new(OnlineTable::new(cfg.limits.max_resources_per_account)),
            cfg,
            db,
            accounts,
            next_account,
            rng,
            now: Millis(0),
            pending_records: Vec::new(),
            pending_archive: Vec::new(),
            next_archive_id: 1,
            offline: BTreeMap::new(),
            archive_requests: Vec::new(),
            pending_queries: BTreeMap::new(),
            next_query_token: 1,
            wall_ms: 0,
            next_seq: 1,
            committed_seq: 0,
            hold: None,
            wait: None,
            held_conns: Vec::new(),
            ready: Vec::new(),
            overflowed: Vec::new(),
            next_deadline: None,
            shutting_down: false,
            per_ip: FnvIndexMap::new(),
            throttle: AuthThrottle::default(),
            uncommitted: VecDeque::new(),
            requester: None,
            ping_counter: 0,
            ext: crate::xep::state::XepState::default(),
            scratch: scratch::Scratch::default(),
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
    pub fn refusal(&self, why: Refused) -> Vec<u8> {
        let mut out = Vec::new();
        write_stream_header(&mut out, &self.cfg.domain, "refused", None);
        let (cond, text) = match why {
            Refused::Full => (
                StreamCondition::ResourceConstraint,
                "the server is at its connection limit",
            ),
            Refused::PerAddress => (
                StreamCondition::PolicyViolation,
                "too many connections from your address",
            ),
            Refused::ShuttingDown => (
                StreamCondition::SystemShutdown,
                "the server is shutting down",
            ),
        };
        write_stream_error(&mut out, cond, Some(text));
        out
    }

    /// A new TCP connection from `ip` (already through TLS for a direct-TLS listener, in
    /// which case `tls` carries the channel-binding data if the TLS layer exported it).
    pub fn open(
        &mut self,
        ip: IpAddr,
        tls: Option<Option<Vec<u8>>>,
        now: Millis,
    ) -> Result<ConnId, Refused> {
        self.now = now;
        if self.shutting_down {
            return Err(Refused::ShuttingDown);
        }
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if usize::from(from_ip) >= self.cfg.limits.max_connections_per_ip {
            return Err(Refused::PerAddress);
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
                ip,
                out: Outbox::default(),
                proto: Some(Box::new(C2s::new(limits, is_tls, cb))),
                user: None,
                session: None,
                deadline: Some(deadline),
                last_input: now,
                probe_sent: None,
                paused_until: None,
                hibernating_until: None,
                extra_prefixes: Vec::new(),
            })
            .map_err(|_| Refused::Full)?;
        // Cannot fail: there are at most as many addresses as connections.
        let _ = self.per_ip.insert(ip, from_ip + 1);
        self.arm(deadline);
        Ok(id)
    }

    /// Makes sure the shell calls [`Core::handle_timeout`] by `t`.
    pub(crate) fn arm(&mut self, t: Millis) {
        self.next_deadline = Some(self.next_deadline.map_or(t, |d| d.min(t)));
    }

    /// Bytes read from a connection.
    pub fn handle_bytes(&mut self, id: ConnId, data: &[u8], now: Millis) {
        self.now = now;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.last_input = now;
        conn.probe_sent = None;
        let Some(mut proto) = conn.proto.take() else {
            return;
        };
        if proto.tls_pending || self.conns.get(id).is_some_and(|c| c.out.is_finished()) {
            // Bytes after <proceed/> but before the handshake, or after we decided to
            // close: never interpreted.
            self.put_proto(id, proto);
            return;
        }
        proto.framer.borrow_buffers(&mut self.scratch.frame);
        if let Err(e) = proto.framer.feed(data) {
            self.stream_error(id, &mut proto, e.into(), None);
        }
        while !self.conns.get(id).is_some_and(|c| c.out.is_finished()) {
            self.hold = None;
            self.wait = None;
            proto.framer.borrow_buffers(&mut self.scratch.frame);
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
        self.wait = None;
        proto.framer.return_buffers(&mut self.scratch.frame);
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
        if self.sm_should_hibernate(id) {
            self.sm_hibernate(id);
            return;
        }
        self.end_session(id);
        self.free_slot(id);
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

    /// Runs every deadline that passed: unauthenticated connections that took too long,
    /// throttled login answers that may now go out, idle sessions to probe (XEP-0199),
    /// probed sessions that never answered.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        let idle_ms = u64::from(self.cfg.limits.idle_secs) * 1000;
        let probe_ms = PROBE_TIMEOUT_SECS * 1000;
        let mut expired = Vec::new();
        let mut dead = Vec::new();
        let mut to_probe = Vec::new();
        let mut unpaused = Vec::new();
        let mut resumption_over = Vec::new();
        let mut next: Option<Millis> = None;
        let mut keep = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        for (id, conn) in self.conns.iter_mut() {
            if let Some(until) = conn.hibernating_until {
                if until <= now {
                    resumption_over.push(id);
                } else {
                    keep(until);
                }
                continue;
            }
            // A connection between `<proceed/>` and the end of its TLS handshake is
            // "finished" for output but must still meet its login deadline (found by
            // fuzzing: otherwise it escapes the timeout and holds a slot for ever).
            if conn.out.is_finished() && !conn.out.starttls_pending() {
                continue;
            }
            if let Some(d) = conn.deadline {
                if d <= now {
                    conn.deadline = None;
                    expired.push(id);
                    continue;
                }
                keep(d);
            }
            if let Some(p) = conn.paused_until {
                if p <= now {
                    conn.paused_until = None;
                    unpaused.push(id);
                } else {
                    keep(p);
                }
            }
            if conn.session.is_some() {
                match conn.probe_sent {
                    Some(sent) if now.saturating_sub(sent) >= probe_ms => dead.push(id),
                    Some(sent) => keep(coarse(sent + probe_ms)),
                    None if now.saturating_sub(conn.last_input) >= idle_ms => {
                        conn.probe_sent = Some(now);
                        to_probe.push(id);
                        keep(coarse(now + probe_ms));
                    }
                    None => keep(coarse(conn.last_input + idle_ms)),
                }
            }
        }
        self.next_deadline = next;
        for id in unpaused {
            if self.conns.get(id).is_some_and(|c| c.out.has_ready()) {
                self.signal(id);
            }
        }
        for id in expired {
            log::info!("[{id}] closed: not logged in and bound in time");
            self.kill(
                id,
                StreamCondition::ConnectionTimeout,
                Some("authentication took too long"),
            );
        }
        for id in dead {
            log::info!("[{id}] closed: no answer to an idle probe");
            self.kill(
                id,
                StreamCondition::ConnectionTimeout,
                Some("no answer to ping"),
            );
        }
        for id in to_probe {
            self.send_idle_probe(id);
        }
        for id in resumption_over {
            self.sm_expire(id);
        }
        self.settle();
    }

    fn send_idle_probe(&mut self, id: ConnId) {
        let Some(full) = self.session_jid(id) else {
            return;
        };
        // With stream management an ack request is the lighter probe (XEP-0198 §4).
        let sm_on = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| s.sm.is_some());
        if sm_on {
            return self.send_nonza(id, |out| {
                out.extend_from_slice(b"<r xmlns='urn:xmpp:sm:3'/>")
            });
        }
        self.ping_counter += 1;
        let n = self.ping_counter;
        let domain = self.cfg.domain.clone();
        self.send(id, |out| {
            out.extend_from_slice(b"<iq type='get' id='xmppd-ping-");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"' from='");
            crate::xml::escape::escape_attr(out, &domain);
            out.extend_from_slice(b"' to='");
            crate::xml::escape::escape_attr(out, full.as_str());
            out.extend_from_slice(b"'><ping xmlns='urn:xmpp:ping'/></iq>");
        });
    }

    /// Withholds a connection's output until `until` (a throttled login answer).
    pub(crate) fn pause_output(&mut self, id: ConnId, until: Millis) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.paused_until = Some(until);
            self.arm(until);
        }
    }

    /// Changes to make durable, in order; returns the number of the last one.
    pub fn take_records(&mut self, into: &mut Vec<Record>) -> Option<u64> {
        into.clear();
        if self.pending_records.is_empty() && self.pending_archive.is_empty() {
            return None;
        }
        std::mem::swap(into, &mut self.pending_records);
        Some(self.next_seq - 1)
    }

    /// Records up to `seq` are durable: release the output that waited for them.
    pub fn records_committed(&mut self, seq: u64) {
        self.committed_seq = self.committed_seq.max(seq);
        while self.uncommitted.front().is_some_and(|u| u.seq <= seq) {
            self.uncommitted.pop_front();
        }
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

    /// The store could not make the records after the last committed one durable (full
    /// disk, read-only data dir). Memory returns to what the disk holds, output that
    /// reported the lost changes is dropped, and each client that asked for one gets
    /// `<resource-constraint/>`. Returns the number of the last record given up.
    pub fn records_failed(&mut self) -> u64 {
        let last = self.next_seq - 1;
        self.pending_records.clear();
        self.pending_archive.clear();
        self.hold = None;
        self.wait = None;
        let mut requesters: Vec<Requester> = Vec::new();
        while let Some(u) = self.uncommitted.pop_back() {
            match u.change {
                Change::Db(undo) => undo::apply_undo(&mut self.db, *undo),
                Change::OfflineQueued { account, id } => self.offline_forget(&account, id),
                Change::None => {}
            }
            if let Some(r) = u.requester
                && !requesters.contains(&r)
            {
                requesters.push(r);
            }
        }
        self.sync_account_ids();
        for id in std::mem::take(&mut self.held_conns) {
            if self.conns.get_mut(id).is_some_and(|c| c.out.fail_held()) {
                self.signal(id);
            }
        }
        let err = crate::error::StanzaError::new(crate::error::StanzaCondition::ResourceConstraint)
            .with_text("the server could not store the change");
        for r in requesters.into_iter().rev() {
            let from = r.from.unwrap_or_default();
            self.send(r.conn, |out| {
                crate::stanza::write_error_reply(
                    out,
                    r.kind,
                    r.stanza_id.as_deref(),
                    &from,
                    &r.to,
                    &err,
                )
            });
        }
        self.committed_seq = self.committed_seq.max(last);
        self.settle();
        last
    }

    /// Keeps the account-id map in step with the accounts after an undo.
    fn sync_account_ids(&mut self) {
        let db = &self.db;
        self.accounts.retain(|name, _| db.users.contains_key(name));
        let missing: Vec<String> = db
            .users
            .keys()
            .filter(|n| !self.accounts.contains_key(*n))
            .cloned()
            .collect();
        for name in missing {
            self.accounts.insert(name, AccountId(self.next_account));
            self.next_account += 1;
        }
    }

    /// Number of the last record made (0 when none).
    pub fn last_record_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn has_pending_records(&self) -> bool {
        !self.pending_records.is_empty() || !self.pending_archive.is_empty()
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
        self.wait = None;
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
        // Its archive and offline messages go with it.
        self.offline.remove(user);
        self.archive_write(
            crate::archive::ArchiveRecord::AccountDeleted {
                account: user.to_string(),
            },
            None,
            false,
        );
        self.hold = None;
        self.wait = None;
        self.settle();
        Ok(seq)
    }

    // ---- internal services for protocol modules ----

    /// Applies a change and queues it for the store. Output produced afterwards while
    /// handling the same input is held until the change is durable.
    pub(crate) fn persist(&mut self, record: Record) -> u64 {
        let undo = undo::undo_for(&self.db, &record);
        self.db.apply(&record);
        self.pending_records.push(record);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.uncommitted.push_back(Uncommitted {
            seq,
            change: Change::Db(Box::new(undo)),
            requester: self.requester.clone(),
        });
        self.hold = Some(seq);
        seq
    }

    /// A new entry for `account`'s archive: the next archive id (also its stanza-id) and
    /// the wall-clock time of the input being handled.
    pub(crate) fn new_archived_message(
        &mut self,
        account: &str,
        with: &str,
        flags: u8,
        stanza: String,
    ) -> crate::archive::ArchivedMessage {
        let id = self.next_archive_id;
        self.next_archive_id += 1;
        crate::archive::ArchivedMessage {
            id,
            account: account.to_string(),
            ts_ms: self.wall_ms,
            with: with.to_string(),
            flags,
            stanza,
        }
    }

    /// Queues an archive write in the same numbering as records. `queued_offline` names
    /// the offline message it adds in memory (undone if the write fails). Output after it
    /// is held until it is durable only when `hold` (a message acknowledged to nobody
    /// need not wait; an SM `<a/>` always waits, see [`Core::hold_for_all`]).
    pub(crate) fn archive_write(
        &mut self,
        record: crate::archive::ArchiveRecord,
        queued_offline: Option<(String, u64)>,
        hold: bool,
    ) -> u64 {
        self.pending_archive.push(record);
        let seq = self.next_seq;
        self.next_seq += 1;
        let change = match queued_offline {
            Some((account, id)) => Change::OfflineQueued { account, id },
            None => Change::None,
        };
        self.uncommitted.push_back(Uncommitted {
            seq,
            change,
            requester: self.requester.clone(),
        });
        if hold {
            self.hold = Some(seq);
        }
        seq
    }

    /// Holds the output of the current input until everything stored so far is durable
    /// (for acknowledgements that cover earlier stanzas: SM `<a/>`, `<resumed/>`).
    pub(crate) fn hold_for_all(&mut self) {
        let last = self.last_record_seq();
        if last > self.committed_seq {
            self.wait = Some(last);
        }
    }

    /// The hold that output queued now must respect.
    pub(crate) fn current_hold(&self) -> Option<Hold> {
        match (self.hold, self.wait) {
            (Some(seq), _) => Some(Hold {
                seq,
                dependent: true,
            }),
            (None, Some(seq)) => Some(Hold {
                seq,
                dependent: false,
            }),
            (None, None) => None,
        }
    }

    pub(crate) fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    pub(crate) fn shutting_down_now(&self) -> bool {
        self.shutting_down
    }

    /// The shell hands in the wall-clock time before each call.
    pub fn set_wall_ms(&mut self, unix_ms: u64) {
        self.wall_ms = unix_ms;
    }

    /// Restores what the archive holds for the core at start: the next id and the
    /// offline messages not yet delivered.
    pub fn load_archive(&mut self, next_id: u64, offline: Vec<crate::archive::ArchivedMessage>) {
        self.next_archive_id = self.next_archive_id.max(next_id);
        for m in offline {
            self.offline.entry(m.account.clone()).or_default().push(m);
        }
        // Kept under earlier, larger limits: never dropped, only reported (delivery at
        // the account's next login empties the queue).
        let l = &self.cfg.limits;
        for (account, q) in &self.offline {
            if q.msgs.len() > l.max_offline_messages || q.bytes > l.max_offline_bytes {
                log::warn!(
                    "{account} has {} offline messages ({} bytes), more than the limits in force",
                    q.msgs.len(),
                    q.bytes
                );
            }
        }
    }

    /// Archive writes to make durable with the records of [`Core::take_records`] (take
    /// both under the same lock).
    pub fn take_archive(&mut self, into: &mut Vec<crate::archive::ArchiveRecord>) {
        into.clear();
        std::mem::swap(into, &mut self.pending_archive);
    }

    /// MAM queries for the store.
    pub fn take_archive_requests(&mut self, into: &mut Vec<crate::archive::ArchiveRequest>) {
        into.clear();
        std::mem::swap(into, &mut self.archive_requests);
    }

    pub fn has_archive_requests(&self) -> bool {
        !self.archive_requests.is_empty()
    }

    pub(crate) fn queue_archive_request(&mut self, query: crate::archive::ArchiveQuery) -> u64 {
        let token = self.next_query_token;
        self.next_query_token += 1;
        self.archive_requests
            .push(crate::archive::ArchiveRequest { token, query });
        token
    }

    /// Issue 7: sets what later output of the current input waits for. In-band
    /// registration reuses `admin_user_set` (which releases the hold) but must not
    /// acknowledge the new account before it is durable; admin paths clear it.
    pub(crate) fn set_hold(&mut self, seq: Option<u64>) {
        self.hold = seq;
    }

    fn signal(&mut self, id: ConnId) {
        // A paused connection (throttled login answer) is signalled when its pause ends.
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.out.signalled
            && conn.paused_until.is_none()
        {
            conn.out.signalled = true;
            self.ready.push(id);
        }
    }

    /// Queues a stanza for a connection. With stream management on, a copy is kept until
    /// the client acknowledges it (and a hibernating session only keeps the copy, for its
    /// resumption). A peer that does not read until its queue is full loses its
    /// connection; everyone else goes on (STYLE.md: bounded outbound queues).
    pub(crate) fn send(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) {
        let sm_on = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| s.sm.is_some());
        if !sm_on {
            return self.push_output(id, self.current_hold(), write);
        }
        let mut stanza = scratch::take_bytes(&mut self.scratch.sm_copy);
        write(&mut stanza);
        match self.sm_record_outbound(id, &stanza) {
            Ok(ask) => {
                let hibernating = self
                    .conns
                    .get(id)
                    .is_some_and(|c| c.hibernating_until.is_some());
                if !hibernating {
                    self.push_output(id, self.current_hold(), |out| {
                        out.extend_from_slice(&stanza)
                    });
                    if ask {
                        self.push_output(id, self.current_hold(), |out| {
                            out.extend_from_slice(b"<r xmlns='urn:xmpp:sm:3'/>")
                        });
                    }
                }
            }
            Err(()) => {
                log::warn!(
                    "[{id}] too many stanzas unacknowledged (XEP-0198): closing the session"
                );
                self.overflowed.push(id);
            }
        }
        scratch::put_bytes(&mut self.scratch.sm_copy, stanza);
    }

    /// Queues stream-level output (headers, features, SASL, SM and stream errors): never
    /// counted as a stanza.
    pub(crate) fn send_nonza(&mut self, id: ConnId, write: impl FnOnce(&mut Vec<u8>)) {
        self.push_output(id, self.current_hold(), write);
    }

    /// Puts bytes in a connection's queue, waiting for record `hold` if given.
    pub(crate) fn push_output(
        &mut self,
        id: ConnId,
        hold: Option<Hold>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let bounds = Bounds {
            bytes: self.cfg.limits.max_outbound_queue_bytes,
            stanzas: self.cfg.limits.max_outbound_queue_stanzas,
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.hibernating_until.is_some() {
            return;
        }
        let was_held = conn.out.has_held();
        match conn.out.push_with(hold, bounds, write) {
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
                log::warn!(
                    "[{id}] outbound queue over {} bytes or {} stanzas: closing the connection",
                    bounds.bytes,
                    bounds.stanzas
                );
                self.overflowed.push(id);
            }
        }
    }

    /// Tells the shell a connection has something to do (an abort, for instance).
    pub(crate) fn signal_conn(&mut self, id: ConnId) {
        self.signal(id);
    }

    /// Frees a connection's slot and its place in the per-address count.
    pub(crate) fn free_slot(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(id) {
            let left = self
                .per_ip
                .get(&conn.ip)
                .copied()
                .unwrap_or(1)
                .saturating_sub(1);
            if left == 0 {
                self.per_ip.remove(&conn.ip);
            } else if let Some(n) = self.per_ip.get_mut(&conn.ip) {
                *n = left;
            }
        }
        self.held_conns.retain(|c| *c != id);
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
        if self.conns.get(id).is_some_and(|c| c.out.starttls_pending()) {
            // Mid-STARTTLS nothing more can be said in plaintext: the connection just goes.
            if let Some(c) = self.conns.get_mut(id) {
                c.out.abort();
            }
            self.signal(id);
            self.end_session(id);
            return;
        }
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
            self.send_nonza(id, |out| write_stream_header(out, &domain, "closing", None));
        }
        // Output of the session (e.g. a <conflict/>) must not wait for unrelated records.
        let (hold, wait) = (self.hold.take(), self.wait.take());
        self.send_nonza(id, |out| write_stream_error(out, cond, text));
        self.hold = hold;
        self.wait = wait;
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
        let mut session = session;
        let unacked = session.sm.take().map(|sm| sm.unacked).unwrap_or_default();
        self.presence_session_ended(id, session);
        self.sm_reroute_unacked(unacked);
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
#[cfg(test)]
mod tests_alloc;
#[cfg(test)]
mod tests_delivery;
