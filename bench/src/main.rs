//! xmppd-bench: a load generator that speaks standard XMPP to any server, and the
//! side-by-side suite that runs it against xmppd, Prosody and ejabberd.
//!
//! - `xmppd-bench suite --work DIR` runs every scenario against the servers prepared by
//!   `bench/peers.sh prepare DIR` and writes BENCHMARKS.md and its chart.
//! - `xmppd-bench run --scenario NAME ...` runs one scenario against any server.

mod chart;
mod client;
mod procfs;
mod report;
mod results;
mod scenarios;
mod scram;
mod storage;
mod suite;
mod tls;
mod xml;

use argh::FromArgs;
use client::{Mechanism, Target, Transport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(FromArgs)]
/// XMPP load generator and side-by-side benchmark.
struct Cli {
    #[argh(subcommand)]
    command: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    Suite(SuiteArgs),
    Run(RunArgs),
}

#[derive(FromArgs)]
/// Run every scenario against every server, interleaved, and write the report.
#[argh(subcommand, name = "suite")]
struct SuiteArgs {
    /// work directory prepared by `bench/peers.sh prepare`
    #[argh(option)]
    work: PathBuf,
    /// servers, comma-separated, in run order (default xmppd,prosody,ejabberd)
    #[argh(option, default = "String::from(\"xmppd,prosody,ejabberd\")")]
    servers: String,
    /// repetitions (default 3)
    #[argh(option, default = "3")]
    reps: usize,
    /// idle sessions N (default 200)
    #[argh(option, default = "200")]
    sessions: usize,
    /// throughput pairs P (default 10)
    #[argh(option, default = "10")]
    pairs: usize,
    /// messages in flight per pair (default 16)
    #[argh(option, default = "16")]
    window: usize,
    /// throughput warm-up in ms (default 1000)
    #[argh(option, default = "1000")]
    warmup_ms: u64,
    /// measured throughput seconds (default 6)
    #[argh(option, default = "6")]
    duration: u64,
    /// unloaded-latency seconds (default 3)
    #[argh(option, default = "3")]
    latency_secs: u64,
    /// login-storm workers K (default 8)
    #[argh(option, default = "8")]
    storm_workers: usize,
    /// login-storm seconds T (default 6)
    #[argh(option, default = "6")]
    storm_secs: u64,
    /// fan-out contacts (default 200)
    #[argh(option, default = "200")]
    contacts: usize,
    /// fan-out presence changes R (default 100)
    #[argh(option, default = "100")]
    changes: usize,
    /// fan-out changes in flight (default 2)
    #[argh(option, default = "2")]
    fanout_window: usize,
    /// archive scenario: chat messages per second (default 100)
    #[argh(option, default = "100")]
    archive_rate: u32,
    /// archive scenario: seconds of paced sending (default 10)
    #[argh(option, default = "10")]
    archive_secs: u64,
    /// what counts the sync calls in the archive scenario: perf (default), strace or none
    #[argh(option, default = "String::from(\"perf\")")]
    sync_tracer: String,
    /// ms to let a server settle before reading its RSS (default 2000)
    #[argh(option, default = "2000")]
    settle_ms: u64,
    /// SASL mechanism: SCRAM-SHA-1 (default) or PLAIN
    #[argh(option, default = "String::from(\"SCRAM-SHA-1\")")]
    mechanism: String,
    /// TLS flavour for the TLS scenarios: starttls (default) or direct
    #[argh(option, default = "String::from(\"starttls\")")]
    tls: String,
    /// generator threads (default 1: the other core stays for the server)
    #[argh(option, default = "1")]
    threads: usize,
    /// report to write (default BENCHMARKS.md)
    #[argh(option, default = "PathBuf::from(\"BENCHMARKS.md\")")]
    out: PathBuf,
    /// chart to write (default bench/benchmarks.svg)
    #[argh(option, default = "PathBuf::from(\"bench/benchmarks.svg\")")]
    chart: PathBuf,
    /// markdown included verbatim as the profile section (default bench/PROFILE.md, if present)
    #[argh(option, default = "PathBuf::from(\"bench/PROFILE.md\")")]
    profile: PathBuf,
    /// the command shown in the report (default: this process's arguments)
    #[argh(option)]
    command: Option<String>,
}

