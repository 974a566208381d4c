//! Every capacity, size bound and timeout of the server, in one place.
//!
//! The `MAX_*`/`CAP_*` constants are compiled capacities: tables are sized from them and
//! nothing can exceed them. [`Limits`] holds the values in force at run time; a config file
//! may lower any of them (and raise a default up to its compiled capacity), never more.
//! Each constant says why it has its value, so a board profile can change it knowingly.

/// Compiled capacity of the connection table (every TCP connection, authenticated or not).
/// A household has tens of devices; 256 leaves room for a small office. The default in
/// force is lower so that the worst case ([`Limits::worst_case_bytes`]) fits a router with
/// 128 MiB; a Pi can raise it, a 64 MiB router lowers it (board/openwrt).
pub const CAP_CONNECTIONS: usize = 256;
pub const DEFAULT_CONNECTIONS: usize = 128;

/// Compiled capacity of the table of accounts with at least one bound resource.
/// Power of two because `heapless` index maps require it.
pub const CAP_ONLINE_ACCOUNTS: usize = 256;

/// Resources (devices) one account may bind at once. Phones, laptops and a web page
/// rarely exceed four; eight leaves room without letting one account eat the table.
pub const CAP_RESOURCES_PER_ACCOUNT: usize = 8;

/// Accounts the store holds. The roster of every account lives in memory, so the number of
/// accounts times the roster byte bound is part of the worst case.
pub const CAP_ACCOUNTS: usize = 1000;
pub const DEFAULT_ACCOUNTS: usize = 100;

/// Bytes of roster (items and pending requests, counted as stored) per account. 64 KiB is
/// about 400 contacts with names and groups.
pub const CAP_ROSTER_BYTES: usize = 1024 * 1024;
pub const DEFAULT_ROSTER_BYTES: usize = 64 * 1024;

/// Status text kept with a pending subscription request (shown again at the next login).
pub const MAX_PENDING_STATUS_BYTES: usize = 256;

/// Directed presence recipients remembered per session (RFC 6121 §4.6.3), bounded so a
/// client cannot grow its session by sending presence to many addresses.
pub const CAP_DIRECTED_PRESENCE: usize = 16;

/// Roster items per account. Prosody and ejabberd default to no limit; a LAN server with a
/// bounded memory budget needs one. 500 covers a user who also federates later.
pub const CAP_ROSTER_ITEMS: usize = 500;

/// Groups per roster item, and bytes per group name / item name.
pub const CAP_ROSTER_GROUPS: usize = 16;
pub const CAP_ROSTER_TEXT_BYTES: usize = 1023;

/// Pending inbound subscription requests kept per account while the user has not answered.
/// Bounded so that a stranger cannot fill the store by sending subscribe presences.
pub const CAP_PENDING_SUBSCRIPTIONS: usize = 100;

/// Largest stanza accepted after authentication (RFC 6120 §13.12 asks for a limit).
/// Capacity 256 KiB as Prosody's default; the default in force is 64 KiB like ejabberd's
/// example config, which keeps the per-connection worst case small.
pub const CAP_STANZA_BYTES: usize = 256 * 1024;
pub const DEFAULT_STANZA_BYTES: usize = 64 * 1024;

/// Largest element accepted before authentication: negotiation elements are tiny, and an
/// unauthenticated peer must not make the server buffer much (ejabberd uses 8 KiB).
pub const CAP_STANZA_BYTES_PREAUTH: usize = 10 * 1024;
pub const DEFAULT_STANZA_BYTES_PREAUTH: usize = 8 * 1024;

/// Element nesting depth inside a stanza (the stream element is depth 0). Real stanzas nest
/// under 10 levels (a forwarded MAM result is about 7); deep nesting only costs stack.
pub const CAP_XML_DEPTH: usize = 32;
pub const DEFAULT_XML_DEPTH: usize = 24;

/// Attributes per element. XMPP elements carry a handful; the check is O(n^2) for
/// duplicate detection, so n must stay small.
pub const CAP_XML_ATTRIBUTES: usize = 64;
pub const DEFAULT_XML_ATTRIBUTES: usize = 32;

/// Bytes queued for one connection that the peer has not read yet. Must hold at least one
/// maximum-size stanza plus its envelope; overflow closes that connection only
/// (ejabberd's `max_fsm_queue` idea, counted in bytes).
pub const CAP_OUTBOUND_QUEUE_BYTES: usize = 512 * 1024;
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 128 * 1024;

/// Connections from one IP address. A LAN device needs one or two; the cap stops one
/// misbehaving host from taking the whole table.
pub const DEFAULT_CONNECTIONS_PER_IP: usize = 16;

