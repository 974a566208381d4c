//! The side-by-side run: starts each server from the work directory prepared by
//! `bench/peers.sh prepare`, runs every scenario against it, stops it, and goes on to the next
//! server, interleaved (A B C A B C …) for every repetition.

use crate::client::{BenchError, Mechanism, Target, Transport};
use crate::procfs;
use crate::results::Results;
use crate::scenarios;
use crate::storage::{StorageProbe, Tracer};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server as `peers.sh prepare` describes it in `WORK/NAME/server.env`.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls_port: u16,
    pub domain: String,
    pub prefix: String,
    pub password: String,
    pub users: usize,
    pub run: PathBuf,
    /// Run to completion before each start, untimed: empties the message archive so that
    /// every repetition starts from the same state (optional in server.env).
    pub reset: Option<PathBuf>,
    /// The server's state directory, whose growth the archive scenario measures (optional).
    pub data: Option<PathBuf>,
}

impl ServerSpec {
    pub fn load(work: &Path, name: &str) -> Result<ServerSpec, String> {
        let path = work.join(name).join("server.env");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (run bench/peers.sh prepare first)", path.display()))?;
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            kv.get(k)
                .map(|v| v.to_string())
                .ok_or(format!("{}: no {k}", path.display()))
        };
        let num = |k: &str| {
            get(k)?
                .parse::<usize>()
                .map_err(|e| format!("{}: {k}: {e}", path.display()))
        };
        let port =
            |k: &str| u16::try_from(num(k)?).map_err(|e| format!("{}: {k}: {e}", path.display()));
        Ok(ServerSpec {
            name: get("name")?,
            host: get("host")?,
            port: port("port")?,
            tls_port: port("tls_port")?,
            domain: get("domain")?,
            prefix: get("prefix")?,
            password: get("password")?,
            users: num("users")?,
            run: PathBuf::from(get("run")?),
            reset: kv.get("reset").map(PathBuf::from),
            data: kv.get("data").map(PathBuf::from),
        })
    }

    pub fn target(&self, mechanism: Mechanism) -> Result<Target, BenchError> {
        Target::new(
            self.host.clone(),
            self.port,
            self.tls_port,
            self.domain.clone(),
            self.prefix.clone(),
            self.password.clone(),
            mechanism,
        )
    }
}

/// A server process we started; stopped by its PID.
pub struct Running {
    child: Child,
    pub pid: u32,
    pub started: Instant,
}