#[derive(FromArgs)]
/// Run one scenario against any XMPP server and print the result.
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// idle, throughput, latency, storm, fanout, setup-fanout, archive or login
    #[argh(option)]
    scenario: String,
    /// throughput/latency: let the server archive the messages (by default each carries
    /// XEP-0334 no-permanent-store, so the run measures routing alone)
    #[argh(switch)]
    archived: bool,
    /// read host, ports, domain, users and password from WORK/NAME/server.env
    #[argh(option)]
    spec: Option<PathBuf>,
    /// server host (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// client port for plain and STARTTLS (default 5222)
    #[argh(option, default = "5222")]
    port: u16,
    /// direct TLS port (default 5223)
    #[argh(option, default = "5223")]
    tls_port: u16,
    /// XMPP domain (default localhost)
    #[argh(option, default = "String::from(\"localhost\")")]
    domain: String,
    /// account name prefix: accounts are PREFIX0, PREFIX1, ... (default bench)
    #[argh(option, default = "String::from(\"bench\")")]
    prefix: String,
    /// password of every account (default bench-password)
    #[argh(option, default = "String::from(\"bench-password\")")]
    password: String,
    /// SCRAM-SHA-1 (default) or PLAIN
    #[argh(option, default = "String::from(\"SCRAM-SHA-1\")")]
    mechanism: String,
    /// plain, starttls (default) or direct
    #[argh(option, default = "String::from(\"starttls\")")]
    transport: String,
    /// server PID, for RSS and CPU figures
    #[argh(option)]
    pid: Option<u32>,
    /// sessions / contacts / workers count (default 200 for idle and fanout, 8 for storm)
    #[argh(option)]
    n: Option<usize>,
    /// throughput pairs (default 10)
    #[argh(option, default = "10")]
    pairs: usize,
    /// messages in flight per pair (default 16)
    #[argh(option, default = "16")]
    window: usize,
    /// seconds to run throughput/latency/storm (default 6)
    #[argh(option, default = "6")]
    secs: u64,
    /// fan-out presence changes (default 50)
    #[argh(option, default = "50")]
    changes: usize,
    /// archive: chat messages per second (default 100)
    #[argh(option, default = "100")]
    archive_rate: u32,
    /// archive: seconds of paced sending (default 10)
    #[argh(option, default = "10")]
    archive_secs: u64,
    /// archive: the server's data directory, whose growth is measured (default: `data` in
    /// --spec's server.env)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// archive: what counts the sync calls, perf (default), strace or none
    #[argh(option, default = "String::from(\"perf\")")]
    sync_tracer: String,
    /// generator threads (default 1)
    #[argh(option, default = "1")]
    threads: usize,
}

fn start_helper_threads(threads: usize) {
    for _ in 1..threads.max(1) {
        std::thread::spawn(|| {
            smol::block_on(scenarios::executor().run(smol::future::pending::<()>()))
        });
    }
}

/// "none" turns the count off (the server runs untraced).
fn parse_tracer(s: &str) -> Result<Option<storage::Tracer>, String> {
    if s == "none" {
        return Ok(None);
    }
    storage::Tracer::parse(s)
        .map(Some)
        .ok_or(format!("unknown sync tracer {s} (perf, strace or none)"))
}

fn parse_common(mechanism: &str, tls: &str) -> Result<(Mechanism, Transport), String> {
    let m = Mechanism::parse(mechanism).ok_or(format!("unknown mechanism {mechanism}"))?;
    let t = Transport::parse(tls).ok_or(format!("unknown transport {tls}"))?;
    Ok((m, t))
}