/// Stanzas queued for one connection that the peer has not read yet (the byte bound is
/// the memory bound; this one catches floods of tiny stanzas).
pub const CAP_OUTBOUND_QUEUE_STANZAS: usize = 4096;
pub const DEFAULT_OUTBOUND_QUEUE_STANZAS: usize = 1000;

/// Inbound byte rate per connection, with a burst allowance. Above it the server stops
/// reading the socket (TCP pushes back); no stanza is dropped. The burst holds two
/// maximum-size stanzas, so an avatar upload does not stall.
pub const DEFAULT_INBOUND_BYTES_PER_SEC: usize = 32 * 1024;
pub const CAP_INBOUND_BYTES_PER_SEC: usize = 16 * 1024 * 1024;
pub const DEFAULT_INBOUND_BURST_BYTES: usize = 128 * 1024;
pub const CAP_INBOUND_BURST_BYTES: usize = 16 * 1024 * 1024;

/// Seconds without input after which a bound session is probed with an XEP-0199 ping
/// (advertised as XEP-0478 `idle-seconds`), and how long the answer may take before the
/// connection is considered dead (a phone that left the Wi-Fi without closing TCP).
pub const DEFAULT_IDLE_SECS: u32 = 300;
pub const CAP_IDLE_SECS: u32 = 86_400;
pub const PROBE_TIMEOUT_SECS: u64 = 60;

/// How often deadlines (idle probes, throttled replies) are swept. Coarse on purpose: a
/// router's CPU should sleep between sweeps.
pub const SWEEP_INTERVAL_MS: u64 = 5_000;

/// Failed-login throttling (per IP address and per account): failures counted in a
/// window; past the free allowance every login answer on that IP or account is delayed,
/// doubling up to the maximum. Entries are few: a LAN has few hosts, and the table
/// evicts its oldest entry when full.
pub const AUTH_FAILURE_WINDOW_SECS: u64 = 600;
pub const AUTH_FREE_FAILURES: u32 = 5;
pub const AUTH_MAX_DELAY_MS: u64 = 30_000;
pub const CAP_THROTTLE_ENTRIES: usize = 256;

/// XEP-0198 resumption: a dropped session keeps its slot and its unacknowledged stanzas
/// (inside the connection bound) for this long. The XEP leaves the time to the server;
/// ten minutes covers a phone walking out of Wi-Fi range and back; a client may ask for
/// up to the maximum (Monal asks for an hour).
pub const DEFAULT_SM_RESUME_SECS: u32 = 600;
pub const DEFAULT_SM_MAX_RESUME_SECS: u32 = 3600;
pub const CAP_SM_RESUME_SECS: u32 = 86_400;

/// Offline messages per account (XEP-0160), kept in memory as well as in the archive so
/// delivery at login needs no disk read. Count and bytes, so neither many small nor a
/// few huge messages can grow it.
pub const DEFAULT_OFFLINE_MESSAGES: usize = 100;
pub const CAP_OFFLINE_MESSAGES: usize = 10_000;
pub const DEFAULT_OFFLINE_BYTES: usize = 128 * 1024;
pub const CAP_OFFLINE_BYTES: usize = 4 * 1024 * 1024;

/// The message archive (MAM and offline messages) on disk: per-account message count,
/// age, total size and segment size. A year of a household's chats is a few MiB; 64 MiB
/// fits a USB stick or a Pi's SD card, and an OpenWrt board config lowers it for flash.
pub const DEFAULT_ARCHIVE_MESSAGES: u32 = 10_000;
pub const CAP_ARCHIVE_MESSAGES: u32 = 1_000_000;
pub const DEFAULT_ARCHIVE_AGE_DAYS: u32 = 365;
pub const CAP_ARCHIVE_AGE_DAYS: u32 = 36_500;
pub const DEFAULT_ARCHIVE_MIB: u32 = 64;
pub const CAP_ARCHIVE_MIB: u32 = 65_536;
pub const DEFAULT_ARCHIVE_SEGMENT_KIB: u32 = 1024;
pub const CAP_ARCHIVE_SEGMENT_KIB: u32 = 65_536;

/// Terms of the worst-case memory formula that no limit sets: rustls buffers at most
/// 64 KiB of outgoing records (`sendable_tls`) plus its deframer (up to 64 KiB while a
/// handshake message is reassembled); the connection's own structures, its task's future
/// and read buffer; per account, credentials and map entries; and the process itself
/// (code, runtime, tables, allocator slack), from the idle RSS measured in
/// `tests/memory.rs` with margin.
pub const TLS_BYTES_PER_CONNECTION: usize = 128 * 1024;
pub const FIXED_BYTES_PER_CONNECTION: usize = 12 * 1024;
pub const BYTES_PER_ACCOUNT: usize = 512;
pub const FIXED_PROCESS_BYTES: usize = 8 * 1024 * 1024;

