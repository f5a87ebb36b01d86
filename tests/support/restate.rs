//! Test support for runs on Restate: the real server (from npm), the real `loop restate serve`
//! endpoint and real `loop worker`s, each test in a network namespace of its own.
//!
//! Invariants:
//! - Nothing leaves the machine. Every server start tries an outbound version check that no
//!   setting turns off, so a Restate test re-runs itself ([`in_own_network`]) under
//!   `unshare --net` with only loopback up; the outer run only asserts that the inner one passed.
//!   One namespace per test also lets every test use the server's fixed ports (8080, 9070).
//! - One cluster at a time per test binary: the outer runs hold [`ONE_AT_A_TIME`], since a
//!   server weighs ~300 MiB and the lease tests measure seconds.
//! - Every process a test starts ([`Proc`]) has stdin closed, leads its own process group, dies
//!   with the test thread (`PR_SET_PDEATHSIG`) and is killed with its group on drop; each carries
//!   the test's tag ([`TAG_VAR`]) so [`Cluster::shutdown`] can prove that none outlived the test,
//!   not even a child of a worker that was `kill -9`ed.
//! - No shell string is built: every command is an argument vector.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{loop_bin, TestEnvironment, TestRepo, DEMO_DOCS, DEMO_SCENARIO};

/// The real server binary (set by scripts/test.sh).
pub const SERVER_VAR: &str = "LOOP_TEST_RESTATE_SERVER";
/// Set on the inner run of a test, the one inside the network namespace.
const INNER_VAR: &str = "LOOP_TEST_RESTATE_INNER";
/// Every process a test starts carries `TAG_VAR=<test's tag>` in its environment.
pub const TAG_VAR: &str = "LOOP_TEST_RESTATE_TAG";

pub const INGRESS: &str = "http://127.0.0.1:8080";
pub const ADMIN: &str = "http://127.0.0.1:9070";
pub const LISTEN: &str = "127.0.0.1:9080";
pub const MILESTONE: &str = "M1-core";

/// How long a whole inner test may take before the outer one kills it and fails.
const INNER_LIMIT: Duration = Duration::from_secs(900);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The server binary: `LOOP_TEST_RESTATE_SERVER`. On CI its absence is a failure, never a skip.
pub fn server_bin() -> Option<PathBuf> {
    match std::env::var_os(SERVER_VAR) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) {
                panic!("{SERVER_VAR} is unset on CI: run the tests through scripts/test.sh");
            }
            eprintln!("skipping: {SERVER_VAR} is unset (scripts/test.sh installs the server and sets it)");
            None
        }
    }
}

/// Whether the calling test should go on here. Outside the namespace: runs this very test again
/// (`current_exe() --exact NAME`) under `unshare --net`, asserts that it passed, and returns
/// false. Inside: brings loopback up, checks that it is the only interface, and returns true.
pub fn in_own_network() -> bool {
    if std::env::var_os(INNER_VAR).is_some() {
        let out = Command::new("ip").args(["link", "set", "lo", "up"]).stdin(Stdio::null()).output().expect("ip runs");
        assert!(out.status.success(), "ip link set lo up: {}", String::from_utf8_lossy(&out.stderr));
        let devices = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
        let names: Vec<&str> = devices.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(names, ["lo"], "the test's network namespace has only loopback");
        return true;
    }
    let name = std::thread::current().name().expect("libtest names the test's thread").to_string();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let logs = tempfile::Builder::new().prefix("loop-restate-outer-").tempdir().expect("tempdir");
    let log = logs.path().join("inner.log");
    let file = std::fs::File::create(&log).expect("create log");
    let mut c = Command::new("unshare");
    // Without root a user namespace grants what `--net` needs.
    if unsafe { libc::geteuid() } != 0 {
        c.arg("--map-root-user");
    }
    c.args(["--net", "--"])
        .arg(std::env::current_exe().expect("current exe"))
        .args(["--exact", &name, "--nocapture", "--test-threads", "1"])
        .env(INNER_VAR, "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .process_group(0);
    let mut child = c.spawn().expect("unshare runs");
    let status = wait_limited(&mut child, INNER_LIMIT);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{text}");
    let status = status.unwrap_or_else(|| {
        kill_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
        panic!("{name} did not finish within {INNER_LIMIT:?} in its network namespace")
    });
    assert!(status.success(), "{name} failed in its network namespace ({status})");
    assert!(text.contains("test result: ok. 1 passed"), "{name} did not run in its network namespace");
    false
}

fn wait_limited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_group(pid: u32, signal: i32) {
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// `GET path` on 127.0.0.1:`port`: the status and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// Waits until `GET path` on `port` answers 200; panics after `limit`.
pub fn wait_healthy(port: u16, path: &str, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if matches!(http_get(port, path), Some((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("GET 127.0.0.1:{port}{path} did not answer 200 within {limit:?}");
}

/// Processes whose environment holds `TAG_VAR=tag`, loop's own included.
pub fn processes_tagged(tag: &str) -> Vec<(u32, String)> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string()));
        }
    }
    found
}