/// `chart` as seen from the directory of `report` (for the image link).
fn relative_to_report(chart: &Path, report: &Path) -> PathBuf {
    let base = report.parent().filter(|p| !p.as_os_str().is_empty());
    match base.and_then(|b| chart.strip_prefix(b).ok()) {
        Some(rel) => rel.to_path_buf(),
        None => chart.to_path_buf(),
    }
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn suite_main(a: SuiteArgs) -> Result<(), String> {
    let (mechanism, tls) = parse_common(&a.mechanism, &a.tls)?;
    if tls == Transport::Plain {
        return Err("--tls must be starttls or direct".into());
    }
    start_helper_threads(a.threads);
    let opts = suite::SuiteOptions {
        work: a.work,
        servers: a
            .servers
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        reps: a.reps.max(1),
        sessions: a.sessions,
        pairs: a.pairs.max(1),
        window: a.window.max(1),
        warmup: Duration::from_millis(a.warmup_ms),
        duration: Duration::from_secs(a.duration.max(1)),
        latency_secs: Duration::from_secs(a.latency_secs.max(1)),
        storm_workers: a.storm_workers.max(1),
        storm_secs: Duration::from_secs(a.storm_secs.max(1)),
        contacts: a.contacts.max(1),
        changes: a.changes.max(1),
        fanout_window: a.fanout_window.max(1),
        archive_rate: a.archive_rate.max(1),
        archive_secs: Duration::from_secs(a.archive_secs.max(1)),
        sync_tracer: parse_tracer(&a.sync_tracer)?,
        settle: Duration::from_millis(a.settle_ms),
        mechanism,
        tls,
    };
    let command = a
        .command
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let load_before = report::load_average();
    let mut results = results::Results::default();
    let mut info = suite::RunInfo::default();
    suite::run_suite(&opts, &mut results, &mut info)?;
    let chart_ok = match chart::write_chart(&a.chart, &results, &opts.servers, opts.archive_rate) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("chart: {e}");
            false
        }
    };
    let chart_link = relative_to_report(&a.chart, &a.out);
    let input = report::ReportInput {
        opts: &opts,
        results: &results,
        info: &info,
        command,
        machine: report::machine_description(),
        load_before,
        chart: chart_ok.then_some(chart_link.as_path()),
        profile: std::fs::read_to_string(&a.profile).ok(),
        date: today(),
    };
    std::fs::write(&a.out, report::write_report(&input))
        .map_err(|e| format!("{}: {e}", a.out.display()))?;
    eprintln!("wrote {} and {}", a.out.display(), a.chart.display());
    Ok(())
}

fn run_main(a: RunArgs) -> Result<(), String> {
    let (mechanism, transport) = parse_common(&a.mechanism, &a.transport)?;
    start_helper_threads(a.threads);
    let spec = match &a.spec {
        Some(dir) => {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let work = dir.parent().unwrap_or(Path::new("."));
            Some(suite::ServerSpec::load(work, &name)?)
        }
        None => None,
    };
    let target = match &spec {
        Some(spec) => spec.target(mechanism),
        None => Target::new(
            a.host, a.port, a.tls_port, a.domain, a.prefix, a.password, mechanism,
        ),
    }
    .map_err(|e| e.to_string())?;
    let data_dir = a.data_dir.or(spec.and_then(|s| s.data));
    let pid = a.pid;
    let secs = Duration::from_secs(a.secs.max(1));
    let e = |e: client::BenchError| e.to_string();
    match a.scenario.as_str() {
        "login" => {
            let t = std::time::Instant::now();
            let d = suite::block(scenarios::first_login(
                &target,
                transport,
                t,
                Duration::from_secs(10),
            ))
            .map_err(e)?;
            println!(
                "logged in ({}) in {:.2} ms",
                transport.name(),
                d.as_secs_f64() * 1e3
            );
        }
        "idle" => {
            let n = a.n.unwrap_or(200);
            let r = suite::block(scenarios::idle(
                &target,
                pid,
                transport,
                n,
                Duration::from_secs(1),
            ))
            .map_err(e)?;
            println!(
                "{n} sessions ({}): {:.0} logins/s, RSS {:?} → {:?} KiB, {:.2} KiB/session, generator {:.0}%",
                transport.name(),
                r.logins_per_s,
                r.rss_before_kib,
                r.rss_after_kib,
                r.kib_per_session().unwrap_or(f64::NAN),
                r.window.bench_cpu_percent()
            );
        }
        "throughput" | "latency" => {
            let (pairs, window) = if a.scenario == "latency" {
                (1, 1)
            } else {
                (a.pairs, a.window)
            };
            let r = suite::block(scenarios::throughput(
                &target,
                pid,
                scenarios::Load {
                    transport,
                    pairs,
                    window,
                    warmup: Duration::from_millis(500),
                    duration: secs,
                    archived: a.archived,
                },
            ))
            .map_err(e)?;
            println!(
                "{} delivered ({}), {:.0} msg/s, p50 {:.1} µs, p99 {:.1} µs, server CPU {:.2} µs/msg, errors {}, generator {:.0}%",
                r.delivered,
                transport.name(),
                r.msgs_per_s,
                r.p50_us,
                r.p99_us,
                r.server_cpu_per_msg_us().unwrap_or(f64::NAN),
                r.errors,
                r.window.bench_cpu_percent()
            );
        }
        "storm" => {
            let k = a.n.unwrap_or(8);
            let r =
                suite::block(scenarios::storm(&target, pid, transport, k, 200, secs)).map_err(e)?;
            println!(
                "{} logins ({}), {:.0}/s, server CPU {:.3} ms/login, errors {} {:?}, generator {:.0}%",
                r.logins,
                transport.name(),
                r.logins_per_s(),
                r.server_cpu_per_login_ms().unwrap_or(f64::NAN),
                r.errors,
                r.first_error,
                r.window.bench_cpu_percent()
            );
        }
        "setup-fanout" => {
            let n = a.n.unwrap_or(200);
            let created = suite::block(scenarios::ensure_subscriptions(&target, n)).map_err(e)?;
            println!("{created} subscriptions created; {n} contacts subscribed to the hub");
        }
        "fanout" => {
            let n = a.n.unwrap_or(200);
            let r = suite::block(scenarios::fanout(&target, pid, transport, n, a.changes, 2))
                .map_err(e)?;
            println!(
                "{} contacts × {} changes: {} deliveries ({}), {:.0}/s, server CPU {:.2} µs/delivery, generator {:.0}%",
                r.contacts,
                r.changes,
                r.deliveries,
                transport.name(),
                r.deliveries_per_s(),
                r.server_cpu_per_delivery_us().unwrap_or(f64::NAN),
                r.window.bench_cpu_percent()
            );
        }
        "archive" => {
            let probe = storage::StorageProbe {
                pid,
                data_dir,
                tracer: parse_tracer(&a.sync_tracer)?,
            };
            let r = suite::block(scenarios::archive(
                &target,
                &probe,
                transport,
                a.archive_rate,
                Duration::from_secs(a.archive_secs.max(1)),
            ))
            .map_err(e)?;
            print_archive(&r, transport, &probe);
            if r.errors > 0 {
                return Err(format!(
                    "{} of {} messages bounced or not delivered",
                    r.errors, r.sent
                ));
            }
        }
        other => return Err(format!("unknown scenario {other}")),
    }
    Ok(())
}