/// Bytes read from a socket in one go, and so the granularity of input buffering.
pub const READ_CHUNK_BYTES: usize = 4096;

/// Heap bytes a scratch buffer of the core may keep between stanzas (framing, stamping,
/// fan-out lists: one set per server, not per connection, so that routing a stanza
/// allocates nothing). A buffer that grew past this for a large stanza is given back.
pub const SCRATCH_KEEP_BYTES: usize = 16 * 1024;
/// The same for the addresses the core parses into reused buffers: an ordinary full JID
/// fits; one near the RFC 7622 maximum (3 × 1023 bytes) is not kept.
pub const SCRATCH_KEEP_JID_BYTES: usize = 512;
/// Buffers of acknowledged XEP-0198 copies the core keeps for the next copies, and the
/// largest kept: enough for what a few busy sessions leave unacknowledged between two
/// acknowledgements (at most 32 × 4 KiB per server); a larger one is freed.
pub const CAP_SPARE_SM_COPIES: usize = 32;
pub const SPARE_SM_COPY_BYTES: usize = READ_CHUNK_BYTES;
/// Output buffers the network shell keeps for the next socket write, and the largest kept:
/// a connection borrows one only while it writes (an idle one holds none), and the pool
/// covers the writes a few executor threads have in flight (at most 8 × 16 KiB per server).
pub const CAP_SPARE_WRITE_BUFFERS: usize = 8;
pub const SPARE_WRITE_BUFFER_BYTES: usize = SCRATCH_KEEP_BYTES;

// ---- Internal bounds (not configurable; each is part of a per-connection or per-server
// ---- term of the worst-case formula, or keeps a cache or a queue from growing) ----

/// Held stanzas per inactive session (XEP-0352), and their bytes: a few dozen contacts'
/// presence; past either bound the buffer is flushed (the client pays a wake-up, memory
/// stays put).
pub const CSI_MAX_HELD: usize = 64;
pub const CSI_MAX_HELD_BYTES: usize = 32 * 1024;

/// Default and largest MAM page (XEP-0313 lets the server cap `max`).
pub const MAM_DEFAULT_PAGE: usize = 50;
pub const MAM_MAX_PAGE: usize = 250;
/// MAM queries waiting for the store, per connection and in all: an answer can take a
/// disk read, and a client must not queue unbounded work.
pub const MAM_MAX_QUERIES_PER_CONNECTION: usize = 2;
pub const MAM_MAX_QUERIES: usize = 64;
/// JIDs in the always/never lists of the MAM preferences.
pub const MAM_MAX_PREFS_JIDS: usize = 100;

/// Longest entity-caps `ver` and `node` remembered (XEP-0115): a base64 SHA-512 is 88
/// characters and client nodes are URLs; longer values are ignored so the cache stays small.
pub const MAX_CAPS_VER_BYTES: usize = 128;
pub const MAX_CAPS_NODE_BYTES: usize = 512;

/// Largest request line on the control socket (the CLI's account commands).
pub const CONTROL_MAX_REQUEST_BYTES: u64 = 4096;

/// Bytes read from disk at a time. Loading and scans hold one such window, or one frame if
/// larger, never a whole file: a file can outgrow a router's free memory.
pub const READ_WINDOW_BYTES: usize = 64 * 1024;
/// Bytes read at a time by a window over frames far apart (the archive's pending offline
/// messages at open): a flash page, so that reading a small frame does not cost 64 KiB.
pub const SPARSE_READ_BYTES: usize = 4 * 1024;
/// After an unusually large append, a store's encode buffer is given back above this size.
pub const STORE_KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// SASL attempts per connection before the connection is closed. RFC 6120 §6.4.5 asks for
/// "at least 2 and no more than 5" retries.
pub const CAP_AUTH_ATTEMPTS: u8 = 5;
pub const DEFAULT_AUTH_ATTEMPTS: u8 = 3;

/// Seconds an unauthenticated connection may live. Long enough for a phone on bad Wi-Fi
/// to finish TLS + SASL, short enough that idle port scans do not hold table slots.
pub const DEFAULT_AUTH_TIMEOUT_SECS: u32 = 30;
pub const CAP_AUTH_TIMEOUT_SECS: u32 = 600;

