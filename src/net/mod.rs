//! The smol shell: sockets, TLS, timers, storage and signals around the sans-I/O core.
//!
//! One `Core` sits behind a mutex that is never held across an `.await`. Each connection
//! task reads its socket, feeds the core, and writes what the core queued for it when its
//! wake-up channel fires; the router never waits on a socket (STYLE.md rule 5). A storage
//! task batches the core's records into one fsync (group commit), a timer task runs
//! deadlines, and a control socket lets the CLI change accounts in the running server.

pub mod conn;
pub mod control;
pub mod files;
pub mod persist;
pub mod rate;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
// MIPS32 (OpenWrt MT7621 / ath79) has no 64-bit atomics: a lock-based one there.
#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::net::TcpListener;

use crate::config::Config;
use crate::core::{Core, CoreConfig};
use crate::limits::{CAP_CONNECTIONS, SHUTDOWN_GRACE_MS};
use crate::router::ConnId;
use crate::storage::archive::{ArchiveLimits, ArchiveStore};
use crate::storage::{FileStore, StoreError};
use crate::time::{Entropy, Millis};

/// The archive's bounds from the `[storage]` keys.
pub fn archive_limits(cfg: &Config) -> ArchiveLimits {
    ArchiveLimits {
        max_messages_per_account: cfg.storage.archive_max_messages as usize,
        max_age_ms: u64::from(cfg.storage.archive_max_age_days) * 86_400_000,
        max_total_bytes: u64::from(cfg.storage.archive_max_mib) * 1024 * 1024,
        segment_bytes: u64::from(cfg.storage.archive_segment_kib) * 1024,
    }
}

/// Worst-case memory of a server run with this config (README "Memory"): the limits'
/// formula plus the archive's bounded index.
pub fn worst_case_bytes(cfg: &Config) -> usize {
    cfg.limits.worst_case_bytes()
        + crate::storage::archive::index_bytes_bound(&archive_limits(cfg), cfg.limits.max_accounts)
}

/// Wall-clock time in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The operating system's random generator, handed to the core.
pub struct SystemEntropy(ring::rand::SystemRandom);

