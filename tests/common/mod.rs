//! Shared harness for xmppd's integration tests (std only).
//!
//! - [`Server`] runs the real binary on loopback (`127.0.0.1:0`) with a fresh data dir,
//!   collects its stderr, and waits for the readiness lines before a test talks to it;
//!   it can stop it (SIGTERM), kill it (SIGKILL) and restart it on the same data dir.
//! - [`run_scenario`] drives the server with an independent client (slixmpp, through
//!   `tests/clients/scenarios.py`, in a venv made once per test process by
//!   `tests/clients/setup.sh`).
//! - [`RawClient`] is a plain TCP client for XML transcript tests.
//!
//! Every wait has a timeout, and a failure prints what the server logged.
//!
//! ```ignore
//! mod common;
//! use common::{Server, ServerOptions, Transport};
//!
//! #[test]
//! fn login_over_starttls() {
//!     let server = Server::start(ServerOptions::secure().user("alice@localhost", "secret"));
//!     server.scenario("login", Transport::StartTls, &["--mechanism", "SCRAM-SHA-256"]);
//! }
//! ```
#![allow(dead_code)] // each test crate uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exact readiness lines (a log prefix before them is fine).
pub const STARTTLS_LISTENING: &str = "c2s (STARTTLS) listening on ";
pub const DIRECT_TLS_LISTENING: &str = "c2s (direct TLS) listening on ";
pub const READY: &str = "xmppd ready";

/// The domain every test server serves.
pub const DOMAIN: &str = "localhost";

/// Config that lets loopback tests log in over plain TCP (with PLAIN too).
pub const PLAIN_CONFIG: &str =
    "[c2s]\nrequire_encryption = false\nallow_plain_unencrypted = true\n";

/// How long the server may take to print its readiness lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `xmppd user add` may take (it hashes a password).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one scenario process; scenarios.py has its own, shorter limits
/// (10 s per step, 120 s in all), this only guards against a hung interpreter.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// The binary under test.
pub fn xmppd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xmppd"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop unless the test is
/// panicking (then it is kept and its path printed) or `XMPPD_TEST_KEEP` is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "xmppd-test-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("XMPPD_TEST_KEEP").is_some() {
            eprintln!("kept test directory {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Collected output
// ---------------------------------------------------------------------------

/// Lines from the server's stderr and stdout, shared with the reader threads.
#[derive(Clone, Default)]
pub struct LogLines {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl LogLines {
    fn push(&self, line: String) {
        let (lines, changed) = &*self.inner;
        lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        changed.notify_all();
    }

    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    /// The first line at index >= `from` satisfying `pred`, waiting up to `timeout`.
    /// Gives up early when `alive` says the process is gone and no line matched.
    fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.inner;
        let mut guard = lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = from;
        loop {
            if let Some(line) = guard.iter().skip(seen).find(|l| pred(l)) {
                return Some(line.clone());
            }
            seen = guard.len().max(from);
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if !alive() {
                // Let the reader threads drain what the process wrote before exiting.
                drop(guard);
                thread::sleep(Duration::from_millis(100));
                guard = lines.lock().unwrap_or_else(|e| e.into_inner());
                return guard.iter().skip(from).find(|l| pred(l)).cloned();
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = changed
                .wait_timeout(guard, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

fn spawn_line_reader<R: Read + Send + 'static>(source: R, prefix: &'static str, sink: LogLines) {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    sink.push(format!("{prefix}{line}"));
                }
            }
        }
    });
}

fn listening_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

/// Runs a command to completion with a timeout, capturing stdout and stderr.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_timeout(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!(
                "{command:?} did not finish within {timeout:?}\n--- stdout\n{out}\n--- stderr\n{err}"
            );
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain<R: Read + Send + 'static>(source: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut source) = source {
            let _ = source.read_to_end(&mut buf);
        }
        buf
    })
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// How a test server is configured before its first start.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Contents of a config file passed with `--config` (None: no config file).
    pub config: Option<String>,
    /// Accounts created with `xmppd user add` before the first start.
    pub users: Vec<(String, String)>,
    /// Extra arguments appended to `serve`.
    pub extra_args: Vec<String>,
    /// The binary to run; None means the xmppd built for this test.
    pub binary: Option<PathBuf>,
}