/// Bytes of a SASL exchange message (base64 text inside `<auth/>`/`<response/>`).
pub const CAP_SASL_MESSAGE_BYTES: usize = 4096;

/// Resource, localpart and domainpart are each at most 1023 bytes (RFC 7622 §3.2-3.4).
pub const JID_PART_MAX_BYTES: usize = 1023;

/// Default PBKDF2 iterations for newly set passwords. RFC 7677 asks for at least 4096;
/// the cost is paid when a password is set and by the client, never by the server at login
/// (it stores StoredKey/ServerKey).
/// Threads running connections and routing. One by default: on a router or a Pi the load
/// is a household's, and a single thread spares the cross-thread wake-ups (futex, context
/// switches) that cost more than the parallelism gives (measured by the benchmark: CPU per
/// message and per login both lower with one thread on a 2-core machine). More help only a
/// login storm on a multi-core board. File I/O runs on its own threads either way.
pub const DEFAULT_THREADS: u32 = 1;
pub const MAX_THREADS: u32 = 4;
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// Group commit: a change waits at most this long for others to share its fsync.
/// Flash wears per erase block written; a burst of changes becomes one write. 100 ms
/// keeps an archiving household at about 10 fsyncs per second at 100 messages per second
/// (measured by scripts/measure-archive-writes) while only acknowledgements wait (SM
/// `<a/>`, roster results): messages themselves are delivered at once.
pub const DEFAULT_FLUSH_DELAY_MS: u32 = 100;
pub const CAP_FLUSH_DELAY_MS: u32 = 5000;

/// The change log is folded into a new snapshot once it grows past this many bytes.
pub const DEFAULT_COMPACT_LOG_BYTES: u64 = 1024 * 1024;

/// Grace period for connections to close at shutdown before the process exits.
pub const SHUTDOWN_GRACE_MS: u64 = 2000;

/// Message archive (XEP-0313) and offline storage (XEP-0160) share one store on flash
/// (`storage::archive`). Messages kept per account: the oldest become invisible first.
/// 10 000 is months of chat for a household; at a few hundred bytes per message the size
/// bound below is usually reached first.
pub const DEFAULT_ARCHIVE_MESSAGES_PER_ACCOUNT: usize = 10_000;
pub const CAP_ARCHIVE_MESSAGES_PER_ACCOUNT: usize = 1_000_000;

/// Age after which archived and offline messages are dropped (0: none). No default age:
/// the size and count bounds already bound the flash used; an age limit is a privacy
/// choice for the administrator.
pub const DEFAULT_ARCHIVE_MAX_AGE_MS: u64 = 0;

/// Bytes of archive segment files on flash. 64 MiB leaves most of a 128 MiB-256 MiB
/// router's overlay free; a Pi with an SD card can raise it.
pub const DEFAULT_ARCHIVE_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
pub const CAP_ARCHIVE_TOTAL_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Size at which an archive segment is closed. Space is reclaimed a whole segment at a
/// time, so smaller segments free space sooner; larger ones mean fewer index entries
/// (the index holds one entry per account and segment). 1 MiB gives 65 segments for the
/// default total.
pub const DEFAULT_ARCHIVE_SEGMENT_BYTES: u64 = 1024 * 1024;
pub const MIN_ARCHIVE_SEGMENT_BYTES: u64 = 64 * 1024;
pub const CAP_ARCHIVE_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Segment files the archive keeps at most, whatever the size settings: the in-memory
/// index is (accounts × segments) entries, so this caps it.
pub const CAP_ARCHIVE_SEGMENTS: usize = 1024;

/// Largest stored stanza: the largest accepted stanza plus room for the `from`/`to` the
/// server stamps on it. A decoding limit, so a damaged length never allocates more.
pub const MAX_ARCHIVED_STANZA_BYTES: usize = CAP_STANZA_BYTES + 8 * 1024;

/// Largest stored `with` JID: a full JID (RFC 7622 §3: three parts of 1023 bytes, `@`, `/`).
pub const MAX_ARCHIVED_JID_BYTES: usize = 3 * JID_PART_MAX_BYTES + 2;

/// Memory of the archive index, for the worst-case formula (see `storage::archive`):
/// per (account, segment) entry, per segment, and per account (its name not included).
/// Tests pin the real sizes below these.
pub const ARCHIVE_INDEX_BYTES_PER_ENTRY: usize = 96;
pub const ARCHIVE_INDEX_BYTES_PER_SEGMENT: usize = 96;
pub const ARCHIVE_INDEX_BYTES_PER_ACCOUNT: usize = 128;