impl Running {
    pub fn start(spec: &ServerSpec) -> Result<Running, String> {
        for port in [spec.port, spec.tls_port] {
            if TcpStream::connect((spec.host.as_str(), port)).is_ok() {
                return Err(format!(
                    "{}: port {port} is already in use by another process",
                    spec.name
                ));
            }
        }
        if let Some(reset) = &spec.reset {
            let status = Command::new("/bin/sh")
                .arg(reset)
                .stdin(Stdio::null())
                .status()
                .map_err(|e| format!("{}: running {}: {e}", spec.name, reset.display()))?;
            if !status.success() {
                return Err(format!(
                    "{}: {} failed: {status}",
                    spec.name,
                    reset.display()
                ));
            }
        }
        let started = Instant::now();
        // run.sh execs the server, so the child's PID is the server's.
        let child = Command::new("/bin/sh")
            .arg(&spec.run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: starting {}: {e}", spec.name, spec.run.display()))?;
        let pid = child.id();
        Ok(Running {
            child,
            pid,
            started,
        })
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub fn stop(mut self) {
        procfs::signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub work: PathBuf,
    pub servers: Vec<String>,
    pub reps: usize,
    pub sessions: usize,
    pub pairs: usize,
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub latency_secs: Duration,
    pub storm_workers: usize,
    pub storm_secs: Duration,
    pub contacts: usize,
    pub changes: usize,
    pub fanout_window: usize,
    pub archive_rate: u32,
    pub archive_secs: Duration,
    pub sync_tracer: Option<Tracer>,
    pub settle: Duration,
    pub mechanism: Mechanism,
    pub tls: Transport,
}

pub struct Progress {
    started: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
        }
    }

    pub fn say(&self, what: &str) {
        let s = self.started.elapsed().as_secs();
        eprintln!("[{:02}:{:02}] {what}", s / 60, s % 60);
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Runs a future on the generator's executor (its other threads help when --threads > 1).
pub fn block<T>(f: impl Future<Output = T>) -> T {
    smol::block_on(scenarios::executor().run(f))
}

/// What the report needs besides the numbers.
#[derive(Default)]
pub struct RunInfo {
    pub process_names: BTreeMap<String, String>,
    pub subscriptions_created: BTreeMap<String, usize>,
    pub wall: Duration,
    /// 1-minute load average before each server's turn.
    pub load_samples: Vec<f64>,
    /// File system of the work directory (write_bytes is 0 on tmpfs), as `df` names it.
    pub work_fs: Option<String>,
}

fn check_sizes(opts: &SuiteOptions, spec: &ServerSpec) -> Result<(), String> {
    let need = opts
        .sessions
        .max(2 * opts.pairs)
        .max(opts.contacts)
        .max(opts.storm_workers)
        + 1;
    if spec.users < need {
        return Err(format!(
            "{}: {} accounts prepared, the options need {need} (BENCH_USERS={need} bench/peers.sh prepare)",
            spec.name, spec.users
        ));
    }
    Ok(())
}

pub fn run_suite(
    opts: &SuiteOptions,
    results: &mut Results,
    info: &mut RunInfo,
) -> Result<(), String> {
    let progress = Progress::new();
    let specs: Vec<ServerSpec> = opts
        .servers
        .iter()
        .map(|s| ServerSpec::load(&opts.work, s))
        .collect::<Result<_, _>>()?;
    for spec in &specs {
        check_sizes(opts, spec)?;
    }
    info.work_fs = file_system(&opts.work);
    // Provisioning: the fan-out hub's subscriptions, once per server (they persist).
    for spec in &specs {
        progress.say(&format!(
            "setup · {} · first login, key cache, {} contacts subscribed to the hub",
            spec.name, opts.contacts
        ));
        let target = spec.target(opts.mechanism).map_err(|e| e.to_string())?;
        let running = Running::start(spec)?;
        let outcome = block(async {
            scenarios::first_login(&target, opts.tls, running.started, Duration::from_secs(90))
                .await?;
            // Every account logs in once, so the generator holds its SCRAM keys before
            // anything is measured (its PBKDF2 must not count in the login rates).
            let all = opts
                .sessions
                .max(2 * opts.pairs)
                .max(opts.contacts)
                .max(opts.storm_workers);
            scenarios::close_all(
                scenarios::login_many(&target, Transport::Plain, 0..=all, "warm").await?,
            )
            .await;
            scenarios::ensure_subscriptions(&target, opts.contacts).await
        });
        if let Some(name) = procfs::comm(running.pid) {
            info.process_names.insert(spec.name.clone(), name);
        }
        running.stop();
        let created = outcome.map_err(|e| format!("{}: setup failed: {e}", spec.name))?;
        info.subscriptions_created
            .insert(spec.name.clone(), created);
    }
    for rep in 1..=opts.reps {
        for spec in &specs {
            let tag = format!("rep {rep}/{} · {}", opts.reps, spec.name);
            if let Some(load) = one_minute_load() {
                info.load_samples.push(load);
            }
            if let Err(e) = run_server_rep(opts, spec, &tag, &progress, results) {
                progress.say(&format!("{tag} · FAILED: {e}"));
                results.failures.push(format!("{tag}: {e}"));
            }
            if let Err(e) = run_archive(opts, spec, &tag, &progress, results) {
                progress.say(&format!("{tag} · archive FAILED: {e}"));
                results.failures.push(format!("{tag}: archive: {e}"));
            }
        }
    }
    info.wall = progress.elapsed();
    progress.say("done");
    Ok(())
}

/// "ext4 (/dev/vda)": the type and source of the file system holding `path`.
fn file_system(path: &Path) -> Option<String> {
    let out = Command::new("df")
        .args(["--output=fstype,source"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.lines().nth(1)?.split_whitespace();
    let (fstype, source) = (fields.next()?, fields.next()?);
    Some(format!("{fstype} ({source})"))
}

fn one_minute_load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Starts the server, measures the cold start (first login) and the idle RSS after `settle`.
fn start_measured(
    spec: &ServerSpec,
    target: &Target,
    opts: &SuiteOptions,
    results: &mut Results,
) -> Result<Running, String> {
    let running = Running::start(spec)?;
    let cold = block(scenarios::first_login(
        target,
        opts.tls,
        running.started,
        Duration::from_secs(90),
    ));
    match cold {
        Ok(d) => results.add("cold_start_ms", &spec.name, Some(d.as_secs_f64() * 1e3)),
        Err(e) => {
            running.stop();
            return Err(format!("no first login: {e}"));
        }
    }
    std::thread::sleep(opts.settle);
    results.add(
        "idle_rss_mib",
        &spec.name,
        procfs::rss_kib(running.pid).map(|k| k as f64 / 1024.0),
    );
    results.add(
        "idle_anon_mib",
        &spec.name,
        procfs::rss_anon_kib(running.pid).map(|k| k as f64 / 1024.0),
    );
    Ok(running)
}

fn run_server_rep(
    opts: &SuiteOptions,
    spec: &ServerSpec,
    tag: &str,
    progress: &Progress,
    results: &mut Results,
) -> Result<(), String> {
    let target = spec.target(opts.mechanism).map_err(|e| e.to_string())?;
    let name = spec.name.as_str();

    // A fresh server for each idle measurement: memory freed by earlier sessions would be
    // reused by later ones and hide their cost.
    progress.say(&format!(
        "{tag} · start + idle sessions, plain ({} sessions)",
        opts.sessions
    ));
    let running = start_measured(spec, &target, opts, results)?;
    let pid = Some(running.pid);
    let idle = block(scenarios::idle(
        &target,
        pid,
        Transport::Plain,
        opts.sessions,
        opts.settle,
    ));
    running.stop();
    let idle = idle.map_err(|e| format!("idle plain: {e}"))?;
    results.add("idle_plain_kib", name, idle.kib_per_session());
    results.add("idle_plain_rate", name, Some(idle.logins_per_s));
    progress.say(&format!(
        "{tag} ·   {:.1} KiB/session, {:.0} logins/s",
        idle.kib_per_session().unwrap_or(f64::NAN),
        idle.logins_per_s
    ));

    progress.say(&format!(
        "{tag} · start + idle sessions, {} ({} sessions)",
        opts.tls.name(),
        opts.sessions
    ));
    let running = start_measured(spec, &target, opts, results)?;
    let pid = Some(running.pid);
    let outcome = run_loaded(opts, &target, pid, tag, progress, results, name);
    running.stop();
    outcome
}

fn run_loaded(
    opts: &SuiteOptions,
    target: &Target,
    pid: Option<u32>,
    tag: &str,
    progress: &Progress,
    results: &mut Results,
    name: &str,
) -> Result<(), String> {
    let idle = block(scenarios::idle(
        target,
        pid,
        opts.tls,
        opts.sessions,
        opts.settle,
    ))
    .map_err(|e| format!("idle tls: {e}"))?;
    results.add("idle_tls_kib", name, idle.kib_per_session());
    results.add("idle_tls_rate", name, Some(idle.logins_per_s));
    progress.say(&format!(
        "{tag} ·   {:.1} KiB/session, {:.0} logins/s",
        idle.kib_per_session().unwrap_or(f64::NAN),
        idle.logins_per_s
    ));

    for (transport, archived, label, keys) in [
        (
            Transport::Plain,
            false,
            "plain",
            [
                "tput_plain_cpu_us",
                "tput_plain_rate",
                "tput_plain_p50_ms",
                "tput_plain_p99_ms",
                "bench_cpu_tput_plain",
            ],
        ),
        (
            opts.tls,
            false,
            opts.tls.name(),
            [
                "tput_tls_cpu_us",
                "tput_tls_rate",
                "tput_tls_p50_ms",
                "tput_tls_p99_ms",
                "bench_cpu_tput_tls",
            ],
        ),
        (
            Transport::Plain,
            true,
            "plain, archived",
            [
                "tput_arch_cpu_us",
                "tput_arch_rate",
                "tput_arch_p50_ms",
                "tput_arch_p99_ms",
                "bench_cpu_tput_arch",
            ],
        ),
    ] {
        progress.say(&format!(
            "{tag} · throughput, {label} ({} pairs, window {}, {:?})",
            opts.pairs, opts.window, opts.duration
        ));
        let t = block(scenarios::throughput(
            target,
            pid,
            scenarios::Load {
                transport,
                pairs: opts.pairs,
                window: opts.window,
                warmup: opts.warmup,
                duration: opts.duration,
                archived,
            },
        ))
        .map_err(|e| format!("throughput {label}: {e}"))?;
        if t.errors > 0 {
            results.failures.push(format!(
                "{tag}: throughput {label}: {} messages bounced or lost",
                t.errors
            ));
        }
        results.add(keys[0], name, t.server_cpu_per_msg_us());
        results.add(keys[1], name, Some(t.msgs_per_s));
        results.add(keys[2], name, Some(t.p50_us / 1e3));
        results.add(keys[3], name, Some(t.p99_us / 1e3));
        results.add(keys[4], name, Some(t.window.bench_cpu_percent()));
        progress.say(&format!(
            "{tag} ·   {:.0} msg/s, {:.2} µs server CPU/msg, p50 {:.2} ms p99 {:.2} ms, generator {:.0}%",
            t.msgs_per_s,
            t.server_cpu_per_msg_us().unwrap_or(f64::NAN),
            t.p50_us / 1e3,
            t.p99_us / 1e3,
            t.window.bench_cpu_percent()
        ));
    }

    progress.say(&format!(
        "{tag} · unloaded latency ({:?})",
        opts.latency_secs
    ));
    let l = block(scenarios::throughput(
        target,
        pid,
        scenarios::Load {
            transport: opts.tls,
            pairs: 1,
            window: 1,
            warmup: Duration::from_millis(300),
            duration: opts.latency_secs,
            archived: false,
        },
    ))
    .map_err(|e| format!("latency: {e}"))?;
    results.add("lat_p50_us", name, Some(l.p50_us));
    results.add("lat_p99_us", name, Some(l.p99_us));
    progress.say(&format!(
        "{tag} ·   p50 {:.0} µs, p99 {:.0} µs over {} messages",
        l.p50_us, l.p99_us, l.delivered
    ));

    progress.say(&format!(
        "{tag} · login storm ({} workers, {:?})",
        opts.storm_workers, opts.storm_secs
    ));
    let s = block(scenarios::storm(
        target,
        pid,
        opts.tls,
        opts.storm_workers,
        opts.sessions,
        opts.storm_secs,
    ))
    .map_err(|e| format!("storm: {e}"))?;
    if s.errors > 0 {
        results.failures.push(format!(
            "{tag}: login storm: {} failed logins (first: {})",
            s.errors,
            s.first_error.clone().unwrap_or_default()
        ));
    }
    results.add("storm_cpu_ms", name, s.server_cpu_per_login_ms());
    results.add("storm_rate", name, Some(s.logins_per_s()));
    results.add("bench_cpu_storm", name, Some(s.window.bench_cpu_percent()));
    progress.say(&format!(
        "{tag} ·   {:.0} logins/s, {:.3} ms server CPU/login, generator {:.0}%",
        s.logins_per_s(),
        s.server_cpu_per_login_ms().unwrap_or(f64::NAN),
        s.window.bench_cpu_percent()
    ));

    progress.say(&format!(
        "{tag} · presence fan-out ({} contacts, {} changes)",
        opts.contacts, opts.changes
    ));
    let f = block(scenarios::fanout(
        target,
        pid,
        opts.tls,
        opts.contacts,
        opts.changes,
        opts.fanout_window,
    ))
    .map_err(|e| format!("fan-out: {e}"))?;
    results.add("fanout_cpu_us", name, f.server_cpu_per_delivery_us());
    results.add("fanout_rate", name, Some(f.deliveries_per_s()));
    results.add("bench_cpu_fanout", name, Some(f.window.bench_cpu_percent()));
    progress.say(&format!(
        "{tag} ·   {:.0} deliveries/s, {:.2} µs server CPU/delivery, generator {:.0}%",
        f.deliveries_per_s(),
        f.server_cpu_per_delivery_us().unwrap_or(f64::NAN),
        f.window.bench_cpu_percent()
    ));
    Ok(())
}

/// The archive scenario on a server of its own (started after its archive was emptied, so
/// every repetition writes into the same empty archive), untimed start, `settle` for its
/// start-up writes to pass. Twice: untraced for the bytes and the CPU, then with the sync
/// tracer attached for the sync calls (a tracer adds to the server's CPU: perf 10–20% here,
/// strace more).
fn run_archive(
    opts: &SuiteOptions,
    spec: &ServerSpec,
    tag: &str,
    progress: &Progress,
    results: &mut Results,
) -> Result<(), String> {
    let target = spec.target(opts.mechanism).map_err(|e| e.to_string())?;
    let name = spec.name.as_str();
    progress.say(&format!(
        "{tag} · start + archive ({} msg/s for {:?}, plain; then again counting sync calls with {})",
        opts.archive_rate,
        opts.archive_secs,
        opts.sync_tracer.map_or("nothing", |t| t.name())
    ));
    let running = Running::start(spec)?;
    let untraced = StorageProbe {
        pid: Some(running.pid),
        data_dir: spec.data.clone(),
        tracer: None,
    };
    let traced = StorageProbe {
        tracer: opts.sync_tracer,
        ..untraced.clone()
    };
    let outcome = block(async {
        scenarios::first_login(&target, opts.tls, running.started, Duration::from_secs(90)).await?;
        smol::Timer::after(opts.settle).await;
        let (rate, secs) = (opts.archive_rate, opts.archive_secs);
        let bytes = scenarios::archive(&target, &untraced, Transport::Plain, rate, secs).await?;
        let syncs = match traced.tracer {
            Some(_) => {
                Some(scenarios::archive(&target, &traced, Transport::Plain, rate, secs).await?)
            }
            None => None,
        };
        Ok::<_, BenchError>((bytes, syncs))
    });
    running.stop();
    let (a, s) = outcome.map_err(|e| e.to_string())?;
    for r in std::iter::once(&a).chain(&s) {
        if r.errors > 0 {
            results.failures.push(format!(
                "{tag}: archive: {} of {} messages bounced or not delivered",
                r.errors, r.sent
            ));
        }
    }
    results.add("archive_write_bytes", name, a.write_bytes_per_msg());
    results.add("archive_growth_bytes", name, a.growth_per_msg());
    results.add("archive_cpu_us", name, a.server_cpu_per_msg_us());
    results.add(
        "archive_syncs_per_s",
        name,
        s.as_ref().and_then(|s| s.syncs_per_s()),
    );
    progress.say(&format!(
        "{tag} ·   {}/{} delivered, {:.0} B written/msg, data dir {:+.0} B/msg, {:.1} µs server CPU/msg; {:.1} sync calls/s ({})",
        a.delivered,
        a.sent,
        a.write_bytes_per_msg().unwrap_or(f64::NAN),
        a.growth_per_msg().unwrap_or(f64::NAN),
        a.server_cpu_per_msg_us().unwrap_or(f64::NAN),
        s.as_ref()
            .and_then(|s| s.syncs_per_s())
            .unwrap_or(f64::NAN),
        s.as_ref()
            .and_then(|s| s.storage.syncs.as_ref())
            .map_or("not counted".into(), |c| c.describe()),
    ));
    Ok(())
}
