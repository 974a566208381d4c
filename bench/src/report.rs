//! Writes BENCHMARKS.md: machine, versions, configuration, every metric as median and
//! min–max per server with the xmppd/peer ratio, the xmppd targets, the chart and the raw
//! samples.

use crate::results::{Better, METRICS, Results, Stats, metric};
use crate::suite::{RunInfo, SuiteOptions};
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One line per fact about the machine the run happened on.
pub fn machine_description() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let debian = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    let hypervisor = command_output("lscpu", &[]).and_then(|o| {
        o.lines().find_map(|l| {
            l.strip_prefix("Hypervisor vendor:")
                .map(|v| format!("{} guest", v.trim()))
        })
    });
    let container = command_output("systemd-detect-virt", &["--container"]).filter(|c| c != "none");
    let virt = match (hypervisor, container) {
        (Some(h), Some(c)) => Some(format!("{h}, in a {c} container")),
        (h, c) => h.or(c.map(|c| format!("{c} container"))),
    };
    let mut lines = vec![
        format!("CPU: {model}, {cpus} logical CPUs"),
        format!("memory: {mem_gib:.1} GiB"),
        format!("kernel: Linux {}, Debian {}", kernel.trim(), debian.trim()),
    ];
    if let Some(v) = virt {
        lines.push(format!("virtualisation: {v}"));
    }
    lines
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn versions() -> Vec<String> {
    let dpkg = |p: &str| command_output("dpkg-query", &["-W", "-f=${Version}", p]);
    let mut v = Vec::new();
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".into());
    // The report and chart of an earlier run are this run's outputs, not changes to what ran.
    let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| {
            s.lines()
                .any(|l| !l.ends_with("BENCHMARKS.md") && !l.ends_with("benchmarks.svg"))
        });
    v.push(format!(
        "xmppd {} (commit {commit}{}), release profile (opt-level \"z\", fat LTO)",
        env!("CARGO_PKG_VERSION"),
        if dirty {
            ", with uncommitted changes"
        } else {
            ""
        }
    ));
    if let Some(p) = dpkg("prosody") {
        v.push(format!(
            "Prosody {p} (Debian package), Lua {}",
            dpkg("lua5.4").unwrap_or_else(|| "?".into())
        ));
    }
    if let Some(e) = dpkg("ejabberd") {
        v.push(format!(
            "ejabberd {e} (Debian package), Erlang/OTP {}, SQLite {} through erlang-p1-sqlite3 {} \
             (its message archive)",
            dpkg("erlang-base").unwrap_or_else(|| "?".into()),
            dpkg("libsqlite3-0").unwrap_or_else(|| "?".into()),
            dpkg("erlang-p1-sqlite3").unwrap_or_else(|| "?".into())
        ));
    }
    if let Some(o) = command_output("openssl", &["version"]) {
        v.push(format!(
            "{o} (TLS in Prosody via LuaSec and in ejabberd via fast_tls)"
        ));
    }
    if let Some(r) = command_output("rustc", &["--version"]) {
        v.push(format!(
            "{r}; xmppd and the generator use rustls 0.23 with the ring provider"
        ));
    }
    v
}

fn fmt_num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let decimals = if v.abs() >= 1000.0 { 0 } else { decimals };
    format!("{v:.decimals$}")
}

fn fmt_stats(s: &Stats, decimals: usize) -> String {
    format!(
        "**{}** ({}–{})",
        fmt_num(s.median, decimals),
        fmt_num(s.min, decimals),
        fmt_num(s.max, decimals)
    )
}