impl SystemEntropy {
    pub fn new() -> SystemEntropy {
        SystemEntropy(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemEntropy {
    fn default() -> Self {
        SystemEntropy::new()
    }
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if ring::rand::SecureRandom::fill(&self.0, buf).is_err() {
            // getrandom does not fail on Linux after boot; if it ever did, carrying on
            // with predictable nonces would be worse than stopping.
            log::error!("the system random generator failed");
            std::process::abort();
        }
    }
}

/// A connection task's wake-up: `pending` coalesces notifications like a one-slot channel.
#[derive(Clone, Default)]
pub struct WakeSlot {
    open: bool,
    pending: bool,
    waker: Option<std::task::Waker>,
}

pub struct State {
    pub core: Core,
    /// Whether each connection task has output to act on, and how to wake it; indexed by
    /// slot. Kept here, under the lock every hand-over already takes, rather than as a
    /// channel per connection (≈ 1 KiB of heap for each idle session).
    wakers: Vec<WakeSlot>,
    timer_armed: Option<Millis>,
    /// Output buffers between writes (see `CAP_SPARE_WRITE_BUFFERS`).
    spare_write_buffers: Vec<Vec<u8>>,
}

impl State {
    /// A buffer for one socket write: a spare one if there is one.
    pub fn take_write_buffer(&mut self) -> Vec<u8> {
        self.spare_write_buffers.pop().unwrap_or_default()
    }

    /// Keeps a written buffer for the next write, unless the pool is full or the buffer
    /// grew too large to be worth holding.
    pub fn return_write_buffer(&mut self, mut buf: Vec<u8>) {
        if self.spare_write_buffers.len() < crate::limits::CAP_SPARE_WRITE_BUFFERS
            && buf.capacity() <= crate::limits::SPARE_WRITE_BUFFER_BYTES
        {
            buf.clear();
            self.spare_write_buffers.push(buf);
        }
    }
}

pub struct Shared {
    state: Mutex<State>,
    start: Instant,
    store_wake: Sender<()>,
    timer_wake: Sender<()>,
    /// Highest record number known durable, highest given up after a store failure, and
    /// an event for those waiting on either.
    committed: AtomicU64,
    failed: AtomicU64,
    committed_event: event_listener::Event,
    pub domain: String,
    /// Inbound bytes per second and burst for each connection.
    pub inbound_rate: (usize, usize),
    /// Refused connections, for a log line per minute rather than per refusal.
    pub refusals: LogLimiter,
}

/// Counts events and allows one log line per interval, carrying the count.
pub struct LogLimiter {
    state: Mutex<(Option<Millis>, u64)>,
}

impl LogLimiter {
    const INTERVAL_MS: u64 = 60_000;

    pub fn new() -> LogLimiter {
        LogLimiter {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event; returns the count to log when a line is due.
    pub fn hit(&self, now: Millis) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 += 1;
        match st.0 {
            Some(last) if now.saturating_sub(last) < Self::INTERVAL_MS => None,
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new()
    }
}

impl Shared {
    pub fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic aborts the process (panic = "abort"), so a poisoned lock cannot be seen
        // in production; in tests the state is still usable.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The core never reads a clock: it gets wall time (archive and delay stamps) with
        // every call. A router without an RTC may start in 1970 and jump when NTP syncs;
        // stamps follow the clock as it is.
        st.core.set_wall_ms(unix_ms());
        st
    }

    /// Tells whoever must act on what the last core call produced.
    pub fn dispatch(&self, st: &mut State, scratch: &mut Vec<ConnId>) {
        st.core.take_ready(scratch);
        for id in scratch.iter() {
            if let Some(slot) = st.wakers.get_mut(id.index())
                && slot.open
            {
                slot.pending = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
        if st.core.has_pending_records() || st.core.has_archive_requests() {
            let _ = self.store_wake.try_send(());
        }
        let next = st.core.next_timeout();
        if next.is_some() && (st.timer_armed.is_none() || next < st.timer_armed) {
            st.timer_armed = next;
            let _ = self.timer_wake.try_send(());
        }
    }

    /// Marks a connection slot in use (`open`) or free, with nothing pending.
    fn set_waker(st: &mut State, id: ConnId, open: bool) {
        if let Some(slot) = st.wakers.get_mut(id.index()) {
            *slot = WakeSlot {
                open,
                ..WakeSlot::default()
            };
        }
    }

    /// Ready once `dispatch` has marked the connection since the last time it was ready.
    fn poll_wake(&self, id: ConnId, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut st = self.lock();
        let Some(slot) = st.wakers.get_mut(id.index()) else {
            return std::task::Poll::Pending;
        };
        if std::mem::take(&mut slot.pending) {
            return std::task::Poll::Ready(());
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        std::task::Poll::Pending
    }

    fn outcome(&self, seq: u64) -> Option<bool> {
        if self.committed.load(Ordering::Acquire) >= seq {
            Some(true)
        } else if self.failed.load(Ordering::Acquire) >= seq {
            Some(false)
        } else {
            None
        }
    }

    /// Waits until record `seq` is durable (`true`) or was given up because the store
    /// failed (`false`).
    pub async fn wait_committed(&self, seq: u64) -> bool {
        loop {
            if let Some(ok) = self.outcome(seq) {
                return ok;
            }
            let listener = self.committed_event.listen();
            if let Some(ok) = self.outcome(seq) {
                return ok;
            }
            listener.await;
        }
    }

    pub(crate) fn mark_committed(&self, seq: u64) {
        self.committed.fetch_max(seq, Ordering::AcqRel);
        self.committed_event.notify(usize::MAX);
    }

    pub(crate) fn mark_failed(&self, seq: u64) {
        self.failed.fetch_max(seq, Ordering::AcqRel);
        self.committed_event.notify(usize::MAX);
    }
}

#[derive(Debug)]
pub enum ServeError {
    DataDir(PathBuf, std::io::Error),
    Store(StoreError),
    Tls(tls::TlsError),
    Bind(SocketAddr, std::io::Error),
    NoListeners,
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::DataDir(p, e) => write!(f, "data directory {}: {e}", p.display()),
            ServeError::Store(e) => write!(f, "{e}"),
            ServeError::Tls(e) => write!(f, "{e}"),
            ServeError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            ServeError::NoListeners => write!(f, "no listener is configured"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Binds `addr`; the default `[::]` falls back to `0.0.0.0` on hosts without IPv6
/// (OpenWrt builds can lack it).
async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            log::warn!("cannot listen on {addr} ({e}); using {v4}");
            TcpListener::bind(v4)
                .await
                .map_err(|e| ServeError::Bind(v4, e))
        }
        Err(e) => Err(ServeError::Bind(addr, e)),
    }
}

/// Runs the server until SIGTERM/SIGINT. Returns after a clean shutdown.
pub fn serve(cfg: Config) -> Result<(), ServeError> {
    files::create_private_dir(&cfg.data_dir)
        .map_err(|e| ServeError::DataDir(cfg.data_dir.clone(), e))?;
    let store_dir = cfg.data_dir.join("store");
    let (store, db, report) =
        FileStore::open(&store_dir, cfg.storage.compact_log_bytes).map_err(ServeError::Store)?;
    if report.torn_tail_bytes > 0 {
        log::warn!(
            "{}: dropped {} bytes of an unfinished write at the end of the log (a crash during a write that was never acknowledged)",
            store_dir.display(),
            report.torn_tail_bytes
        );
    }
    log::info!(
        "loaded {} accounts from {} ({} snapshot + {} log records)",
        db.users.len(),
        store_dir.display(),
        report.snapshot_records,
        report.log_records
    );
    if db.users.len() > cfg.limits.max_accounts {
        // Never drop stored accounts; new ones are refused until the count is under the
        // limit again.
        log::warn!(
            "the store holds {} accounts, more than limits.max_accounts ({}); no new account can be added",
            db.users.len(),
            cfg.limits.max_accounts
        );
    }
    let secret = files::load_or_create_secret(&cfg.data_dir)
        .map_err(|e| ServeError::DataDir(cfg.data_dir.clone(), e))?;
    let tls = tls::setup(
        cfg.tls.certificate.as_deref(),
        cfg.tls.key.as_deref(),
        &cfg.data_dir,
        &cfg.domain,
    )
    .map_err(ServeError::Tls)?;
    if cfg.c2s.listen.is_empty() && cfg.c2s.listen_tls.is_empty() {
        return Err(ServeError::NoListeners);
    }
    let archive_dir = cfg.data_dir.join("archive");
    let (archive, archived) = ArchiveStore::open(&archive_dir, archive_limits(&cfg), unix_ms())
        .map_err(ServeError::Store)?;
    if archived.torn_tail_bytes > 0 {
        log::warn!(
            "{}: dropped {} bytes of an unfinished write at the end of the archive",
            archive_dir.display(),
            archived.torn_tail_bytes
        );
    }
    log::info!(
        "archive {}: {} offline messages waiting",
        archive_dir.display(),
        archived.offline.len()
    );
    let mut core = Core::new(
        CoreConfig {
            domain: cfg.domain.clone(),
            limits: cfg.limits.clone(),
            require_encryption: cfg.c2s.require_encryption,
            allow_plain_unencrypted: cfg.c2s.allow_plain_unencrypted,
            server_secret: secret,
        },
        db,
        Box::new(SystemEntropy::new()),
    );
    core.load_archive(archived.next_id, archived.offline);
    let stores = persist::Stores { db: store, archive };
    // Issue 7: settings of the extension modules, and the wall clock at the core's 0.
    core.configure_services(crate::xep::state::ServicesConfig {
        register_enabled: cfg.register.enabled,
        register_open: cfg.register.open,
        scram_iterations: cfg.scram_iterations,
        contact: vec![
            ("admin-addresses", cfg.contact.admin.clone()),
            ("abuse-addresses", cfg.contact.abuse.clone()),
            ("support-addresses", cfg.contact.support.clone()),
            ("security-addresses", cfg.contact.security.clone()),
        ],
        start_unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let (store_wake, store_rx) = smol::channel::bounded(1);
    let (timer_wake, timer_rx) = smol::channel::bounded(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            core,
            wakers: vec![WakeSlot::default(); CAP_CONNECTIONS],
            timer_armed: None,
            spare_write_buffers: Vec::with_capacity(crate::limits::CAP_SPARE_WRITE_BUFFERS),
        }),
        start: Instant::now(),
        store_wake,
        timer_wake,
        committed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        committed_event: event_listener::Event::new(),
        domain: cfg.domain.clone(),
        inbound_rate: (
            cfg.limits.inbound_bytes_per_sec,
            cfg.limits.inbound_burst_bytes,
        ),
        refusals: LogLimiter::new(),
    });
    let tls = Arc::new(tls);
    let ex = Arc::new(smol::Executor::new());
    let threads = cfg.threads as usize;
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut workers = Vec::new();
    for i in 1..threads {
        let ex = ex.clone();
        let stop = stop_rx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("xmppd-{i}"))
            .spawn(move || smol::block_on(ex.run(async { while stop.recv().await.is_ok() {} })))
            .map_err(|e| ServeError::DataDir(PathBuf::from("thread"), e))?;
        workers.push(handle);
    }
    let result = smol::block_on(ex.run(run(
        ex.clone(),
        shared,
        tls,
        cfg,
        stores,
        store_rx,
        timer_rx,
    )));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    result
}

async fn run(
    ex: Arc<smol::Executor<'static>>,
    shared: Arc<Shared>,
    tls: Arc<tls::TlsSetup>,
    cfg: Config,
    stores: persist::Stores,
    store_rx: Receiver<()>,
    timer_rx: Receiver<()>,
) -> Result<(), ServeError> {
    let mut listeners = Vec::new();
    for addr in &cfg.c2s.listen {
        listeners.push((bind(*addr).await?, false));
    }
    for addr in &cfg.c2s.listen_tls {
        listeners.push((bind(*addr).await?, true));
    }
    log::info!("domain: {}", cfg.domain);
    log::info!(
        "worst-case memory with these limits: {} MiB",
        worst_case_bytes(&cfg).div_ceil(1024 * 1024)
    );
    log::info!(
        "certificate {} SHA-256 fingerprint: {}",
        tls.cert_path.display(),
        tls.fingerprint
    );
    for (l, direct) in &listeners {
        let addr = l
            .local_addr()
            .map_err(|e| ServeError::Bind(cfg.c2s.listen[0], e))?;
        log::info!(
            "c2s ({}) listening on {addr}",
            if *direct { "direct TLS" } else { "STARTTLS" }
        );
    }
    let persist_task = ex.spawn(persist::run(
        shared.clone(),
        stores,
        store_rx,
        cfg.storage.flush_delay_ms,
    ));
    ex.spawn(timer_task(shared.clone(), timer_rx)).detach();
    let control =
        control::listen(&cfg.data_dir).map_err(|e| ServeError::DataDir(cfg.data_dir.clone(), e))?;
    ex.spawn(control::serve(shared.clone(), control)).detach();
    for (l, direct) in listeners {
        ex.spawn(accept_loop(
            ex.clone(),
            shared.clone(),
            tls.clone(),
            l,
            direct,
        ))
        .detach();
    }
    // Watched before "ready" is logged: a supervisor may send SIGTERM as soon as it sees
    // that line, and an unwatched SIGTERM would kill the process without a clean stop.
    let signals = watch_signals();
    log::info!("xmppd ready");
    wait_for_signal(signals).await;
    log::info!("shutting down");
    {
        let mut scratch = Vec::new();
        let mut st = shared.lock();
        let now = shared.now();
        st.core.shutdown(now);
        shared.dispatch(&mut st, &mut scratch);
    }
    // Give connections a moment to write their <system-shutdown/>.
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while shared.lock().core.connection_count() > 0 && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    // Everything acknowledged is already durable; flush what is still in flight.
    let last = shared.lock().core.last_record_seq();
    let _ = shared.store_wake.try_send(());
    let flushed = smol::future::or(async { shared.wait_committed(last).await }, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        false
    })
    .await;
    if !flushed {
        log::error!("could not write the last changes to the store before exiting");
    }
    drop(persist_task);
    control::remove_socket(&cfg.data_dir);
    log::info!("stopped");
    Ok(())
}

fn watch_signals() -> Option<async_signal::Signals> {
    use async_signal::{Signal, Signals};
    Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| log::error!("cannot watch signals ({e}); stop the server with SIGKILL"))
        .ok()
}

async fn wait_for_signal(signals: Option<async_signal::Signals>) {
    use smol::stream::StreamExt;
    match signals {
        Some(mut signals) => {
            let _ = signals.next().await;
        }
        None => smol::future::pending::<()>().await,
    }
}

async fn accept_loop(
    ex: Arc<smol::Executor<'static>>,
    shared: Arc<Shared>,
    tls: Arc<tls::TlsSetup>,
    listener: TcpListener,
    direct: bool,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                ex.spawn(conn::run(shared.clone(), tls.clone(), stream, peer, direct))
                    .detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn timer_task(shared: Arc<Shared>, wake: Receiver<()>) {
    let mut scratch = Vec::new();
    loop {
        let next = shared.lock().core.next_timeout();
        match next {
            Some(t) => {
                let wait = Duration::from_millis(t.saturating_sub(shared.now()));
                smol::future::or(
                    async {
                        smol::Timer::after(wait).await;
                    },
                    async {
                        let _ = wake.recv().await;
                    },
                )
                .await;
            }
            None => {
                if wake.recv().await.is_err() {
                    return;
                }
            }
        }
        let mut st = shared.lock();
        let now = shared.now();
        st.core.handle_timeout(now);
        st.timer_armed = st.core.next_timeout();
        shared.dispatch(&mut st, &mut scratch);
    }
}
