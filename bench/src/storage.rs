//! What a server's writes cost the storage over a window, for the archive scenario: bytes the
//! server sent towards the block layer (`/proc/PID/io` write_bytes), the growth of its data
//! directory, and how often it asked the kernel to flush a file to the device (fsync,
//! fdatasync, sync_file_range, msync, syncfs, sync), counted by `perf stat` on the syscall
//! tracepoints or by `strace -c`.

use crate::procfs::{self, IoCounters};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The system calls that force data to the device (and that a flash chip pays for).
pub const SYNC_CALLS: &[&str] = &[
    "fsync",
    "fdatasync",
    "sync_file_range",
    "msync",
    "syncfs",
    "sync",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracer {
    /// `perf stat` on the `syscalls:sys_enter_*` tracepoints: counted in the kernel, the
    /// server runs at full speed; inherited by threads created while it counts.
    Perf,
    /// `strace -f -c`: attaches to every thread (strace -f with -p walks /proc/PID/task) and
    /// stops each one at every system call, which slows the server and adds to its CPU time.
    Strace,
}

impl Tracer {
    pub fn parse(s: &str) -> Option<Tracer> {
        match s {
            "perf" => Some(Tracer::Perf),
            "strace" => Some(Tracer::Strace),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tracer::Perf => "perf",
            Tracer::Strace => "strace",
        }
    }

    fn command(self, pid: u32) -> Command {
        let pid = pid.to_string();
        match self {
            Tracer::Perf => {
                let events: Vec<String> = SYNC_CALLS
                    .iter()
                    .map(|c| format!("syscalls:sys_enter_{c}"))
                    .collect();
                let mut cmd = Command::new("perf");
                cmd.args(["stat", "-x,", "-e", &events.join(","), "-p", &pid]);
                cmd
            }
            Tracer::Strace => {
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-qq", "-c", "-e"])
                    .arg(format!("trace={}", SYNC_CALLS.join(",")))
                    .args(["-p", &pid]);
                cmd
            }
        }
    }
}

/// Calls per system call name (only those seen, or all of [`SYNC_CALLS`] with perf).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    pub calls: BTreeMap<String, u64>,
}

impl SyncCounts {
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// "fdatasync 100, fsync 2" (the calls made), or "none".
    pub fn describe(&self) -> String {
        let made: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if made.is_empty() {
            "none".into()
        } else {
            made.join(", ")
        }
    }
}

/// `perf stat -x,` lines: `COUNT,UNIT,EVENT,RUNTIME,PERCENT,,`.
fn parse_perf(text: &str) -> Result<SyncCounts, String> {
    let mut counts = SyncCounts::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let Some(call) = fields
            .get(2)
            .and_then(|e| e.strip_prefix("syscalls:sys_enter_"))
        else {
            continue;
        };
        let n = fields
            .first()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| format!("perf could not count {call}: {line}"))?;
        counts.calls.insert(call.to_string(), n);
    }
    if counts.calls.is_empty() {
        return Err(format!("no counts in perf's output: {}", text.trim()));
    }
    Ok(counts)
}

/// `strace -c` table rows: `% time  seconds  usecs/call  calls  [errors]  syscall`.
fn parse_strace(text: &str) -> Result<SyncCounts, String> {
    let mut counts = SyncCounts::default();
    let mut header = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"%") {
            header = true;
            continue;
        }
        let (Some(name), Some(calls)) = (fields.last(), fields.get(3)) else {
            continue;
        };
        if !SYNC_CALLS.contains(name) {
            continue;
        }
        let n = calls
            .parse::<u64>()
            .map_err(|_| format!("strace summary row not understood: {line}"))?;
        counts.calls.insert(name.to_string(), n);
    }
    // No rows is a valid answer (no call made) only if strace printed its table.
    if !header && !text.trim().is_empty() {
        return Err(format!("strace: {}", text.trim()));
    }
    Ok(counts)
}

/// A tracer counting one process's sync calls until [`SyncTrace::finish`].
pub struct SyncTrace {
    child: Child,
    tracer: Tracer,
}

/// perf gives no sign of being attached; its counters are open within milliseconds.
const PERF_ATTACH: Duration = Duration::from_millis(300);
const ATTACH_LIMIT: Duration = Duration::from_secs(5);

impl SyncTrace {
    /// Starts counting; returns once the tracer is attached (strace: once it is the tracer
    /// of every thread).
    pub async fn attach(tracer: Tracer, pid: u32) -> Result<SyncTrace, String> {
        let mut child = tracer
            .command(pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {}: {e} (bench/peers.sh install installs it)",
                    tracer.name()
                )
            })?;
        let started = Instant::now();
        loop {
            smol::Timer::after(Duration::from_millis(50)).await;
            if let Ok(Some(status)) = child.try_wait() {
                let out = wait_output(child, tracer).await.unwrap_or_default();
                return Err(format!(
                    "{} exited ({status}): {}",
                    tracer.name(),
                    out.trim()
                ));
            }
            let attached = match tracer {
                Tracer::Strace => traced_by_all_threads(pid, child.id()),
                Tracer::Perf => started.elapsed() >= PERF_ATTACH,
            };
            if attached {
                return Ok(SyncTrace { child, tracer });
            }
            if started.elapsed() >= ATTACH_LIMIT {
                procfs::signal(child.id(), libc::SIGINT);
                let _ = wait_output(child, tracer).await;
                return Err(format!(
                    "{} did not attach to {pid} within 5 s",
                    tracer.name()
                ));
            }
        }
    }

    /// Stops counting (SIGINT: both tracers print their counts and detach).
    pub async fn finish(self) -> Result<SyncCounts, String> {
        procfs::signal(self.child.id(), libc::SIGINT);
        let text = wait_output(self.child, self.tracer).await?;
        match self.tracer {
            Tracer::Perf => parse_perf(&text),
            Tracer::Strace => parse_strace(&text),
        }
    }
}

