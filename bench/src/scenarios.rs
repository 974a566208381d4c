//! The load scenarios. Each takes a [`Target`] and the server's PID (for memory and CPU, when
//! known) and returns what it measured; none of them knows which server it talks to.
//!
//! Accounts: index 0 is the fan-out hub; 1..=N are the idle sessions, the throughput pairs
//! (senders 1..=P, receivers P+1..=2P), the login-storm workers and the hub's contacts; the
//! archive scenario's pair is 1 → 2.

use crate::client::{BenchError, Conn, Target, Transport, timeout};
use crate::procfs::{self, Window, WindowResult};
use crate::storage::{StorageProbe, StorageResult};
use crate::xml::{self, Event};
use smol::lock::Semaphore;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Logins in flight while opening many sessions (a client fleet reconnecting, not one socket).
pub const LOGIN_CONCURRENCY: usize = 16;

pub fn executor() -> &'static smol::Executor<'static> {
    static EX: OnceLock<smol::Executor<'static>> = OnceLock::new();
    EX.get_or_init(smol::Executor::new)
}

/// Nanoseconds on one clock shared by senders and receivers (same process).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

/// Logs in one account and sends initial presence.
pub async fn login_online(
    target: &Target,
    transport: Transport,
    index: usize,
    resource: &str,
) -> Result<Conn, BenchError> {
    timeout(LOGIN_TIMEOUT, "login", async {
        let mut conn = Conn::login(target, transport, index, resource).await?;
        conn.go_online("<presence/>").await?;
        Ok(conn)
    })
    .await
}