/// One long-running child of a test (server, endpoint, worker), its output in a log file.
pub struct Proc {
    pub name: String,
    make: Box<dyn Fn() -> Command + Send>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Proc {
    /// Starts `make()`; its stdout and stderr go to `<dir>/<name>.log` (`<name>.<n>.log` after
    /// the n-th restart).
    pub fn start(name: &str, dir: &Path, make: impl Fn() -> Command + Send + 'static) -> Proc {
        let mut p = Proc {
            name: name.to_string(),
            make: Box::new(make),
            child: None,
            log: dir.join(format!("{name}.log")),
            starts: 0,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        if self.starts > 0 {
            let dir = self.log.parent().expect("log dir").to_path_buf();
            self.log = dir.join(format!("{}.{}.log", self.name, self.starts));
        }
        self.starts += 1;
        let file = std::fs::File::create(&self.log).expect("create log");
        let mut c = (self.make)();
        c.stdin(Stdio::null()).stdout(file.try_clone().expect("dup")).stderr(file).process_group(0);
        // Dies with the test even if the test process is killed before any drop runs.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(c.spawn().unwrap_or_else(|e| panic!("{} does not start: {e}", self.name)));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("wait").is_none())
    }

    /// Sends `signal` to the process itself (not its group: what it leaves behind is its own
    /// business, and the tests check it).
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as i32, signal);
            }
        }
    }

    /// `kill -9` of the process alone, as a crash would; reaps it.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for it to exit; `None` if it did not.
    pub fn sigterm(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait(limit)
    }

    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        wait_limited(child, limit)
    }

    /// Starts the same command again (after [`Proc::kill9`]); its output goes to a new log.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "{} still runs", self.name);
        self.spawn();
    }

    /// Everything the current start wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until a line of the current start's output satisfies `pred`; returns that line.
    pub fn wait_line(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + limit;
        loop {
            if let Some(l) = self.log().lines().find(|l| pred(l)) {
                return l.to_string();
            }
            if !self.is_running() {
                panic!("{} exited before {what}:\n{}", self.name, self.log());
            }
            if Instant::now() >= until {
                panic!("{} did not print {what} within {limit:?}:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops it for good: SIGTERM, a grace period, then SIGKILL of its group.
    pub fn stop(&mut self) {
        if self.is_running() && self.sigterm(Duration::from_secs(10)).is_none() {
            eprintln!("{} ignored SIGTERM for 10 s; killing it", self.name);
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(c.id(), libc::SIGCONT);
            kill_group(c.id(), libc::SIGKILL);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A finished short-lived command: its exit status and output.
pub fn output_within(mut c: Command, limit: Duration, what: &str) -> Output {
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_limited(&mut child, limit);
    let Some(status) = status else {
        kill_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
        let stderr = e.join().unwrap_or_default();
        panic!("{what} did not finish within {limit:?}; stderr:\n{}", String::from_utf8_lossy(&stderr));
    };
    Output { status, stdout: o.join().unwrap_or_default(), stderr: e.join().unwrap_or_default() }
}

/// The repositories of a distributed run: the demo milestone (a chain ORB-1 → ORB-2 and a
/// diamond ORB-1 → {ORB-2, ORB-3} → ORB-4/ORB-6) pushed to a bare `origin.git`, a clone
/// `submit` that submits runs, a clone `local` for the same run on the local engine, and one
/// clone per worker. Each clone has its own git identity.
pub struct Fixture {
    pub env: Arc<TestEnvironment>,
    pub origin: PathBuf,
    pub submit: TestRepo,
    pub local: TestRepo,
    pub worker_clones: Vec<TestRepo>,
    pub tag: String,
}

impl Fixture {
    /// `scenarios`: extra files (name, text) committed next to the demo's `scenario.json`.
    pub fn new(workers: usize, scenarios: &[(&str, &str)]) -> Fixture {
        let env = TestEnvironment::new();
        let seed = env.repo_named("seed", DEMO_DOCS);
        std::fs::write(seed.join("scenario.json"), DEMO_SCENARIO).expect("write scenario");
        for (name, text) in scenarios {
            std::fs::write(seed.join(name), text).expect("write scenario");
        }
        seed.git(&["add", "-A"]);
        seed.git(&["commit", "-q", "-m", "scenarios"]);
        let origin = env.root().join("origin.git");
        env.git(env.root(), &["init", "-q", "--bare", "-b", "main", origin.to_str().expect("utf-8")]);
        seed.git(&["push", "-q", origin.to_str().expect("utf-8"), "main"]);
        let clone = |name: &str| {
            let path = env.root().join(name);
            env.git(env.root(), &["clone", "-q", origin.to_str().expect("utf-8"), path.to_str().expect("utf-8")]);
            let repo = env.dir_at(path);
            repo.git(&["config", "user.name", &format!("loop {name}")]);
            repo.git(&["config", "user.email", &format!("{name}@example.invalid")]);
            repo
        };
        let submit = clone("submit");
        let local = clone("local");
        let worker_clones = (1..=workers).map(|i| clone(&format!("w{i}"))).collect();
        let tag = format!("{}-{}", std::process::id(), env.root().file_name().expect("name").to_string_lossy());
        Fixture { env, origin, submit, local, worker_clones, tag }
    }

    /// A `loop` command in `dir` with the real clock (leases and heartbeats measure real time)
    /// and the test's tag.
    pub fn loop_at(&self, dir: &Path) -> Command {
        let mut c = self.env.command(loop_bin());
        c.current_dir(dir).env(TAG_VAR, &self.tag);
        c
    }

    /// `git -C origin.git ARGS`.
    pub fn origin_git(&self, args: &[&str]) -> String {
        self.env.git(&self.origin, args)
    }

    /// The same milestone on the local engine in the `local` clone: `(exit code, status --json)`.
    pub fn run_local(&self, scenario: &str) -> (Option<i32>, serde_json::Value) {
        let mut c = self.loop_at(&self.local);
        c.args(["run", "-m", MILESTONE, "--agent", "sim", "--sim-scenario", scenario, "--json", "-q"])
            .env("LOOP_RUN_ID", "local");
        let out = output_within(c, Duration::from_secs(300), "loop run (local)");
        (out.status.code(), super::json(&out))
    }
}

/// The server on loopback with its data in `<root>/restate-data` (the same on a restart) and
/// its log in `<root>/logs/`; not yet waited for.
pub fn start_server(fx: &Fixture, server: &Path) -> Proc {
    let logs = fx.env.root().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir logs");
    let config = fx.env.root().join("restate.toml");
    std::fs::write(
        &config,
        format!(
            "bind-ip = \"127.0.0.1\"\nbase-dir = \"{}\"\ndisable-telemetry = true\nnode-name = \"n1\"\n\
             [admin]\nbind-ip = \"127.0.0.1\"\n[ingress]\nbind-ip = \"127.0.0.1\"\n",
            fx.env.root().join("restate-data").display()
        ),
    )
    .expect("write config");
    let (env, bin, tag, root) = (fx.env.clone(), server.to_path_buf(), fx.tag.clone(), fx.env.root().to_path_buf());
    Proc::start("server", &logs, move || {
        let mut c = env.command(&bin);
        c.arg("-c").arg(&config).current_dir(&root).env(TAG_VAR, &tag);
        c
    })
}

/// Waits for the server's admin and ingress health.
pub fn wait_server_healthy() {
    wait_healthy(9070, "/health", Duration::from_secs(60));
    wait_healthy(8080, "/restate/health", Duration::from_secs(60));
}

/// Waits up to 10 s for no process of `tag` to be left; returns those that are.
pub fn left_behind(tag: &str) -> Vec<(u32, String)> {
    let until = Instant::now() + Duration::from_secs(10);
    let mut left = processes_tagged(tag);
    while !left.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        left = processes_tagged(tag);
    }
    left
}

/// A server, an endpoint and workers over a [`Fixture`].
pub struct Cluster {
    pub fx: Fixture,
    pub server: Proc,
    pub endpoint: Proc,
    pub workers: Vec<Proc>,
    logs: PathBuf,
}

impl Cluster {
    /// Starts the server (data in `<root>/restate-data`), waits for its health, starts and waits
    /// for the endpoint to register, then one worker per worker clone with `worker_args`.
    pub fn start(fx: Fixture, server: &Path, worker_args: &[&str]) -> Cluster {
        let logs = fx.env.root().join("logs");
        let server = start_server(&fx, server);
        let mut cluster = Cluster { fx, server, endpoint: Proc::start_none(), workers: Vec::new(), logs };
        cluster.wait_server();
        let (env, tag, root) = (cluster.fx.env.clone(), cluster.fx.tag.clone(), cluster.fx.env.root().to_path_buf());
        cluster.endpoint = Proc::start("endpoint", &cluster.logs, move || {
            let mut c = env.command(loop_bin());
            c.args(["restate", "serve", "--listen", LISTEN, "--admin", ADMIN]).current_dir(&root).env(TAG_VAR, &tag);
            c
        });
        cluster.wait_endpoint();
        for i in 0..cluster.fx.worker_clones.len() {
            let w = cluster.worker(i, worker_args);
            cluster.workers.push(w);
        }
        cluster
    }

    /// A worker in worker clone `i` (not yet in [`Cluster::workers`]).
    pub fn worker(&self, i: usize, args: &[&str]) -> Proc {
        let (env, tag) = (self.fx.env.clone(), self.fx.tag.clone());
        let dir = self.fx.worker_clones[i].path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Proc::start(&format!("w{}", i + 1), &self.logs, move || {
            let mut c = env.command(loop_bin());
            c.args(["worker", "--ingress", INGRESS]).args(&args).current_dir(&dir).env(TAG_VAR, &tag);
            c
        })
    }

    pub fn wait_server(&mut self) {
        wait_server_healthy();
    }

    pub fn wait_endpoint(&mut self) {
        self.endpoint.wait_line("that it serves", Duration::from_secs(60), |l| {
            l.contains("loop: restate endpoint serving on http://127.0.0.1:9080")
        });
    }

    /// `loop run -m M1-core --engine restate` from the submitting clone, with `extra` args;
    /// waits for it (up to `limit`).
    pub fn run(&self, scenario: &str, extra: &[&str], limit: Duration) -> Output {
        output_within(self.run_cmd(scenario, extra), limit, "loop run --engine restate")
    }

    pub fn run_cmd(&self, scenario: &str, extra: &[&str]) -> Command {
        let mut c = self.fx.loop_at(&self.fx.submit);
        c.args(["run", "-m", MILESTONE, "--engine", "restate", "--ingress", INGRESS])
            .args(["--agent", "sim", "--sim-scenario", scenario])
            .args(extra)
            .env("LOOP_RUN_ID", "dist");
        c
    }

    /// `loop run --engine restate` started in the background (output in the log `run`).
    pub fn submit(&self, scenario: &str, extra: &[&str]) -> Proc {
        let (env, tag, dir) = (self.fx.env.clone(), self.fx.tag.clone(), self.fx.submit.path().to_path_buf());
        let mut args: Vec<String> = ["run", "-m", MILESTONE, "--engine", "restate", "--ingress", INGRESS]
            .into_iter()
            .chain(["--agent", "sim", "--sim-scenario", scenario])
            .map(String::from)
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::start("run", &self.logs, move || {
            let mut c = env.command(loop_bin());
            c.args(&args).current_dir(&dir).env(TAG_VAR, &tag).env("LOOP_RUN_ID", "dist");
            c
        })
    }

    /// Every worker log line so far, each prefixed with its worker's name.
    pub fn worker_lines(&self) -> Vec<(String, String)> {
        self.workers
            .iter()
            .flat_map(|w| w.log().lines().map(|l| (w.name.clone(), l.to_string())).collect::<Vec<_>>())
            .collect()
    }

    /// Waits until some worker prints a line `pred` accepts: (worker index, line).
    pub fn wait_worker_line(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> (usize, String) {
        let until = Instant::now() + limit;
        loop {
            for (i, w) in self.workers.iter().enumerate() {
                if let Some(l) = w.log().lines().find(|l| pred(l)) {
                    return (i, l.to_string());
                }
            }
            if Instant::now() >= until {
                let all: Vec<String> = self.worker_lines().into_iter().map(|(w, l)| format!("{w}: {l}")).collect();
                panic!("no worker printed {what} within {limit:?}:\n{}", all.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops workers, endpoint and server (SIGTERM, then SIGKILL), then asserts that no process
    /// of this test is left: the killed ones' children included.
    pub fn shutdown(mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        self.endpoint.stop();
        self.server.stop();
        let left = left_behind(&self.fx.tag);
        assert!(left.is_empty(), "processes of the test outlived it: {left:?}");
    }

    /// The logs of every process, for a failing assertion's message.
    pub fn dump_logs(&self) -> String {
        let mut s = String::new();
        for p in std::iter::once(&self.server).chain(std::iter::once(&self.endpoint)).chain(&self.workers) {
            let log = p.log();
            // The server's log is long and mostly partition bookkeeping: its end says enough.
            let keep = if p.name == "server" { 20 } else { 200 };
            let tail: Vec<&str> = log.lines().rev().take(keep).collect();
            s.push_str(&format!("--- {} ({})\n", p.name, p.log_path().display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Cluster {
    /// A failing test shows what every process said (the temp dir goes with the test).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump_logs());
        }
    }
}

impl Proc {
    /// A placeholder before the real process is started.
    fn start_none() -> Proc {
        Proc {
            name: "none".into(),
            make: Box::new(|| Command::new("true")),
            child: None,
            log: PathBuf::new(),
            starts: 0,
        }
    }
}