// ---- Issue 7: personal data services (PEP, vCard, private XML, blocking, registration) ----

/// PEP nodes per account. A modern client uses about ten (OMEMO device list and bundles
/// in two namespaces per device, avatar data and metadata, nickname, bookmarks); 64 leaves
/// room for several devices and clients.
pub const CAP_PEP_NODES: usize = 128;
pub const DEFAULT_PEP_NODES: usize = 64;

/// Items kept per node, the value `pubsub#max_items = max` stands for. Bookmarks
/// (XEP-0402) keep one item per room, so this is also the number of rooms a user can
/// bookmark.
pub const CAP_PEP_ITEMS_PER_NODE: usize = 256;
pub const DEFAULT_PEP_ITEMS_PER_NODE: usize = 128;

/// Bytes of personal data per account (PEP items, vCard, private XML, block list), as
/// held in memory. An OMEMO bundle is 5-10 KiB per device and namespace, an avatar
/// 10-40 KiB of base64: 128 KiB holds a user with three devices and an avatar.
pub const CAP_PERSONAL_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PERSONAL_BYTES: usize = 128 * 1024;

/// Largest serialised vCard (XEP-0054), photo included. Below the store's 64 KiB field
/// cap; 48 KiB takes a typical avatar as a vCard PHOTO (XEP-0153 / XEP-0398).
pub const CAP_VCARD_BYTES: usize = 60 * 1024;
pub const DEFAULT_VCARD_BYTES: usize = 48 * 1024;

/// Largest serialised PEP item payload: the store's 64 KiB field cap, with margin.
pub const CAP_PEP_ITEM_BYTES: usize = 60 * 1024;

/// Node names and item ids are short in practice (namespaces, SHA-1 hashes, room JIDs);
/// the cap keeps them from dominating the per-account byte count.
pub const CAP_PEP_NAME_BYTES: usize = 1024;

/// Private XML (XEP-0049) elements per account; clients store a handful.
pub const CAP_PRIVATE_ITEMS: usize = 32;

/// Blocked JIDs per account (XEP-0191): enough for a spam wave, bounded so a user
/// cannot grow the store without limit.
pub const CAP_BLOCKLIST_ITEMS: usize = 1024;
pub const DEFAULT_BLOCKLIST_ITEMS: usize = 256;

/// XEP-0115 capabilities cache: distinct client versions remembered with the PEP nodes
/// they want notifications for. A household runs a few client builds; the least
/// recently used entry is dropped when full.
pub const CAP_CAPS_CACHE: usize = 64;

/// `+notify` nodes remembered per client version (a client asks for about ten), and
/// the bytes of their names: with one list per cached version and per connection, the
/// worst case is (CAP_CAPS_CACHE + CAP_CONNECTIONS) × 4 KiB = 1.25 MiB.
pub const CAP_NOTIFY_NODES: usize = 64;
pub const CAP_NOTIFY_BYTES: usize = 4096;

/// Requests the server itself sent (disco#info for capabilities) that await an answer,
/// and how long an answer may take. A request that times out or is pushed out is
/// forgotten; a late answer is then ignored.
pub const CAP_PENDING_IQS: usize = 64;
pub const PENDING_IQ_TIMEOUT_MS: u64 = 30_000;

/// Registration invitations stored at once (XEP-0401); each is a few bytes.
pub const CAP_INVITES: usize = 256;
/// Default and longest validity of an invitation.
pub const DEFAULT_INVITE_DAYS: u64 = 7;
pub const MAX_INVITE_DAYS: u64 = 365;

/// In-band registration (XEP-0077) attempts per IP address and per hour, and per hour
/// for the whole server, so a host on the LAN cannot mass-create accounts. The table of
/// addresses drops its oldest entry when full.
pub const DEFAULT_REGISTER_PER_IP_PER_HOUR: usize = 5;
pub const CAP_REGISTER_PER_IP_PER_HOUR: usize = 100;
pub const REGISTER_PER_HOUR_TOTAL: usize = 50;
pub const REGISTER_WINDOW_MS: u64 = 3_600_000;
pub const CAP_REGISTER_ADDRESSES: usize = 64;