/// xmppd/peer on the medians, with which way is better.
fn fmt_ratio(ours: &Stats, peer: &Stats, better: Better) -> String {
    let both_zero = ours.median == 0.0 && peer.median == 0.0;
    if !peer.median.is_finite() || !ours.median.is_finite() || both_zero {
        return "–".into();
    }
    if peer.median == 0.0 {
        // e.g. sync calls per second against a server that never syncs.
        let worse = (better == Better::Lower) == (ours.median > 0.0);
        return format!("∞ ({})", if worse { "worse" } else { "better" });
    }
    let r = ours.median / peer.median;
    let verdict = match better {
        Better::Lower if r == 0.0 => " (better)".into(),
        Better::Lower if r > 0.0 && r < 1.0 => format!(" ({:.1}× better)", 1.0 / r),
        Better::Higher if r > 1.0 => format!(" ({r:.1}× better)"),
        _ if (r - 1.0).abs() < 0.05 => String::new(),
        _ => " (worse)".into(),
    };
    let digits = if r < 0.1 { 3 } else { 2 };
    format!("{r:.digits$}{verdict}")
}

struct Target {
    text: &'static str,
    key: &'static str,
    limit: f64,
    /// Also compare against a peer: (peer, factor) means peer/xmppd ≥ factor.
    vs: Option<(&'static str, f64)>,
}

const TARGETS: &[Target] = &[
    Target {
        text: "idle RSS ≤ 2 MB",
        key: "idle_rss_mib",
        limit: 2.0,
        vs: None,
    },
    Target {
        text: "memory per idle TLS session ≤ 10 KB",
        key: "idle_tls_kib",
        limit: 10.0,
        vs: None,
    },
    Target {
        text: "… and ≥ 5× better than Prosody",
        key: "idle_tls_kib",
        limit: f64::INFINITY,
        vs: Some(("prosody", 5.0)),
    },
    Target {
        text: "memory per plain session ≤ 4 KB",
        key: "idle_plain_kib",
        limit: 4.0,
        vs: None,
    },
    Target {
        text: "server CPU per routed message ≤ 10 µs (plain)",
        key: "tput_plain_cpu_us",
        limit: 10.0,
        vs: None,
    },
    Target {
        text: "server CPU per routed message ≤ 10 µs (STARTTLS)",
        key: "tput_tls_cpu_us",
        limit: 10.0,
        vs: None,
    },
    Target {
        text: "… ≥ 5× better than ejabberd (plain)",
        key: "tput_plain_cpu_us",
        limit: f64::INFINITY,
        vs: Some(("ejabberd", 5.0)),
    },
    Target {
        text: "… ≥ 10× better than Prosody (plain)",
        key: "tput_plain_cpu_us",
        limit: f64::INFINITY,
        vs: Some(("prosody", 10.0)),
    },
    Target {
        text: "server CPU per SCRAM login over TLS ≤ 0.3 ms",
        key: "storm_cpu_ms",
        limit: 0.3,
        vs: None,
    },
    Target {
        text: "unloaded latency p99 < 1 ms",
        key: "lat_p99_us",
        limit: 1000.0,
        vs: None,
    },
    Target {
        text: "cold start to first login < 50 ms",
        key: "cold_start_ms",
        limit: 50.0,
        vs: None,
    },
];

fn targets_table(out: &mut String, results: &Results) {
    out.push_str("| target | xmppd (median) | met? |\n|---|---|---|\n");
    for t in TARGETS {
        let Some(m) = metric(t.key) else { continue };
        let Some(ours) = results.stats(t.key, "xmppd") else {
            let _ = writeln!(out, "| {} | not measured | – |", t.text);
            continue;
        };
        let (value, met) = match t.vs {
            None => {
                let met = ours.median <= t.limit;
                let verdict = if met {
                    "met".to_string()
                } else {
                    format!("**missed** by {:.1}×", ours.median / t.limit)
                };
                (
                    format!("{} {}", fmt_num(ours.median, m.decimals), m.unit),
                    verdict,
                )
            }
            Some((peer, factor)) => match results.stats(t.key, peer) {
                Some(p) if ours.median > 0.0 => {
                    let x = p.median / ours.median;
                    let verdict = if x >= factor {
                        "met".to_string()
                    } else {
                        format!("**missed**: {x:.1}× of {factor}×")
                    };
                    (format!("{x:.1}× better than {peer}"), verdict)
                }
                _ => (format!("{peer} not measured"), "–".to_string()),
            },
        };
        let _ = writeln!(out, "| {} | {value} | {met} |", t.text);
    }
    out.push_str(
        "| no heap allocation per routed stanza | not measured by this tool (a counting-allocator test in the server's test suite) | – |\n",
    );
}

pub struct ReportInput<'a> {
    pub opts: &'a SuiteOptions,
    pub results: &'a Results,
    pub info: &'a RunInfo,
    pub command: String,
    pub machine: Vec<String>,
    pub load_before: String,
    pub chart: Option<&'a Path>,
    pub profile: Option<String>,
    pub date: String,
}

