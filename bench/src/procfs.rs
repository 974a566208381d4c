//! What the benchmark measures about processes: the server's resident memory
//! (`/proc/PID/status` VmRSS) and CPU time (`/proc/PID/stat` utime + stime, all threads),
//! and the generator's own CPU time (getrusage), so a reader can tell whether the generator
//! was the bottleneck; for the archive scenario, the server's I/O counters (`/proc/PID/io`)
//! and the size of its data directory.

use std::path::Path;
use std::time::Duration;

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The anonymous (private: heap, stacks) part of the resident set in KiB; the rest of VmRSS
/// is file pages (the executable, shared libraries) that other processes may share.
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// User + system CPU time of every thread of the process, past and present.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are utime and stime; here field 3 is index 0.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

/// Run time of every live thread of the process, in nanoseconds (sum_exec_runtime from
/// `/proc/PID/task/*/schedstat`): exact where utime/stime only count 10 ms ticks, but blind to
/// threads that have exited.
pub fn thread_runtime(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        total += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// The I/O counters of `/proc/PID/io` (proc(5)), summed by the kernel over all threads of the
/// process, those that have exited included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes passed to write(2), pwrite(2), writev(2) … whatever the file (a socket written
    /// with write(2) too; send(2) and sendmsg(2) are not counted).
    pub wchar: u64,
    /// Bytes the process caused to be sent to the block layer: counted when it dirties a
    /// page-cache page (a whole page, once per clean→dirty transition), not when the kernel
    /// writes it back; the file system's own journal and metadata are not counted. 0 on tmpfs.
    pub write_bytes: u64,
    /// Dirty page-cache bytes that never reached the block layer (the file was truncated or
    /// deleted first).
    pub cancelled_write_bytes: u64,
}

impl IoCounters {
    pub fn since(self, before: IoCounters) -> IoCounters {
        IoCounters {
            wchar: self.wchar.saturating_sub(before.wchar),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
            cancelled_write_bytes: self
                .cancelled_write_bytes
                .saturating_sub(before.cancelled_write_bytes),
        }
    }
}

/// Reading another process's counters needs ptrace access to it (root, or the same user).
pub fn io(pid: u32) -> Option<IoCounters> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

fn parse_io(text: &str) -> Option<IoCounters> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(IoCounters {
        wchar: field("wchar")?,
        write_bytes: field("write_bytes")?,
        cancelled_write_bytes: field("cancelled_write_bytes")?,
    })
}

/// Apparent size (bytes) of every regular file under `dir`, like `du -sb` without the
/// directories' own sizes; symbolic links are not followed. None if `dir` cannot be read.
pub fn tree_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            total += tree_bytes(&entry.path()).unwrap_or(0);
        } else if kind.is_file() {
            // A file removed between read_dir and metadata counts as empty.
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Some(total)
}

/// The process name as the kernel knows it (e.g. `beam.smp`, `lua5.4`, `xmppd`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// CPU time (user + system) used by this process so far.
pub fn self_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let usage = unsafe { usage.assume_init() };
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sends a signal to one process we started.
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Two 10 ms ticks at each end of a window, and some: how far tick-based and exact CPU time
/// may differ before the tick count is taken to include threads that have exited.
const TICK_SLACK: Duration = Duration::from_millis(40);

/// A CPU/wall-clock window over the server and the generator.
#[derive(Clone, Copy)]
pub struct Window {
    wall: std::time::Instant,
    server: Option<Duration>,
    server_threads: Option<Duration>,
    me: Duration,
}

/// What a [`Window`] saw.
#[derive(Clone, Copy, Debug)]
pub struct WindowResult {
    pub wall: Duration,
    /// None when no server PID was given.
    pub server_cpu: Option<Duration>,
    pub bench_cpu: Duration,
}

impl WindowResult {
    /// Generator CPU as a share of one core over the window, in percent.
    pub fn bench_cpu_percent(&self) -> f64 {
        100.0 * self.bench_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

impl Window {
    pub fn start(pid: Option<u32>) -> Window {
        Window {
            wall: std::time::Instant::now(),
            server: pid.and_then(cpu_time),
            server_threads: pid.and_then(thread_runtime),
            me: self_cpu(),
        }
    }

    /// Server CPU over the window: utime + stime from /proc/PID/stat, refined to nanoseconds
    /// with the threads' schedstat when both agree within the tick resolution (they differ
    /// more only when a thread exited during the window; then the tick count stands).
    pub fn finish(&self, pid: Option<u32>) -> WindowResult {
        let ticks = match (self.server, pid.and_then(cpu_time)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let precise = match (self.server_threads, pid.and_then(thread_runtime)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let server_cpu = match (ticks, precise) {
            (Some(t), Some(p)) if t <= p + TICK_SLACK => Some(p),
            (t, _) => t,
        };
        WindowResult {
            wall: self.wall.elapsed(),
            server_cpu,
            bench_cpu: self_cpu().saturating_sub(self.me),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns this thread's CPU until `amount` more run time is accounted (wall time may be
    /// longer on a busy machine).
    fn burn(amount: Duration) {
        let me = std::process::id();
        let start = thread_runtime(me).unwrap();
        let wall = std::time::Instant::now();
        let mut x = 0u64;
        while thread_runtime(me).unwrap() < start + amount
            && wall.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
        }
        assert!(x > 0);
    }

    #[test]
    fn parses_proc_io() {
        let text = "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 1\nread_bytes: 0\n\
                    write_bytes: 8192\ncancelled_write_bytes: 4096\n";
        let io = parse_io(text).unwrap();
        assert_eq!(
            io,
            IoCounters {
                wchar: 12,
                write_bytes: 8192,
                cancelled_write_bytes: 4096
            }
        );
        assert_eq!(io.since(io), IoCounters::default());
        assert!(parse_io("wchar: 12\n").is_none(), "fields missing");
        assert!(parse_io("wchar: x\nwrite_bytes: 1\ncancelled_write_bytes: 0").is_none());
    }

    #[test]
    fn own_writes_show_in_io_and_tree() {
        let dir = std::env::temp_dir().join(format!("xmppd-bench-io-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        assert_eq!(tree_bytes(&dir), Some(0));
        let before = io(std::process::id()).unwrap();
        std::fs::write(dir.join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("sub/b"), [0u8; 5000]).unwrap();
        let grown = tree_bytes(&dir);
        let after = io(std::process::id()).unwrap().since(before);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(grown, Some(5100));
        assert!(after.wchar >= 5100, "{after:?}");
        assert!(tree_bytes(&dir).is_none());
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(rss_anon_kib(me).is_some_and(|k| k > 0 && Some(k) <= rss_kib(me)));
        assert!(rss_kib(u32::MAX).is_none() && cpu_time(u32::MAX).is_none());
        let ticks_before = cpu_time(me).unwrap();
        let w = Window::start(Some(me));
        burn(Duration::from_millis(80));
        let r = w.finish(Some(me));
        assert!(
            cpu_time(me).unwrap() > ticks_before,
            "80 ms of CPU shows up in /proc/self/stat"
        );
        let cpu = r.server_cpu.unwrap();
        assert!(
            cpu >= Duration::from_millis(75) && cpu < Duration::from_millis(500),
            "{cpu:?}"
        );
        assert!(
            r.bench_cpu >= Duration::from_millis(70),
            "getrusage sees it too: {:?}",
            r.bench_cpu
        );
    }
}