/// Limits in force at run time. Built from the defaults above, then lowered (or raised up
/// to the capacity) by the config file. [`Limits::check`] enforces the capacities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_resources_per_account: usize,
    pub max_accounts: usize,
    pub max_roster_items: usize,
    pub max_roster_bytes: usize,
    pub max_pending_subscriptions: usize,
    pub max_stanza_bytes: usize,
    pub max_stanza_bytes_preauth: usize,
    pub max_xml_depth: usize,
    pub max_xml_attributes: usize,
    pub max_outbound_queue_bytes: usize,
    pub max_auth_attempts: u8,
    pub auth_timeout_secs: u32,
    pub max_connections_per_ip: usize,
    pub max_outbound_queue_stanzas: usize,
    pub inbound_bytes_per_sec: usize,
    pub inbound_burst_bytes: usize,
    pub idle_secs: u32,
    pub sm_resume_secs: u32,
    pub sm_max_resume_secs: u32,
    pub max_offline_messages: usize,
    pub max_offline_bytes: usize,
    // Issue 7.
    pub max_pep_nodes: usize,
    pub max_pep_items_per_node: usize,
    pub max_personal_bytes: usize,
    pub max_vcard_bytes: usize,
    pub max_blocklist_items: usize,
    pub register_per_ip_per_hour: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_CONNECTIONS,
            max_resources_per_account: CAP_RESOURCES_PER_ACCOUNT,
            max_accounts: DEFAULT_ACCOUNTS,
            max_roster_items: CAP_ROSTER_ITEMS,
            max_roster_bytes: DEFAULT_ROSTER_BYTES,
            max_pending_subscriptions: CAP_PENDING_SUBSCRIPTIONS,
            max_stanza_bytes: DEFAULT_STANZA_BYTES,
            max_stanza_bytes_preauth: DEFAULT_STANZA_BYTES_PREAUTH,
            max_xml_depth: DEFAULT_XML_DEPTH,
            max_xml_attributes: DEFAULT_XML_ATTRIBUTES,
            max_outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            max_auth_attempts: DEFAULT_AUTH_ATTEMPTS,
            auth_timeout_secs: DEFAULT_AUTH_TIMEOUT_SECS,
            max_connections_per_ip: DEFAULT_CONNECTIONS_PER_IP,
            max_outbound_queue_stanzas: DEFAULT_OUTBOUND_QUEUE_STANZAS,
            inbound_bytes_per_sec: DEFAULT_INBOUND_BYTES_PER_SEC,
            inbound_burst_bytes: DEFAULT_INBOUND_BURST_BYTES,
            idle_secs: DEFAULT_IDLE_SECS,
            sm_resume_secs: DEFAULT_SM_RESUME_SECS,
            sm_max_resume_secs: DEFAULT_SM_MAX_RESUME_SECS,
            max_offline_messages: DEFAULT_OFFLINE_MESSAGES,
            max_offline_bytes: DEFAULT_OFFLINE_BYTES,
            max_pep_nodes: DEFAULT_PEP_NODES,
            max_pep_items_per_node: DEFAULT_PEP_ITEMS_PER_NODE,
            max_personal_bytes: DEFAULT_PERSONAL_BYTES,
            max_vcard_bytes: DEFAULT_VCARD_BYTES,
            max_blocklist_items: DEFAULT_BLOCKLIST_ITEMS,
            register_per_ip_per_hour: DEFAULT_REGISTER_PER_IP_PER_HOUR,
        }
    }
}

/// One limit key with its permitted range, used by the config checker so that the key
/// names, ranges and documentation stay in one table.
pub struct LimitSpec {
    pub key: &'static str,
    /// One line for the example config, the README and `check-config`.
    pub doc: &'static str,
    pub min: u64,
    pub max: u64,
    pub get: fn(&Limits) -> u64,
    pub set: fn(&mut Limits, u64),
}

macro_rules! limit_spec {
    ($key:literal, $field:ident, $ty:ty, $min:expr, $max:expr, $doc:literal) => {
        LimitSpec {
            key: $key,
            doc: $doc,
            min: $min as u64,
            max: $max as u64,
            get: |l| l.$field as u64,
            // The checker only calls `set` with values inside [min, max], which fit `$ty`.
            set: |l, v| l.$field = v as $ty,
        }
    };
}