impl ServerOptions {
    /// Defaults: TLS required (STARTTLS or direct TLS).
    pub fn secure() -> ServerOptions {
        ServerOptions::default()
    }

    /// Plain TCP allowed, PLAIN allowed without TLS ([`PLAIN_CONFIG`]).
    pub fn plain() -> ServerOptions {
        ServerOptions {
            config: Some(PLAIN_CONFIG.to_string()),
            ..ServerOptions::default()
        }
    }

    pub fn user(mut self, jid: &str, password: &str) -> ServerOptions {
        self.users.push((jid.to_string(), password.to_string()));
        self
    }

    pub fn config(mut self, text: &str) -> ServerOptions {
        self.config = Some(text.to_string());
        self
    }

    pub fn arg(mut self, arg: &str) -> ServerOptions {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn binary(mut self, path: impl Into<PathBuf>) -> ServerOptions {
        self.binary = Some(path.into());
        self
    }
}

/// Transport for a client scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP on the STARTTLS port, no TLS (needs [`ServerOptions::plain`]).
    Plain,
    /// STARTTLS on the STARTTLS port (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte on the direct TLS port (XEP-0368).
    DirectTls,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Plain, Transport::StartTls, Transport::DirectTls];

    pub fn as_arg(self) -> &'static str {
        match self {
            Transport::Plain => "none",
            Transport::StartTls => "starttls",
            Transport::DirectTls => "direct",
        }
    }
}

/// A running (or stopped) xmppd with its own data dir. Dropping it kills the process.
pub struct Server {
    binary: PathBuf,
    dir: TempDir,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    extra_args: Vec<String>,
    child: Option<Child>,
    log: LogLines,
    /// Index in `log` where the current run's output starts.
    run_start: usize,
    runs: usize,
    /// Set once a panic message carried the log, so Drop does not print it again.
    log_shown: AtomicBool,
    pub starttls_addr: SocketAddr,
    pub direct_tls_addr: SocketAddr,
}