fn print_archive(
    r: &scenarios::ArchiveResult,
    transport: Transport,
    probe: &storage::StorageProbe,
) {
    let per_msg = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    println!(
        "{} of {} messages delivered ({}, {}/s for {:.1} s, each archived for sender and recipient), errors {}",
        r.delivered,
        r.sent,
        transport.name(),
        r.rate,
        r.paced.as_secs_f64(),
        r.errors
    );
    if let Some(io) = r.storage.io {
        println!(
            "write_bytes (to the block layer): {} = {} B/message; cancelled_write_bytes {}; \
             wchar (write-family calls on any file) {}",
            io.write_bytes,
            per_msg(r.write_bytes_per_msg()),
            io.cancelled_write_bytes,
            io.wchar
        );
        if io.write_bytes == 0 && r.storage.data_growth.is_some_and(|g| g > 0) {
            println!(
                "  write_bytes is 0 while the data grew: a file system without block I/O (tmpfs)?"
            );
        }
    }
    match (&probe.data_dir, r.storage.data_growth) {
        (Some(d), Some(g)) => println!(
            "data directory {}: {g:+} B = {} B/message",
            d.display(),
            per_msg(r.growth_per_msg())
        ),
        (Some(d), None) => println!("data directory {}: not readable", d.display()),
        (None, _) => println!("data directory: unknown (--data-dir or --spec)"),
    }
    if let Some(s) = &r.storage.syncs {
        println!(
            "sync calls ({}): {} = {:.1}/s over the {:.1} s of sending, {:.3}/message ({})",
            probe.tracer.map_or("", |t| t.name()),
            s.total(),
            r.syncs_per_s().unwrap_or(f64::NAN),
            r.paced.as_secs_f64(),
            s.total() as f64 / r.delivered.max(1) as f64,
            s.describe()
        );
    }
    let traced = match probe.tracer {
        Some(t) if probe.pid.is_some() => {
            format!(
                " with {} attached (--sync-tracer none for the server alone)",
                t.name()
            )
        }
        _ => String::new(),
    };
    println!(
        "server CPU {:.1} µs/message{traced}; window {:.2} s (sending, deliveries, {:.1} s tail); generator {:.0}%",
        r.server_cpu_per_msg_us().unwrap_or(f64::NAN),
        r.window.wall.as_secs_f64(),
        scenarios::ARCHIVE_TAIL.as_secs_f64(),
        r.window.bench_cpu_percent()
    );
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    let outcome = match cli.command {
        Sub::Suite(a) => suite_main(a),
        Sub::Run(a) => run_main(a),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmppd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