/// The `[limits]` keys of the config file. The lower bounds keep the server usable: a
/// stanza limit below 4 KiB would refuse ordinary roster pushes, for example.
pub const LIMIT_SPECS: &[LimitSpec] = &[
    limit_spec!(
        "max_connections",
        max_connections,
        usize,
        1,
        CAP_CONNECTIONS,
        "Client connections open at once, logged in or not."
    ),
    limit_spec!(
        "max_connections_per_ip",
        max_connections_per_ip,
        usize,
        1,
        CAP_CONNECTIONS,
        "Client connections from one IP address."
    ),
    limit_spec!(
        "max_resources_per_account",
        max_resources_per_account,
        usize,
        1,
        CAP_RESOURCES_PER_ACCOUNT,
        "Devices one account may have online at once."
    ),
    limit_spec!(
        "max_accounts",
        max_accounts,
        usize,
        1,
        CAP_ACCOUNTS,
        "Accounts the server stores."
    ),
    limit_spec!(
        "max_roster_items",
        max_roster_items,
        usize,
        1,
        CAP_ROSTER_ITEMS,
        "Contacts in one account's roster."
    ),
    limit_spec!(
        "max_roster_bytes",
        max_roster_bytes,
        usize,
        4096,
        CAP_ROSTER_BYTES,
        "Bytes of roster (contacts and pending requests) one account may keep in memory."
    ),
    limit_spec!(
        "max_pending_subscriptions",
        max_pending_subscriptions,
        usize,
        1,
        CAP_PENDING_SUBSCRIPTIONS,
        "Unanswered subscription requests kept per account."
    ),
    limit_spec!(
        "max_stanza_bytes",
        max_stanza_bytes,
        usize,
        4096,
        CAP_STANZA_BYTES,
        "Largest stanza accepted from a logged-in client, in bytes."
    ),
    limit_spec!(
        "max_stanza_bytes_preauth",
        max_stanza_bytes_preauth,
        usize,
        2048,
        CAP_STANZA_BYTES_PREAUTH,
        "Largest element accepted before login, in bytes."
    ),
    limit_spec!(
        "max_xml_depth",
        max_xml_depth,
        usize,
        4,
        CAP_XML_DEPTH,
        "Element nesting allowed inside one stanza."
    ),
    limit_spec!(
        "max_xml_attributes",
        max_xml_attributes,
        usize,
        8,
        CAP_XML_ATTRIBUTES,
        "Attributes allowed on one element."
    ),
    limit_spec!(
        "max_outbound_queue_bytes",
        max_outbound_queue_bytes,
        usize,
        8192,
        CAP_OUTBOUND_QUEUE_BYTES,
        "Bytes waiting for a client that is slow to read before it is disconnected; at least max_stanza_bytes."
    ),
    limit_spec!(
        "max_outbound_queue_stanzas",
        max_outbound_queue_stanzas,
        usize,
        16,
        CAP_OUTBOUND_QUEUE_STANZAS,
        "Stanzas waiting for a client that is slow to read before it is disconnected."
    ),
    limit_spec!(
        "inbound_bytes_per_sec",
        inbound_bytes_per_sec,
        usize,
        1024,
        CAP_INBOUND_BYTES_PER_SEC,
        "Bytes per second read from one connection; above it the server stops reading for a while."
    ),
    limit_spec!(
        "inbound_burst_bytes",
        inbound_burst_bytes,
        usize,
        8192,
        CAP_INBOUND_BURST_BYTES,
        "Bytes one connection may send at once above its rate; at least max_stanza_bytes."
    ),
    limit_spec!(
        "max_auth_attempts",
        max_auth_attempts,
        u8,
        1,
        CAP_AUTH_ATTEMPTS,
        "Failed logins allowed on one connection before it is closed."
    ),
    limit_spec!(
        "auth_timeout_secs",
        auth_timeout_secs,
        u32,
        1,
        CAP_AUTH_TIMEOUT_SECS,
        "Seconds a new connection has to log in and bind a resource."
    ),
    limit_spec!(
        "idle_secs",
        idle_secs,
        u32,
        10,
        CAP_IDLE_SECS,
        "Seconds without traffic after which a session is pinged; no answer within a minute closes it."
    ),
    limit_spec!(
        "sm_resume_secs",
        sm_resume_secs,
        u32,
        10,
        CAP_SM_RESUME_SECS,
        "Seconds a dropped session waits for stream-management resumption when the client names no time."
    ),
    limit_spec!(
        "sm_max_resume_secs",
        sm_max_resume_secs,
        u32,
        10,
        CAP_SM_RESUME_SECS,
        "Longest resumption time granted when a client asks for one (Monal asks for an hour)."
    ),
    limit_spec!(
        "max_offline_messages",
        max_offline_messages,
        usize,
        1,
        CAP_OFFLINE_MESSAGES,
        "Messages kept for one account while it is offline; past it senders get service-unavailable."
    ),
    limit_spec!(
        "max_offline_bytes",
        max_offline_bytes,
        usize,
        4096,
        CAP_OFFLINE_BYTES,
        "Bytes of messages kept for one account while it is offline."
    ),
    // Issue 7: personal data services.
    limit_spec!(
        "max_pep_nodes",
        max_pep_nodes,
        usize,
        8,
        CAP_PEP_NODES,
        "PEP nodes (avatar, OMEMO keys, bookmarks...) one account may have."
    ),
    limit_spec!(
        "max_pep_items_per_node",
        max_pep_items_per_node,
        usize,
        1,
        CAP_PEP_ITEMS_PER_NODE,
        "Items one PEP node keeps at most; also what pubsub#max_items = max means."
    ),
    limit_spec!(
        "max_personal_bytes",
        max_personal_bytes,
        usize,
        16384,
        CAP_PERSONAL_BYTES,
        "Bytes of PEP items, vCard, private XML and block list one account may keep."
    ),
    limit_spec!(
        "max_vcard_bytes",
        max_vcard_bytes,
        usize,
        1024,
        CAP_VCARD_BYTES,
        "Largest vCard (XEP-0054), photo included, in bytes."
    ),
    limit_spec!(
        "max_blocklist_items",
        max_blocklist_items,
        usize,
        1,
        CAP_BLOCKLIST_ITEMS,
        "Addresses one account may block (XEP-0191)."
    ),
    limit_spec!(
        "register_per_ip_per_hour",
        register_per_ip_per_hour,
        usize,
        1,
        CAP_REGISTER_PER_IP_PER_HOUR,
        "In-band registration attempts allowed from one IP address per hour."
    ),
];