impl Server {
    /// Creates the data dir, adds the users, starts the server and waits until it is ready.
    pub fn start(options: ServerOptions) -> Server {
        let dir = TempDir::new("server");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", data_dir.display()));
        let config = options.config.as_ref().map(|text| {
            let path = dir.path().join("xmppd.toml");
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path
        });
        let unspecified: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut server = Server {
            binary: options.binary.clone().unwrap_or_else(xmppd_binary),
            dir,
            data_dir,
            config,
            extra_args: options.extra_args.clone(),
            child: None,
            log: LogLines::default(),
            run_start: 0,
            runs: 0,
            log_shown: AtomicBool::new(false),
            starttls_addr: unspecified,
            direct_tls_addr: unspecified,
        };
        for (jid, password) in &options.users {
            server.user_add(jid, password);
        }
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The self-signed certificate the server generates on first start.
    pub fn cafile(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }

    /// The config file passed with `--config`, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Scratch space next to the data dir, removed with the server.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn serve_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--domain".into(),
            DOMAIN.into(),
            "--c2s".into(),
            "127.0.0.1:0".into(),
            "--c2s-tls".into(),
            "127.0.0.1:0".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        if let Some(config) = &self.config {
            args.push("--config".into());
            args.push(config.display().to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        self.runs += 1;
        self.log
            .push(format!("===== xmppd run {} =====", self.runs));
        self.run_start = self.log.len();
        let args = self.serve_args();
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} {args:?}: {e}", self.binary.display()));
        let stderr: Option<ChildStderr> = child.stderr.take();
        let stdout: Option<ChildStdout> = child.stdout.take();
        if let Some(stderr) = stderr {
            spawn_line_reader(stderr, "", self.log.clone());
        }
        if let Some(stdout) = stdout {
            spawn_line_reader(stdout, "[stdout] ", self.log.clone());
        }
        self.child = Some(child);
        self.starttls_addr = self.wait_for_addr(STARTTLS_LISTENING);
        self.direct_tls_addr = self.wait_for_addr(DIRECT_TLS_LISTENING);
        self.wait_for_line(READY, START_TIMEOUT);
    }

    fn wait_for_addr(&mut self, marker: &str) -> SocketAddr {
        let line = self.wait_for_line(marker, START_TIMEOUT);
        listening_addr(&line, marker)
            .unwrap_or_else(|| self.fail(&format!("cannot parse the address in {line:?}")))
    }

    /// Waits for a line of the current run containing `needle`; panics (with the log)
    /// on timeout or if the server exits first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let log = self.log.clone();
        let start = self.run_start;
        let mut child = self.child.take();
        let found = log.wait_for(
            start,
            timeout,
            || {
                child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
            },
            |line| line.contains(needle),
        );
        self.child = child;
        match found {
            Some(line) => line,
            None => {
                let state = match self.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => format!("server exited with {status}"),
                    _ => format!("not seen within {timeout:?}"),
                };
                self.fail(&format!(
                    "waiting for a log line containing {needle:?}: {state}"
                ))
            }
        }
    }

    /// All lines the server printed so far (every run).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.snapshot()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.snapshot().iter().any(|l| l.contains(needle))
    }

    /// Panics with the server's whole log.
    pub fn fail(&self, message: &str) -> ! {
        self.log_shown.store(true, Ordering::Relaxed);
        panic!(
            "{message}\n----- xmppd output ({}) -----\n{}\n----- end of xmppd output -----",
            self.data_dir.display(),
            self.log.text()
        )
    }

    /// `xmppd user add JID --password PW --data-dir DIR`.
    pub fn user_add(&self, jid: &str, password: &str) {
        let mut command = Command::new(&self.binary);
        command.args(["user", "add", jid, "--password", password, "--data-dir"]);
        command.arg(&self.data_dir);
        let output = run_with_timeout(&mut command, COMMAND_TIMEOUT);
        if !output.status.success() {
            self.fail(&format!(
                "xmppd user add {jid} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    /// SIGTERM, then waits for the exit; returns its status. Panics if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            self.fail("stop: the server is not running")
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        match wait_timeout(&mut child, STOP_TIMEOUT) {
            Some(status) => {
                self.log.push(format!("===== xmppd exited: {status} ====="));
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!(
                    "server did not exit within {STOP_TIMEOUT:?} after SIGTERM (kill sent: {sent})"
                ))
            }
        }
    }

    /// SIGKILL (a crash or power cut, as far as the data dir is concerned).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.log
                .push("===== xmppd killed (SIGKILL) =====".to_string());
        }
    }

    /// Starts again on the same data dir (new ports). The server must be stopped.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.fail("restart: stop() or kill() the server first");
        }
        self.child = None;
        self.spawn();
    }

    /// `--host/--port/--domain/--tls` and trust arguments for scenarios.py.
    pub fn scenario_args(&self, transport: Transport) -> Vec<String> {
        let addr = match transport {
            Transport::Plain | Transport::StartTls => self.starttls_addr,
            Transport::DirectTls => self.direct_tls_addr,
        };
        let mut args = vec![
            "--host".to_string(),
            addr.ip().to_string(),
            "--port".to_string(),
            addr.port().to_string(),
            "--domain".to_string(),
            DOMAIN.to_string(),
            "--tls".to_string(),
            transport.as_arg().to_string(),
        ];
        if transport != Transport::Plain {
            args.push("--cafile".to_string());
            args.push(self.cafile().display().to_string());
        }
        args
    }

    /// Runs a scenario against this server and asserts it passed; on failure the panic
    /// shows the scenario's output and the server's log.
    pub fn scenario(&self, name: &str, transport: Transport, extra: &[&str]) -> ScenarioOutput {
        let output = self.try_scenario(name, transport, extra);
        if !output.success() {
            self.fail(&format!("{output}"));
        }
        output
    }

    /// Runs a scenario without asserting its outcome (for expected failures).
    pub fn try_scenario(&self, name: &str, transport: Transport, extra: &[&str]) -> ScenarioOutput {
        let mut args = self.scenario_args(transport);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        try_scenario(name, &args)
    }

    /// A raw TCP connection to the STARTTLS port.
    pub fn raw_client(&self) -> RawClient {
        RawClient::connect(self.starttls_addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() && !self.log_shown.load(Ordering::Relaxed) {
            eprintln!(
                "----- xmppd output ({}) -----\n{}\n----- end of xmppd output -----",
                self.data_dir.display(),
                self.log.text()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Client scenarios (slixmpp)
// ---------------------------------------------------------------------------

/// The venv python made by `tests/clients/setup.sh`, once per test process.
pub fn client_python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PYTHON.get_or_init(|| {
        let script = repo_root().join("tests/clients/setup.sh");
        let output = run_with_timeout(Command::new("bash").arg(&script), Duration::from_secs(600));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(format!(
                "{} failed with {}:\n{stderr}",
                script.display(),
                output.status
            ));
        }
        match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(path) if Path::new(path.trim()).exists() => Ok(PathBuf::from(path.trim())),
            _ => Err(format!(
                "{} printed no python path:\n{stdout}\n{stderr}",
                script.display()
            )),
        }
    });
    match result {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// What one scenarios.py run printed.
pub struct ScenarioOutput {
    pub command: String,
    pub status: ExitStatus,
    /// One JSON object per line: the observations.
    pub stdout: String,
    /// The failure reason and the client's XML transcript.
    pub stderr: String,
}

impl ScenarioOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Observation lines with `"event": "<event>"`.
    pub fn events(&self, event: &str) -> Vec<&str> {
        let needle = format!("\"event\": \"{event}\"");
        self.stdout
            .lines()
            .filter(|l| l.contains(&needle))
            .collect()
    }
}

impl std::fmt::Display for ScenarioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scenario `{}` exited with {}\n----- scenario stdout -----\n{}\n----- scenario stderr -----\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `scenarios.py NAME ARGS...` and returns what happened.
pub fn try_scenario(name: &str, args: &[&str]) -> ScenarioOutput {
    let python = client_python();
    let script = repo_root().join("tests/clients/scenarios.py");
    let mut command = Command::new(python);
    command.arg(&script).arg(name).args(args);
    let output = run_with_timeout(&mut command, SCENARIO_TIMEOUT);
    ScenarioOutput {
        command: format!("{} {name} {}", script.display(), args.join(" ")),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a scenario and asserts it exited 0, showing its output otherwise.
pub fn run_scenario(name: &str, args: &[&str]) -> ScenarioOutput {
    let output = try_scenario(name, args);
    assert!(output.success(), "{output}");
    output
}

// ---------------------------------------------------------------------------
// Raw XML over TCP
// ---------------------------------------------------------------------------

/// A plain TCP client for transcript tests: send text, read until a pattern.
pub struct RawClient {
    stream: TcpStream,
    /// Received but not yet returned by `recv_until`.
    pending: Vec<u8>,
    /// Everything received, for failure messages.
    transcript: String,
    eof: bool,
}

pub const DEFAULT_RECV_TIMEOUT: Duration = Duration::from_secs(10);

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            pending: Vec::new(),
            transcript: String::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, xml: &str) {
        self.transcript.push_str(&format!("\nC: {xml}"));
        self.stream
            .write_all(xml.as_bytes())
            .unwrap_or_else(|e| panic!("sending {xml:?}: {e}\ntranscript:{}", self.transcript));
    }

    /// Sends raw bytes (for input that is not valid UTF-8).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.transcript
            .push_str(&format!("\nC: {}", String::from_utf8_lossy(bytes)));
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("sending bytes: {e}\ntranscript:{}", self.transcript));
    }

    /// Sends without panicking (the server may already have closed the connection).
    pub fn try_send(&mut self, text: &str) -> std::io::Result<()> {
        self.stream.write_all(text.as_bytes())
    }

    /// Opens a stream, logs in with SASL PLAIN (the server must allow it without TLS)
    /// and binds `resource`.
    pub fn login(&mut self, user: &str, password: &str, resource: &str) {
        self.open_stream(DOMAIN);
        self.recv_until("</stream:features>", DEFAULT_RECV_TIMEOUT);
        let auth = plain_auth(user, password);
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
        ));
        self.recv_until("<success", DEFAULT_RECV_TIMEOUT);
        self.open_stream(DOMAIN);
        self.recv_until("</stream:features>", DEFAULT_RECV_TIMEOUT);
        self.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ));
        self.recv_until("</iq>", DEFAULT_RECV_TIMEOUT);
    }

    /// The stream header a client opens with (RFC 6120 §4.7).
    pub fn open_stream(&mut self, domain: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ));
    }

    /// Returns everything up to and including the first occurrence of `pattern`,
    /// or an error (with what arrived) on timeout or when the server closed first.
    pub fn try_recv_until(&mut self, pattern: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let needle = pattern.as_bytes();
        loop {
            if let Some(pos) = find(&self.pending, needle) {
                let rest = self.pending.split_off(pos + needle.len());
                let taken = std::mem::replace(&mut self.pending, rest);
                return Ok(String::from_utf8_lossy(&taken).into_owned());
            }
            if self.eof {
                return Err(format!(
                    "connection closed before {pattern:?}; unread: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{pattern:?} not received within {timeout:?}; unread: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ));
            }
            self.read_some(deadline - now)?;
        }
    }

    /// Like `try_recv_until` but panics with the transcript on failure.
    pub fn recv_until(&mut self, pattern: &str, timeout: Duration) -> String {
        match self.try_recv_until(pattern, timeout) {
            Ok(text) => text,
            Err(e) => panic!("{e}\ntranscript:{}", self.transcript),
        }
    }

    /// Waits until the server closes the TCP connection; returns what arrived meanwhile.
    pub fn recv_until_closed(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "server did not close the connection within {timeout:?}\ntranscript:{}",
                    self.transcript
                );
            }
            if let Err(e) = self.read_some(deadline - now) {
                panic!("{e}\ntranscript:{}", self.transcript);
            }
        }
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }

    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Half-closes the sending side (the server sees EOF).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads and throws away whatever has already arrived, without waiting: for a
    /// client that floods and must keep reading its error replies, as a real one would.
    pub fn discard_available(&mut self) -> usize {
        let _ = self.stream.set_nonblocking(true);
        let mut buf = [0u8; 16384];
        let mut total = 0;
        while let Ok(n @ 1..) = self.stream.read(&mut buf) {
            total += n;
        }
        let _ = self.stream.set_nonblocking(false);
        total
    }

    fn read_some(&mut self, timeout: Duration) -> Result<(), String> {
        let timeout = timeout.clamp(Duration::from_millis(1), Duration::from_millis(200));
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                Ok(())
            }
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or(&[]);
                self.transcript
                    .push_str(&format!("\nS: {}", String::from_utf8_lossy(chunk)));
                self.pending.extend_from_slice(chunk);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(())
            }
            Err(e) => Err(format!("reading: {e}")),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// base64 of `\0user\0password` (SASL PLAIN), without a base64 dependency.
pub fn plain_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = format!("\0{user}\0{password}").into_bytes();
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Resident memory of a process in KiB (VmRSS from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