pub fn write_report(input: &ReportInput) -> String {
    let ReportInput {
        opts,
        results,
        info,
        ..
    } = input;
    let servers = &opts.servers;
    let peers: Vec<&String> = servers.iter().filter(|s| s.as_str() != "xmppd").collect();
    let mut out = String::new();
    out.push_str("# Benchmarks: xmppd, Prosody and ejabberd side by side\n\n");
    out.push_str(
        "Generated by `xmppd-bench suite` (the bench/ crate). Absolute numbers belong to this \
         machine; compare the ratios and the CPU-per-unit figures. Each figure is the **median** \
         with the min–max over the repetitions; servers ran one after another, interleaved \
         (A B C A B C …), never at the same time.\n\n",
    );
    let _ = writeln!(
        out,
        "Run on {}; {} repetitions; the whole run took {:.1} min.\n",
        input.date,
        opts.reps,
        info.wall.as_secs_f64() / 60.0
    );
    out.push_str("## How to rerun\n\n```sh\nbench/run.sh            # build, install peers, prepare, run all, write BENCHMARKS.md\n```\n\n");
    let _ = writeln!(
        out,
        "The exact command of this run (from bench/run.sh):\n\n```sh\n{}\n```\n",
        input.command
    );

    out.push_str("## Machine\n\n");
    for l in &input.machine {
        let _ = writeln!(out, "- {l}");
    }
    let _ = writeln!(out, "- load average before the run: {}", input.load_before);
    if let Some(load) = Stats::of(&info.load_samples) {
        let _ = writeln!(
            out,
            "- 1-minute load average sampled before each server's turn: median {:.2}, {:.2}–{:.2} \
             (the benchmark itself adds about 1; more means other work shared the machine, which \
             slows rates and latencies but hardly the CPU-per-unit figures)",
            load.median, load.min, load.max
        );
    }
    out.push_str("- the generator and the server share the machine's cores\n\n");
    out.push_str("## Versions\n\n");
    for v in versions() {
        let _ = writeln!(out, "- {v}");
    }
    out.push('\n');
    config_section(&mut out, input);

    out.push_str("## Results\n\n");
    if let Some(chart) = input.chart {
        let _ = writeln!(
            out,
            "![memory per session and CPU per unit of work]({})\n",
            chart.display()
        );
    }
    let _ = write!(out, "| metric | unit |");
    for s in servers {
        let _ = write!(out, " {s} |");
    }
    for p in &peers {
        let _ = write!(out, " xmppd/{p} |");
    }
    out.push_str("\n|---|---|");
    for _ in servers.iter().chain(peers.iter().copied()) {
        out.push_str("---|");
    }
    out.push('\n');
    for m in METRICS {
        let _ = write!(out, "| {} | {} |", m.label_at(opts.archive_rate), m.unit);
        for s in servers {
            match results.stats(m.key, s) {
                Some(st) => {
                    let _ = write!(out, " {} |", fmt_stats(&st, m.decimals));
                }
                None => out.push_str(" – |"),
            }
        }
        for p in &peers {
            match (results.stats(m.key, "xmppd"), results.stats(m.key, p)) {
                (Some(a), Some(b)) if !m.key.starts_with("bench_cpu") => {
                    let _ = write!(out, " {} |", fmt_ratio(&a, &b, m.better));
                }
                _ => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out.push_str(
        "\nRatios are xmppd ÷ peer on the medians: below 1 is better for memory, CPU and latency, \
         above 1 for rates. The generator rows show how busy the load generator itself was \
         (100% = one core): rates are only comparable when it was not saturated; the \
         CPU-per-unit figures hold either way. Each server's throughput runs follow, on the \
         same process, the idle sessions that came and went before them; that history costs \
         the peers: Prosody's CPU per message was 96 µs on a fresh process and 140 µs after 200 \
         sessions had come and gone, in a separate check on this machine (2026-11-24, \
         `xmppd-bench run` by hand), and it varies more between repetitions than the others'.\n\n",
    );
    if !results.failures.is_empty() {
        out.push_str("### Problems seen during the run\n\n");
        for f in &results.failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }

    out.push_str("## xmppd targets (issue 5)\n\n");
    targets_table(&mut out, results);
    out.push_str("\nKB and MB are read as KiB and MiB.\n\n");

    if let Some(profile) = &input.profile {
        out.push_str(profile.trim_end());
        out.push_str("\n\n");
    }

    out.push_str("## Raw samples\n\nIn the order taken (idle RSS and cold start: two per repetition, one per server start).\n\n");
    out.push_str("| metric | server | samples |\n|---|---|---|\n");
    for m in METRICS {
        for s in servers {
            if let Some(v) = results.get(m.key, s) {
                let list: Vec<String> = v.iter().map(|x| fmt_num(*x, m.decimals)).collect();
                let _ = writeln!(out, "| {} | {s} | {} |", m.key, list.join(", "));
            }
        }
    }
    out
}

fn config_section(out: &mut String, input: &ReportInput) {
    let o = input.opts;
    out.push_str("## What was run\n\n");
    let _ = writeln!(
        out,
        "All three servers on 127.0.0.1, domain `localhost`, each started from `bench/peers.sh`'s \
         work directory (state in a temporary directory, never the system's configuration), with the \
         same ECDSA P-256 certificate, accounts `bench0`…`bench{}` whose SCRAM-SHA-1 keys were \
         derived with 4096 PBKDF2 iterations (Prosody's default of 10000 lowered to match), SASL \
         **{}** for every login. TLS 1.3 with the generator's rustls client: TLS_AES_256_GCM_SHA384 \
         (its first choice, as in OpenSSL's default list; all three servers follow the client's \
         order), X25519, no session resumption (every login pays a full handshake). Logging at \
         warning level.\n",
        o.sessions.max(o.contacts),
        o.mechanism.name()
    );
    modules_on(out);
    if !input.info.process_names.is_empty() {
        let names: Vec<String> = input
            .info
            .process_names
            .iter()
            .map(|(s, n)| format!("{s} → `{n}`"))
            .collect();
        let _ = writeln!(out, "Process measured (RSS, CPU): {}.\n", names.join(", "));
    }
    let _ = writeln!(
        out,
        "Scenarios (per repetition and server; the server is started twice, so that the idle \
         memory of plain and TLS sessions is each measured on a fresh process):\n\n\
         1. **cold start**: time from spawning the server to the first completed STARTTLS + \
         {mech} + bind login (the generator retries every 2 ms), then the idle RSS {settle:?} later.\n\
         2. **idle sessions**: {n} sessions (accounts 1…{n}, {c} logins in flight), each with \
         initial presence confirmed by a ping round trip; RSS before and {settle:?} after; \
         memory per session = ΔRSS ÷ {n}. Once over plain TCP, once over {tls}.\n\
         3. **throughput**: {p} sender→receiver pairs, at most {w} messages in flight per pair, \
         `<message type='chat'>` to the receiver's full JID with the send time in the body; \
         {wu:?} warm-up, then {d:?} measured: delivered/s, one-way latency p50/p99 (same clock at \
         both ends), server CPU ÷ delivered. Each message carries XEP-0334 \
         `<no-permanent-store/>`, which all three servers honour by not archiving it (checked: \
         their data directories do not grow), so these runs measure routing; once plain, once \
         {tls}. Then once more over plain TCP without the hint (**archived**): every message is \
         also archived for both parties, as a chat app's messages are.\n\
         4. **unloaded latency**: the same with 1 pair and window 1 for {ls:?} ({tls}, with the \
         hint).\n\
         5. **login storm**: {k} workers looping connect + {tls} + {mech} + bind + \
         `</stream:stream>` (waiting for the server's close) for {ss:?}; server CPU ÷ logins. \
         The generator caches each account's SCRAM keys (RFC 5802 allows it), so it does not \
         run PBKDF2 per login; servers never do at login either (they store the derived keys).\n\
         6. **presence fan-out**: account 0 (the hub) has {ct} contacts subscribed to its presence \
         (set up once through the protocol: each contact sends `subscribe`, the online hub \
         answers `subscribed`); all online over {tls}; the hub changes presence {r} times with \
         at most {fw} changes in flight; server CPU ÷ deliveries (the hub's own echo is not \
         counted as a delivery).\n\
         7. **archive writes** (issue 6), on a server started once more for it (its archive \
         emptied before the start), {settle:?} after its first login: account {asnd} sends \
         account {arcv} (both online, plain TCP) `<message type='chat'>` with a short body \
         (`archived message N: hello`), {ar} per second, each at its own due time, for {asecs:?} \
         ({amsgs} messages, each archived twice: for the sender and for the recipient); every \
         one must be delivered. Measured from just before the first message to {atail:?} after \
         the last delivery (so that delayed writes, such as xmppd's 100 ms group commit, \
         count), per message: **bytes written to storage** = `write_bytes` from \
         `/proc/PID/io`, the bytes the server caused to be sent to the block layer. The kernel \
         counts them when a clean page-cache page is dirtied, a whole 4 KiB page each time, \
         and charges them to the process then, although the write-back comes later (for a \
         server that never syncs, such as Prosody, up to ~30 s later, after the window): a few \
         bytes written and synced cost a page, appends to a page still dirty count once. The \
         file system's own journal and metadata writes are not included (the device writes \
         somewhat more). The work directory is on {fs}. **Data directory growth** = apparent \
         size of the files in the server's state directory (xmppd `data/`, Prosody `data/`, \
         ejabberd `spool/`: mnesia and the SQLite archive). **Sync calls per second** = calls \
         to fsync, fdatasync, sync_file_range, msync, syncfs and sync by any of the server's \
         threads, counted {tracer}, ÷ the {asecs:?} of sending, in a second run of the same \
         scenario right after the first (a tracer adds to the server's CPU time, so the bytes \
         and the CPU come from the first, untraced run). **Server CPU** ÷ messages: each \
         paced message wakes the server on its own, so this is more than the throughput \
         scenarios' CPU per message, where messages arrive back to back.\n\n\
         Server CPU = utime + stime of all its threads from `/proc/PID/stat` (10 ms ticks), \
         refined to nanoseconds with the threads' `/proc/PID/task/*/schedstat` when both agree \
         within the tick resolution; memory = VmRSS from `/proc/PID/status`; generator CPU from \
         getrusage. xmppd's limits bound N (`limits.max_connections` 256 in the bench's \
         config, its capacity; 8 resources per account): {n} idle sessions and {ct} + 1 \
         fan-out sessions fit within them.\n",
        mech = o.mechanism.name(),
        settle = o.settle,
        n = o.sessions,
        c = crate::scenarios::LOGIN_CONCURRENCY,
        tls = o.tls.name(),
        p = o.pairs,
        w = o.window,
        wu = o.warmup,
        d = o.duration,
        ls = o.latency_secs,
        k = o.storm_workers,
        ss = o.storm_secs,
        ct = o.contacts,
        r = o.changes,
        fw = o.fanout_window,
        asnd = crate::scenarios::ARCHIVE_SENDER,
        arcv = crate::scenarios::ARCHIVE_RECEIVER,
        ar = o.archive_rate,
        asecs = o.archive_secs,
        amsgs = u64::from(o.archive_rate) * o.archive_secs.as_secs(),
        atail = crate::scenarios::ARCHIVE_TAIL,
        fs = input
            .info
            .work_fs
            .as_deref()
            .unwrap_or("an unknown file system"),
        tracer = match o.sync_tracer {
            Some(crate::storage::Tracer::Perf) =>
                "by `perf stat -e syscalls:sys_enter_…` attached to the server's PID (counted \
                 in the kernel: every thread, those started later included, no stop per call)",
            Some(crate::storage::Tracer::Strace) =>
                "by `strace -f -c` attached to every thread of the server (it stops each thread \
                 at every system call)",
            None => "by nothing in this run (--sync-tracer none: no second run)",
        },
    );
}

/// What each server had on, and where each kept its message archive: the configurations
/// `bench/peers.sh prepare` writes (keep the two in step).
fn modules_on(out: &mut String) {
    out.push_str(
        "Features on, alike on all three: xmppd's defaults and the peers' modules for the same \
         things — roster with versioning, presence, disco, ping, version, offline storage \
         (XEP-0160), stream management (XEP-0198), message carbons (XEP-0280), client state \
         indication (XEP-0352), message archive (XEP-0313), PEP with entity caps \
         (XEP-0163/0060/0115), vCard with avatar conversion and the avatar hash added to presence \
         (XEP-0054/0398/0153), private XML storage (XEP-0049), bookmarks (XEP-0402 with the \
         XEP-0048 view), blocking (XEP-0191), STARTTLS, direct TLS, SASL. Off on all three: \
         in-band registration, s2s, HTTP, rate limits. The generator's clients enable neither \
         stream management, carbons nor CSI and never query the archive: on the measured paths \
         the features cost the archive writes (the archived throughput run and the archive \
         scenario), the avatar hash added to every available presence (fan-out, logins), \
         per-login work (PEP, caps, stored vCard and bookmarks) and memory per session.\n\n\
         - **xmppd**: everything it implements (README.md, \"Protocols\"), built in and on by \
         default; XEP-0077 registration off (its default). Config (`bench/peers.sh`): \
         `require_encryption = false`, `allow_plain_unencrypted = true`, `scram_iterations = \
         4096`, `[limits]` `max_connections = 256`, `max_connections_per_ip = 256`, \
         `max_accounts = 1000`, `inbound_bytes_per_sec` and `inbound_burst_bytes` 16 MiB (no \
         inbound rate limit); every other key at its default.\n\
         - **Prosody**: `roster saslauth tls disco ping version smacks carbons csi_simple mam pep \
         vcard_legacy private bookmarks blocklist`, plus the auto-loaded `presence message iq \
         offline c2s` and the dependencies `csi cron`; `s2s` disabled; **mod_limits not loaded** \
         (it would throttle each connection to ~3000 B/s); `default_archive_policy = true`, \
         `mam_smart_enable = false`, `smacks_hibernation_time = 600`, `network_backend = \
         \"epoll\"`, `c2s_require_encryption = false`, `storage = \"internal\"` (files).\n\
         - **ejabberd**: `mod_roster` (versioning) `mod_disco mod_ping mod_version mod_offline \
         mod_mam mod_carboncopy mod_stream_mgmt mod_client_state mod_caps mod_pubsub` (plugins \
         `flat`, `pep`; it also serves a `pubsub.localhost` service the benchmark never uses) \
         `mod_vcard` (no search) `mod_vcard_xupdate mod_avatar mod_private mod_blocking \
         mod_privacy` (mod_blocking needs it; xmppd has no XEP-0016 privacy lists); offline \
         store 100 messages per account, stream resumption 600 s (as xmppd); no mod_register, \
         HTTP/MQTT/STUN listeners; shapers off (`c2s_shaper: none`), `starttls_required: \
         false`, `auth_password_format: scram`, mnesia for everything but the archive; started \
         with ejabberdctl's VM flags (`+K true +P 250000`) under its own node name and epmd \
         port. The Erlang VM's schedulers spin briefly before sleeping (its defaults, left as \
         packaged); that spinning counts in ejabberd's CPU time.\n\n\
         **All three archive every chat message with a body, for the sender and for the \
         recipient**, without any client having asked (XEP-0313 default \"always\"), unless the \
         message carries a XEP-0334 no-store or no-permanent-store hint; an archived message \
         is also a storage write, which weighs on the CPU per message:\n\n\
         - **xmppd**: its own append-only segment files; a group commit writes what arrived \
         within 100 ms (`storage.flush_delay_ms`) with one write and one fdatasync; at most \
         10000 messages per account and 64 MiB in all (retention drops whole segment files; \
         the archived throughput run goes far past 10000 messages per account).\n\
         - **Prosody**: its internal file storage: each message appended to a per-account file \
         as a Lua-serialised record (open, append, close, no fsync); at most 10000 per account \
         (`storage_archive_item_limit`; not reached within one start in our runs).\n\
         - **ejabberd**: SQLite (`mod_mam` `db_type: sql`, `sql_type: sqlite`) with SQLite's \
         defaults as ejabberd leaves them: a rollback journal and several fdatasyncs per \
         transaction, through one connection. Not mnesia: its archive is a bag keyed by \
         account, so each message costs time proportional to the account's archive (here 460 \
         → 190 messages/s over three 6-second throughput runs), and ejabberd warns at start-up \
         that it is limited to 2 GB.\n\n\
         Every server's archive is emptied before each start (`WORK/NAME/reset.sh`, outside \
         the timed window), so that every repetition starts from the same state: a growing \
         archive changes the peers' cost per message (Prosody reads a whole per-account file at \
         the first message after a start and rewrites it every 100 messages once the account \
         holds 10000).\n\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(m: f64) -> Stats {
        Stats {
            median: m,
            min: m,
            max: m,
            n: 1,
        }
    }

    #[test]
    fn ratios_say_which_way_is_better() {
        assert_eq!(
            fmt_ratio(&st(1.0), &st(10.0), Better::Lower),
            "0.10 (10.0× better)"
        );
        assert_eq!(
            fmt_ratio(&st(20.0), &st(10.0), Better::Higher),
            "2.00 (2.0× better)"
        );
        assert_eq!(
            fmt_ratio(&st(20.0), &st(10.0), Better::Lower),
            "2.00 (worse)"
        );
        assert_eq!(fmt_ratio(&st(1.0), &st(0.0), Better::Lower), "∞ (worse)");
        assert_eq!(fmt_ratio(&st(1.0), &st(0.0), Better::Higher), "∞ (better)");
        assert_eq!(fmt_ratio(&st(0.0), &st(0.0), Better::Lower), "–");
        assert_eq!(
            fmt_ratio(&st(0.0), &st(4.0), Better::Lower),
            "0.000 (better)"
        );
        assert_eq!(fmt_ratio(&st(3.0), &st(3.0), Better::Lower), "1.00");
    }

    #[test]
    fn targets_report_misses_with_factor() {
        let mut r = Results::default();
        r.add("cold_start_ms", "xmppd", Some(100.0));
        r.add("idle_tls_kib", "xmppd", Some(5.0));
        r.add("idle_tls_kib", "prosody", Some(50.0));
        let mut out = String::new();
        targets_table(&mut out, &r);
        assert!(
            out.contains("| cold start to first login < 50 ms | 100.0 ms | **missed** by 2.0× |"),
            "{out}"
        );
        assert!(out.contains("10.0× better than prosody | met"), "{out}");
        assert!(out.contains("idle RSS ≤ 2 MB | not measured"), "{out}");
    }
}