/// Waits for the tracer to exit and returns what it wrote to stderr.
async fn wait_output(child: Child, tracer: Tracer) -> Result<String, String> {
    let out = smol::unblock(move || child.wait_with_output())
        .await
        .map_err(|e| format!("waiting for {}: {e}", tracer.name()))?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Whether `tracer` ptrace-attached every thread of `pid` (TracerPid in each task's status).
fn traced_by_all_threads(pid: u32, tracer: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let wanted = tracer.to_string();
    let mut any = false;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() == wanted);
        if !traced {
            return false;
        }
        any = true;
    }
    any
}

/// What to watch: the server process and its data directory (either may be unknown).
#[derive(Clone, Debug)]
pub struct StorageProbe {
    pub pid: Option<u32>,
    pub data_dir: Option<PathBuf>,
    /// None: sync calls not counted (nothing attached to the server).
    pub tracer: Option<Tracer>,
}

/// A running measurement, from [`StorageProbe::start`] to [`StorageWindow::finish`].
pub struct StorageWindow {
    probe: StorageProbe,
    io: Option<IoCounters>,
    data_bytes: Option<u64>,
    trace: Option<SyncTrace>,
}

/// What a [`StorageWindow`] saw; None where the probe had nothing to watch.
#[derive(Clone, Debug, Default)]
pub struct StorageResult {
    pub io: Option<IoCounters>,
    /// Growth of the data directory's files in bytes (negative if the server deleted more
    /// than it added).
    pub data_growth: Option<i64>,
    pub syncs: Option<SyncCounts>,
}

impl StorageProbe {
    pub async fn start(&self) -> Result<StorageWindow, String> {
        let trace = match (self.pid, self.tracer) {
            (Some(pid), Some(tracer)) => Some(SyncTrace::attach(tracer, pid).await?),
            _ => None,
        };
        Ok(StorageWindow {
            probe: self.clone(),
            io: self.pid.and_then(procfs::io),
            data_bytes: self.data_dir.as_deref().and_then(procfs::tree_bytes),
            trace,
        })
    }
}

impl StorageWindow {
    pub async fn finish(self) -> Result<StorageResult, String> {
        let io = match (self.io, self.probe.pid.and_then(procfs::io)) {
            (Some(before), Some(after)) => Some(after.since(before)),
            _ => None,
        };
        let after = self.probe.data_dir.as_deref().and_then(procfs::tree_bytes);
        let data_growth = match (self.data_bytes, after) {
            (Some(a), Some(b)) => Some(b as i64 - a as i64),
            _ => None,
        };
        let syncs = match self.trace {
            Some(t) => Some(t.finish().await?),
            None => None,
        };
        Ok(StorageResult {
            io,
            data_growth,
            syncs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_stat_csv() {
        let text = "# started on Tue Nov 24 05:56:16 2026\n\n\
                    0,,syscalls:sys_enter_fsync,33880450,100.00,,\n\
                    170,,syscalls:sys_enter_fdatasync,33880450,100.00,,\n\
                    0,,syscalls:sys_enter_msync,33880450,100.00,,\n";
        let c = parse_perf(text).unwrap();
        assert_eq!(c.total(), 170);
        assert_eq!(c.calls.get("fsync"), Some(&0));
        assert_eq!(c.describe(), "fdatasync 170");
        assert!(parse_perf("<not counted>,,syscalls:sys_enter_fsync,0,0.00,,\n").is_err());
        assert!(parse_perf("Error: No permissions\n").is_err());
    }

    #[test]
    fn parses_strace_summary() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    \x2090.00    0.032130         189       170           fdatasync\n\
                    \x2010.00    0.003000         100        30         2 fsync\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    100.00    0.035130         175       200         2 total\n";
        let c = parse_strace(text).unwrap();
        assert_eq!(c.total(), 200);
        assert_eq!(c.describe(), "fdatasync 170, fsync 30");
        // No call made: strace prints nothing (or an empty table).
        assert_eq!(parse_strace("").unwrap().total(), 0);
        assert_eq!(parse_strace("").unwrap().describe(), "none");
        assert!(
            parse_strace("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")
                .is_err()
        );
    }

    #[test]
    fn counts_a_child_s_fdatasyncs() {
        // Needs the tracers and the permission to trace (root, or ptrace_scope 0); skipped
        // where they are missing, as in CI containers.
        for tracer in [Tracer::Perf, Tracer::Strace] {
            let Ok(mut sleeper) = Command::new("python3")
                .args([
                    "-c",
                    "import os,sys,tempfile\nsys.stdin.read(1)\n\
                     with tempfile.TemporaryFile() as f:\n\
                     \x20   for _ in range(7): f.write(b'x'); f.flush(); os.fdatasync(f.fileno())",
                ])
                .stdin(Stdio::piped())
                .spawn()
            else {
                return;
            };
            let pid = sleeper.id();
            let trace = smol::block_on(SyncTrace::attach(tracer, pid));
            use std::io::Write;
            let _ = sleeper.stdin.take().map(|mut s| s.write_all(b"go"));
            let _ = sleeper.wait();
            match trace {
                Ok(t) => {
                    let c = smol::block_on(t.finish()).unwrap();
                    assert_eq!(c.calls.get("fdatasync"), Some(&7), "{}", tracer.name());
                }
                Err(e) => eprintln!("skipped {}: {e}", tracer.name()),
            }
        }
    }
}