/// Logs in `indices` with at most [`LOGIN_CONCURRENCY`] at a time; all or an error.
pub async fn login_many(
    target: &Target,
    transport: Transport,
    indices: impl Iterator<Item = usize>,
    resource: &str,
) -> Result<Vec<Conn>, BenchError> {
    let gate = Arc::new(Semaphore::new(LOGIN_CONCURRENCY));
    let tasks: Vec<_> = indices
        .map(|i| {
            let (gate, target, resource) = (gate.clone(), target.clone(), resource.to_string());
            executor().spawn(async move {
                let _permit = gate.acquire().await;
                login_online(&target, transport, i, &resource).await
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(c) => conns.push(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(conns),
        Some(e) => {
            close_all(conns).await;
            Err(e)
        }
    }
}

pub async fn close_all(conns: Vec<Conn>) {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| executor().spawn(c.close()))
        .collect();
    for t in tasks {
        t.await;
    }
}

// ------------------------------------------------------------------------------------------
// 1. Idle sessions

#[derive(Debug, Clone)]
pub struct IdleResult {
    pub sessions: usize,
    pub logins_per_s: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub window: WindowResult,
}

impl IdleResult {
    pub fn kib_per_session(&self) -> Option<f64> {
        let (a, b) = (self.rss_before_kib?, self.rss_after_kib?);
        Some((b as f64 - a as f64) / self.sessions.max(1) as f64)
    }
}

/// Opens `n` sessions (accounts 1..=n) with initial presence, keeps them open for `settle`,
/// and reads the server's RSS before and after.
pub async fn idle(
    target: &Target,
    pid: Option<u32>,
    transport: Transport,
    n: usize,
    settle: Duration,
) -> Result<IdleResult, BenchError> {
    let rss_before_kib = pid.and_then(procfs::rss_kib);
    let window = Window::start(pid);
    let conns = login_many(target, transport, 1..=n, "idle").await?;
    let opened = window.finish(pid);
    sleep(settle).await;
    let rss_after_kib = pid.and_then(procfs::rss_kib);
    close_all(conns).await;
    Ok(IdleResult {
        sessions: n,
        logins_per_s: n as f64 / opened.wall.as_secs_f64().max(1e-9),
        rss_before_kib,
        rss_after_kib,
        window: opened,
    })
}

// ------------------------------------------------------------------------------------------
// 2. Throughput and latency

#[derive(Debug, Clone)]
pub struct ThroughputResult {
    pub delivered: u64,
    pub msgs_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
    pub window: WindowResult,
}

impl ThroughputResult {
    pub fn server_cpu_per_msg_us(&self) -> Option<f64> {
        Some(self.window.server_cpu?.as_secs_f64() * 1e6 / self.delivered.max(1) as f64)
    }
}

struct Flow {
    delivered: AtomicU64,
    errors: AtomicU64,
    recording: AtomicBool,
    stop: AtomicBool,
}

/// The shape of a throughput run.
#[derive(Clone, Copy)]
pub struct Load {
    pub transport: Transport,
    /// sender→receiver pairs
    pub pairs: usize,
    /// messages in flight per pair
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// false: each message carries XEP-0334 `<no-permanent-store/>`, which all three servers
    /// honour by not archiving it, so the run measures routing alone; true: no hint, every
    /// message is archived for both parties as a chat client's would be.
    pub archived: bool,
}

/// `pairs` sender→receiver pairs, each with at most `window` messages in flight, for
/// `warmup` + `duration`; only the `duration` part is measured. The body carries the send
/// time, so the receiver measures one-way latency through the server.
pub async fn throughput(
    target: &Target,
    pid: Option<u32>,
    load: Load,
) -> Result<ThroughputResult, BenchError> {
    let Load {
        transport,
        pairs,
        window,
        warmup,
        duration,
        archived,
    } = load;
    let hint = if archived {
        ""
    } else {
        "<no-permanent-store xmlns='urn:xmpp:hints'/>"
    };
    let mut senders = login_many(target, transport, 1..=pairs, "tx").await?;
    let receivers = match login_many(target, transport, pairs + 1..=2 * pairs, "rx").await {
        Ok(r) => r,
        Err(e) => {
            close_all(senders).await;
            return Err(e);
        }
    };
    let flow = Arc::new(Flow {
        delivered: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let gates: Vec<Arc<Semaphore>> = (0..pairs)
        .map(|_| Arc::new(Semaphore::new(window)))
        .collect();
    let mut receiver_tasks = Vec::new();
    let mut receiver_writers = Vec::new();
    for (rx, gate) in receivers.into_iter().zip(&gates) {
        let (mut reader, writer) = rx.split();
        receiver_writers.push(writer);
        let (flow, gate) = (flow.clone(), gate.clone());
        receiver_tasks.push(executor().spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            while let Ok(ev) = reader.next_event().await {
                let Event::Element(r) = ev else { break };
                let el = reader.framer.bytes(r);
                if xml::local_name(el) != b"message" {
                    continue;
                }
                let sent = xml::child_text(el, b"body")
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                if let Some(sent) = sent {
                    if flow.recording.load(Ordering::Relaxed) {
                        latencies.push(now_ns().saturating_sub(sent).min(u32::MAX as u64) as u32);
                    }
                    flow.delivered.fetch_add(1, Ordering::Relaxed);
                    gate.add_permits(1);
                }
            }
            latencies
        }));
    }
    let mut sender_tasks = Vec::new();
    for (i, tx) in senders.drain(..).enumerate() {
        let to = receiver_jid(target, pairs + 1 + i);
        let (mut reader, mut writer) = tx.split();
        let flow_r = flow.clone();
        // Whatever the server sends a sender (a bounce would be a message of type error).
        let drain = executor().spawn(async move {
            while let Ok(Event::Element(r)) = reader.next_event().await {
                let el = reader.framer.bytes(r);
                if xml::local_name(el) == b"message" && xml::attr(el, b"type") == Some(b"error") {
                    flow_r.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (flow, gate) = (flow.clone(), gates[i].clone());
        sender_tasks.push(executor().spawn(async move {
            let mut buf = String::with_capacity(160);
            let mut n = 0u64;
            loop {
                gate.acquire().await.forget();
                if flow.stop.load(Ordering::Relaxed) {
                    break;
                }
                use std::fmt::Write;
                buf.clear();
                n += 1;
                let _ = write!(
                    buf,
                    "<message to='{to}' type='chat' id='m{n}'><body>{}</body>{hint}</message>",
                    now_ns()
                );
                if writer.send(buf.as_bytes()).await.is_err() {
                    break;
                }
            }
            let _ = writer.send(b"</stream:stream>").await;
            let _ = timeout(Duration::from_secs(3), "sender close", async {
                drain.await;
                Ok(())
            })
            .await;
            writer.close().await;
            n
        }));
    }
    sleep(warmup).await;
    let delivered_before = flow.delivered.load(Ordering::Relaxed);
    flow.recording.store(true, Ordering::Relaxed);
    let measured = Window::start(pid);
    sleep(duration).await;
    let result = measured.finish(pid);
    flow.recording.store(false, Ordering::Relaxed);
    let delivered = flow.delivered.load(Ordering::Relaxed) - delivered_before;
    flow.stop.store(true, Ordering::Relaxed);
    for gate in &gates {
        gate.add_permits(window + 1);
    }
    let mut sent = 0;
    for t in sender_tasks {
        sent += t.await;
    }
    // Let in-flight messages arrive, then close the receivers' streams.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while flow.delivered.load(Ordering::Relaxed) + flow.errors.load(Ordering::Relaxed) < sent
        && Instant::now() < drain_deadline
    {
        sleep(Duration::from_millis(5)).await;
    }
    for mut w in receiver_writers {
        let _ = w.send(b"</stream:stream>").await;
        w.close().await;
    }
    let mut latencies = Vec::new();
    for t in receiver_tasks {
        latencies.extend(t.await);
    }
    latencies.sort_unstable();
    let lost = sent.saturating_sub(flow.delivered.load(Ordering::Relaxed));
    Ok(ThroughputResult {
        delivered,
        msgs_per_s: delivered as f64 / result.wall.as_secs_f64().max(1e-9),
        p50_us: percentile(&latencies, 0.50) / 1e3,
        p99_us: percentile(&latencies, 0.99) / 1e3,
        errors: flow.errors.load(Ordering::Relaxed) + lost,
        window: result,
    })
}

/// The receivers bind resource "rx"; full-JID routing (RFC 6121 §8.5.3).
fn receiver_jid(target: &Target, index: usize) -> String {
    format!("{}/rx", target.bare_jid(index))
}

pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

// ------------------------------------------------------------------------------------------
// 3. Login storm

#[derive(Debug, Clone)]
pub struct StormResult {
    pub logins: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: WindowResult,
}

impl StormResult {
    pub fn logins_per_s(&self) -> f64 {
        self.logins as f64 / self.window.wall.as_secs_f64().max(1e-9)
    }

    pub fn server_cpu_per_login_ms(&self) -> Option<f64> {
        Some(self.window.server_cpu?.as_secs_f64() * 1e3 / self.logins.max(1) as f64)
    }
}

/// `workers` loops of connect + TLS + SASL + bind + close for `duration`.
pub async fn storm(
    target: &Target,
    pid: Option<u32>,
    transport: Transport,
    workers: usize,
    users: usize,
    duration: Duration,
) -> Result<StormResult, BenchError> {
    let logins = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let measured = Window::start(pid);
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|k| {
            let (target, logins, errors, first_error) = (
                target.clone(),
                logins.clone(),
                errors.clone(),
                first_error.clone(),
            );
            executor().spawn(async move {
                let index = 1 + k % users.max(1);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let resource = format!("storm{k}-{n}");
                    let attempt = timeout(
                        LOGIN_TIMEOUT,
                        "login",
                        Conn::login(&target, transport, index, &resource),
                    )
                    .await;
                    match attempt {
                        Ok(conn) => {
                            conn.close().await;
                            logins.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut f) = first_error.lock() {
                                f.get_or_insert_with(|| e.to_string());
                            }
                            sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let window = measured.finish(pid);
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    Ok(StormResult {
        logins: logins.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        window,
    })
}

// ------------------------------------------------------------------------------------------
// 4. Presence fan-out

#[derive(Debug, Clone)]
pub struct FanoutResult {
    pub contacts: usize,
    pub changes: usize,
    pub deliveries: u64,
    pub window: WindowResult,
}

impl FanoutResult {
    pub fn deliveries_per_s(&self) -> f64 {
        self.deliveries as f64 / self.window.wall.as_secs_f64().max(1e-9)
    }

    pub fn server_cpu_per_delivery_us(&self) -> Option<f64> {
        Some(self.window.server_cpu?.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64)
    }
}

/// The hub (account 0) changes presence `changes` times with at most `in_flight` changes
/// not yet delivered to every contact; contacts 1..=`contacts` are subscribed to the hub
/// (see [`ensure_subscriptions`]) and count what they receive.
pub async fn fanout(
    target: &Target,
    pid: Option<u32>,
    transport: Transport,
    contacts: usize,
    changes: usize,
    in_flight: usize,
) -> Result<FanoutResult, BenchError> {
    let conns = login_many(target, transport, 1..=contacts, "fan").await?;
    // Presence from the hub: its initial presence, and the measured changes.
    let initial = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let credit = Arc::new(Semaphore::new(in_flight.max(1) * contacts));
    let hub_prefix = format!("{}/", target.bare_jid(0));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for c in conns {
        let (mut reader, writer) = c.split();
        writers.push(writer);
        let (initial_seen, changes_seen, credit, hub_prefix) = (
            initial.clone(),
            delivered.clone(),
            credit.clone(),
            hub_prefix.clone(),
        );
        readers.push(executor().spawn(async move {
            while let Ok(Event::Element(r)) = reader.next_event().await {
                let el = reader.framer.bytes(r);
                if xml::local_name(el) == b"presence"
                    && xml::attr(el, b"from").is_some_and(|f| f.starts_with(hub_prefix.as_bytes()))
                {
                    if xml::find(el, b"<status>change ").is_some() {
                        changes_seen.fetch_add(1, Ordering::Relaxed);
                        credit.add_permits(1);
                    } else {
                        initial_seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let counters = FanoutCounters {
        initial,
        delivered,
        credit,
    };
    let outcome = fanout_drive(target, pid, transport, contacts, changes, &counters).await;
    for mut w in writers {
        let _ = w.send(b"</stream:stream>").await;
        w.close().await;
    }
    for r in readers {
        let _ = timeout(Duration::from_secs(5), "contact close", async {
            r.await;
            Ok(())
        })
        .await;
    }
    outcome
}

/// What the contacts' readers count, shared with the hub's driver.
struct FanoutCounters {
    initial: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    credit: Arc<Semaphore>,
}

async fn fanout_drive(
    target: &Target,
    pid: Option<u32>,
    transport: Transport,
    contacts: usize,
    changes: usize,
    counters: &FanoutCounters,
) -> Result<FanoutResult, BenchError> {
    let FanoutCounters {
        initial,
        delivered,
        credit,
    } = counters;
    let hub = login_online(target, transport, 0, "hub").await?;
    let (mut hub_reader, mut hub_writer) = hub.split();
    let hub_drain = executor().spawn(async move { while hub_reader.next_event().await.is_ok() {} });
    // The hub's initial presence reaches every subscribed contact first.
    let initial_wait = timeout(
        Duration::from_secs(20),
        "initial presence at every contact",
        async {
            while initial.load(Ordering::Relaxed) < contacts as u64 {
                sleep(Duration::from_millis(2)).await;
            }
            Ok(())
        },
    )
    .await;
    if let Err(e) = initial_wait {
        let got = initial.load(Ordering::Relaxed);
        let _ = hub_writer.send(b"</stream:stream>").await;
        return Err(BenchError::Protocol(format!(
            "{e}: {got} of {contacts} contacts saw the hub's presence (are they subscribed? run setup)"
        )));
    }
    let base = delivered.load(Ordering::Relaxed);
    let measured = Window::start(pid);
    let sending = async {
        for i in 0..changes {
            for _ in 0..contacts {
                credit.acquire().await.forget();
            }
            let show = if i % 2 == 0 { "<show>away</show>" } else { "" };
            let p = format!("<presence>{show}<status>change {i}</status></presence>");
            hub_writer.send(p.as_bytes()).await?;
        }
        while delivered.load(Ordering::Relaxed) < base + (changes * contacts) as u64 {
            sleep(Duration::from_micros(500)).await;
        }
        Ok(())
    };
    let sent = timeout(Duration::from_secs(120), "presence fan-out", sending).await;
    let window = measured.finish(pid);
    let _ = hub_writer.send(b"</stream:stream>").await;
    let _ = timeout(Duration::from_secs(3), "hub close", async {
        hub_drain.await;
        Ok(())
    })
    .await;
    hub_writer.close().await;
    sent?;
    Ok(FanoutResult {
        contacts,
        changes,
        deliveries: delivered.load(Ordering::Relaxed) - base,
        window,
    })
}

/// Makes contacts 1..=`contacts` subscribed to the hub's presence (hub roster: subscription
/// "from" or "both"), through the protocol (RFC 6121 §3.1): each missing contact sends
/// `subscribe`, the online hub answers `subscribed`. Idempotent; state stays on the server.
pub async fn ensure_subscriptions(target: &Target, contacts: usize) -> Result<usize, BenchError> {
    let mut hub = login_online(target, Transport::StartTls, 0, "setup").await?;
    let have = roster_subscribers(&mut hub, target).await?;
    let missing: Vec<usize> = (1..=contacts)
        .filter(|i| !have.contains(&target.bare_jid(*i)))
        .collect();
    if missing.is_empty() {
        hub.close().await;
        return Ok(0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_hub = stop.clone();
    let hub_task = executor().spawn(async move {
        // Answer every subscription request (also those stored while the hub was offline).
        while !stop_hub.load(Ordering::Relaxed) {
            let el = match timeout(Duration::from_millis(200), "", hub.reader.next_element()).await
            {
                Ok(el) => el,
                Err(BenchError::Timeout(_)) => continue,
                Err(e) => return Err(e),
            };
            if std::env::var_os("XMPPD_BENCH_DEBUG").is_some() {
                eprintln!("hub <- {}", crate::client::lossy(&el));
            }
            if xml::local_name(&el) == b"presence"
                && xml::attr(&el, b"type") == Some(b"subscribe")
                && let Some(from) = xml::attr(&el, b"from")
            {
                let reply = format!(
                    "<presence type='subscribed' to='{}'/>",
                    crate::client::lossy(from)
                );
                hub.send(reply.as_bytes()).await?;
            }
        }
        Ok(hub)
    });
    let hub_bare = target.bare_jid(0);
    for batch in missing.chunks(20) {
        let conns = login_many(target, Transport::StartTls, batch.iter().copied(), "setup").await?;
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                let hub_bare = hub_bare.clone();
                executor().spawn(async move {
                    let req = format!("<presence type='subscribe' to='{hub_bare}'/>");
                    c.send(req.as_bytes()).await?;
                    let r = timeout(Duration::from_secs(15), "subscription approval", async {
                        loop {
                            let el = c.reader.next_element().await?;
                            if std::env::var_os("XMPPD_BENCH_DEBUG").is_some() {
                                eprintln!("contact <- {}", crate::client::lossy(&el));
                            }
                            // Approved: `subscribed` (RFC 6121 §3.1.5), or, where the server
                            // does not forward that to a resource that never asked for its
                            // roster (Prosody), the hub's available presence itself.
                            let ty = xml::attr(&el, b"type");
                            if xml::local_name(&el) == b"presence"
                                && (ty == Some(b"subscribed") || ty.is_none())
                                && xml::attr(&el, b"from")
                                    .is_some_and(|f| f.starts_with(hub_bare.as_bytes()))
                            {
                                return Ok(());
                            }
                        }
                    })
                    .await;
                    c.close().await;
                    r
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hub = hub_task.await?;
    let have = roster_subscribers(&mut hub, target).await?;
    hub.close().await;
    let still_missing = (1..=contacts)
        .filter(|i| !have.contains(&target.bare_jid(*i)))
        .count();
    if still_missing > 0 {
        return Err(BenchError::Protocol(format!(
            "{still_missing} contacts still not subscribed to the hub"
        )));
    }
    Ok(missing.len())
}

/// Bare JIDs on the roster that receive this account's presence.
async fn roster_subscribers(conn: &mut Conn, target: &Target) -> Result<Vec<String>, BenchError> {
    conn.send(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let reply = conn.reader.wait_iq(b"roster1").await?;
    let mut out = Vec::new();
    let mut rest = &reply[..];
    while let Some(pos) = xml::find(rest, b"<item") {
        rest = &rest[pos..];
        let sub = xml::attr(rest, b"subscription");
        if (sub == Some(b"from") || sub == Some(b"both"))
            && let Some(jid) = xml::attr(rest, b"jid")
        {
            out.push(crate::client::lossy(jid).to_lowercase());
        }
        rest = &rest[5..];
    }
    let _ = target;
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// 5. Cold start

/// Tries to log in (TLS as given + SASL + bind) until it works; returns when it first did,
/// measured from `started`.
pub async fn first_login(
    target: &Target,
    transport: Transport,
    started: Instant,
    limit: Duration,
) -> Result<Duration, BenchError> {
    let mut last = None;
    while started.elapsed() < limit {
        match timeout(
            Duration::from_secs(5),
            "login",
            Conn::login(target, transport, 1, "cold"),
        )
        .await
        {
            Ok(conn) => {
                let took = started.elapsed();
                conn.close().await;
                return Ok(took);
            }
            Err(e) => last = Some(e),
        }
        sleep(Duration::from_millis(2)).await;
    }
    Err(last.unwrap_or(BenchError::Timeout("first login")))
}

// ------------------------------------------------------------------------------------------
// 6. Archive writes

/// The archive scenario's sender and receiver (the first throughput pair's accounts when
/// there is one pair).
pub const ARCHIVE_SENDER: usize = 1;
pub const ARCHIVE_RECEIVER: usize = 2;
/// After the last delivery: time for the servers' delayed archive writes (xmppd's group
/// commit waits up to 100 ms) to land inside the measured window.
pub const ARCHIVE_TAIL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ArchiveResult {
    pub rate: u32,
    /// The sending time (messages ÷ rate).
    pub paced: Duration,
    pub sent: u64,
    pub delivered: u64,
    /// Bounced (message of type error) or never delivered.
    pub errors: u64,
    /// From the first message to [`ARCHIVE_TAIL`] after the last delivery.
    pub window: WindowResult,
    pub storage: StorageResult,
}

impl ArchiveResult {
    fn per_message(&self, v: f64) -> f64 {
        v / self.delivered.max(1) as f64
    }

    /// write_bytes ÷ delivered messages.
    pub fn write_bytes_per_msg(&self) -> Option<f64> {
        Some(self.per_message(self.storage.io?.write_bytes as f64))
    }

    /// Data-directory growth ÷ delivered messages.
    pub fn growth_per_msg(&self) -> Option<f64> {
        Some(self.per_message(self.storage.data_growth? as f64))
    }

    /// Sync calls in the window ÷ the sending time.
    pub fn syncs_per_s(&self) -> Option<f64> {
        Some(self.storage.syncs.as_ref()?.total() as f64 / self.paced.as_secs_f64().max(1e-9))
    }

    pub fn server_cpu_per_msg_us(&self) -> Option<f64> {
        Some(self.per_message(self.window.server_cpu?.as_secs_f64() * 1e6))
    }
}

/// One sender → receiver pair ([`ARCHIVE_SENDER`] → [`ARCHIVE_RECEIVER`]), `rate` chat
/// messages per second with a short body for `duration`, each due at its own time (no
/// catching up in bursts); every message must be delivered. `probe` watches the server's
/// storage from just before the first message to [`ARCHIVE_TAIL`] after the last delivery.
pub async fn archive(
    target: &Target,
    probe: &StorageProbe,
    transport: Transport,
    rate: u32,
    duration: Duration,
) -> Result<ArchiveResult, BenchError> {
    let rate = rate.max(1);
    let total = (u64::from(rate) as f64 * duration.as_secs_f64()).round() as u64;
    let paced = Duration::from_secs_f64(total as f64 / f64::from(rate));
    let sender = login_online(target, transport, ARCHIVE_SENDER, "tx").await?;
    let receiver = match login_online(target, transport, ARCHIVE_RECEIVER, "rx").await {
        Ok(r) => r,
        Err(e) => {
            sender.close().await;
            return Err(e);
        }
    };
    let delivered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let (mut rx_reader, mut rx_writer) = receiver.split();
    let seen = delivered.clone();
    let rx_task = executor().spawn(async move {
        while let Ok(Event::Element(r)) = rx_reader.next_event().await {
            let el = rx_reader.framer.bytes(r);
            if xml::local_name(el) == b"message"
                && xml::child_text(el, b"body")
                    .is_some_and(|b| b.starts_with(ARCHIVE_BODY.as_bytes()))
            {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let (mut tx_reader, mut tx_writer) = sender.split();
    let bounced = errors.clone();
    let tx_drain = executor().spawn(async move {
        while let Ok(Event::Element(r)) = tx_reader.next_event().await {
            let el = tx_reader.framer.bytes(r);
            if xml::local_name(el) == b"message" && xml::attr(el, b"type") == Some(b"error") {
                bounced.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let to = receiver_jid(target, ARCHIVE_RECEIVER);
    let outcome = archive_window(
        probe,
        &mut tx_writer,
        &to,
        rate,
        total,
        (&delivered, &errors),
    )
    .await;
    for w in [&mut tx_writer, &mut rx_writer] {
        let _ = w.send(b"</stream:stream>").await;
    }
    let _ = timeout(Duration::from_secs(3), "archive pair close", async {
        tx_drain.await;
        rx_task.await;
        Ok(())
    })
    .await;
    tx_writer.close().await;
    rx_writer.close().await;
    let (window, storage) = outcome?;
    let delivered = delivered.load(Ordering::Relaxed);
    Ok(ArchiveResult {
        rate,
        paced,
        sent: total,
        delivered,
        errors: errors.load(Ordering::Relaxed) + total.saturating_sub(delivered),
        window,
        storage,
    })
}

/// Every archived message's body starts with this (a short body: the archive entry's size
/// is mostly the servers' own per-entry data).
const ARCHIVE_BODY: &str = "archived message ";

/// The measured part: probe on, paced sends, wait for every delivery, tail, probe off.
async fn archive_window<W: smol::io::AsyncWrite + Unpin>(
    probe: &StorageProbe,
    writer: &mut crate::client::Writer<W>,
    to: &str,
    rate: u32,
    total: u64,
    (delivered, errors): (&AtomicU64, &AtomicU64),
) -> Result<(WindowResult, StorageResult), BenchError> {
    let storage = probe.start().await.map_err(BenchError::Protocol)?;
    let measured = Window::start(probe.pid);
    let start = Instant::now();
    let mut sent = Ok(());
    let mut buf = String::with_capacity(160);
    for n in 0..total {
        smol::Timer::at(start + Duration::from_secs_f64(n as f64 / f64::from(rate))).await;
        use std::fmt::Write;
        buf.clear();
        let _ = write!(
            buf,
            "<message to='{to}' type='chat' id='a{n}'><body>{ARCHIVE_BODY}{n}: hello</body></message>"
        );
        sent = writer.send(buf.as_bytes()).await;
        if sent.is_err() {
            break;
        }
    }
    let _ = timeout(Duration::from_secs(10), "archive deliveries", async {
        while delivered.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) < total {
            sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    })
    .await;
    sleep(ARCHIVE_TAIL).await;
    let window = measured.finish(probe.pid);
    let storage = storage.finish().await.map_err(BenchError::Protocol)?;
    sent?;
    Ok((window, storage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