impl Limits {
    /// The most memory one connection can hold, in bytes: its framer buffer (one stanza
    /// plus one read), its outbound queue (queued and in flight), TLS, the last presence
    /// it sent (kept for probes), its directed-presence list, and its structures.
    pub fn per_connection_bytes(&self) -> usize {
        (self.max_stanza_bytes + READ_CHUNK_BYTES)
            // queued output, and the XEP-0198 copies of unacknowledged stanzas
            + 2 * self.max_outbound_queue_bytes
            + TLS_BYTES_PER_CONNECTION
            + self.max_stanza_bytes
            + CAP_DIRECTED_PRESENCE * 3 * JID_PART_MAX_BYTES
            + FIXED_BYTES_PER_CONNECTION
    }

    /// The most memory one account's stored state can hold: its roster and personal data
    /// (PEP, vCard, private XML, block list) bounds, twice (compaction copies the state
    /// while it writes the snapshot).
    pub fn per_account_bytes(&self) -> usize {
        2 * (self.max_roster_bytes + self.max_personal_bytes + BYTES_PER_ACCOUNT)
            + self.max_offline_bytes
    }

    /// Worst-case memory of the whole server (README "Memory"):
    /// connections × per connection + accounts × per account + the stanza being
    /// processed (raw text and its tree) + the process itself.
    pub fn worst_case_bytes(&self) -> usize {
        self.max_connections * self.per_connection_bytes()
            + self.max_accounts * self.per_account_bytes()
            + 3 * self.max_stanza_bytes
            + FIXED_PROCESS_BYTES
    }

    /// Problems with these limits, as (key, message) pairs; empty when all are in range.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for spec in LIMIT_SPECS {
            let v = (spec.get)(self);
            if v < spec.min || v > spec.max {
                problems.push((
                    spec.key,
                    format!(
                        "{v} is outside the permitted range {}..={}",
                        spec.min, spec.max
                    ),
                ));
            }
        }
        if self.inbound_burst_bytes < self.max_stanza_bytes {
            problems.push((
                "inbound_burst_bytes",
                format!(
                    "{} is smaller than max_stanza_bytes ({}): one full-size stanza must fit",
                    self.inbound_burst_bytes, self.max_stanza_bytes
                ),
            ));
        }
        if self.max_outbound_queue_bytes < self.max_stanza_bytes {
            problems.push((
                "max_outbound_queue_bytes",
                format!(
                    "{} is smaller than max_stanza_bytes ({}): one full-size stanza must fit",
                    self.max_outbound_queue_bytes, self.max_stanza_bytes
                ),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_capacity() {
        assert!(
            Limits::default().check().is_empty(),
            "{:?}",
            Limits::default().check()
        );
    }

    #[test]
    fn over_capacity_is_reported_by_key() {
        let l = Limits {
            max_connections: CAP_CONNECTIONS + 1,
            ..Limits::default()
        };
        let p = l.check();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "max_connections");
    }

    #[test]
    fn capacities_fit_heapless_rules() {
        const { assert!(CAP_ONLINE_ACCOUNTS.is_power_of_two()) };
        const { assert!(DEFAULT_OUTBOUND_QUEUE_BYTES >= DEFAULT_STANZA_BYTES) };
    }
}
