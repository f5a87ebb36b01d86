//! `loop bench`'s Restate rows (feature `restate`): what Restate adds per transition, and how a
//! milestone scales with workers. Everything runs inside a network namespace of its own with
//! only loopback (the server's start-up version check cannot leave the machine): the outer bench
//! re-executes `loop bench --only restate-inner` under `unshare --net` and reads its rows.
//!
//! The server is the pinned npm package (`LOOP_RESTATE_SERVER`, else
//! `.tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchError, Row};

fn io<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Io(e.to_string())
}

/// The server binary, if installed.
pub fn server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LOOP_RESTATE_SERVER") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(".tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server");
    p.is_file().then(|| std::path::absolute(p).ok()).flatten()
}

/// The outer half: runs the inner bench in a namespace of its own and returns its rows.
pub fn rows(quick: bool) -> Result<Vec<Row>, BenchError> {
    let exe = std::env::current_exe().map_err(io)?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"]).arg(exe).args(["bench", "--json", "--only", "restate-inner"]);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(s) = server_bin() {
        cmd.env("LOOP_RESTATE_SERVER", s);
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().map_err(io)?;
    if !out.status.success() {
        return Err(BenchError::Io(format!("the Restate bench (in its own network namespace) failed: {}", out.status)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io)?;
    let mut rows = Vec::new();
    for r in v["rows"].as_array().into_iter().flatten() {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            id: if s("id") == "restate-scaling" { "restate-scaling" } else { "restate-transition" },
            what: s("what"),
            loop_value: f("loop_value"),
            baseline_value: f("baseline_value"),
            unit: if s("unit") == "s" { "s" } else { "ms/transition" },
            baseline: s("baseline"),
            ratio: f("ratio"),
            goal: s("goal"),
            met: r["met"].as_bool().unwrap_or(false),
            notes: r["notes"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(String::from)).collect(),
        });
    }
    Ok(rows)
}

/// A child killed (its whole process group) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Proc, BenchError> {
    let f = std::fs::File::create(log).map_err(io)?;
    let child =
        cmd.stdin(Stdio::null()).stdout(f.try_clone().map_err(io)?).stderr(f).process_group(0).spawn().map_err(io)?;
    Ok(Proc(child))
}

fn git(dir: &Path, args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).stdin(Stdio::null()).output().map_err(io)?;
    if !out.status.success() {
        return Err(BenchError::Io(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> Result<(), BenchError> {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(BenchError::Io(format!("timed out waiting for {what}")))
}

/// A call without input answers 2xx (no content type: the ingress refuses one on such a call).
fn post_ok(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    agent.post(url).send_empty().is_ok()
}

fn get_ok(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    agent.get(url).call().is_ok()
}

/// A milestone of `chains` chains of `len` issues, every phase taking `delay_ms`.
fn milestone(dir: &Path, chains: usize, len: usize, delay_ms: u64) -> Result<PathBuf, BenchError> {
    let docs = dir.join("docs/projects/bench/issues");
    std::fs::create_dir_all(&docs).map_err(io)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    let mut scenario = serde_json::Map::new();
    for c in 0..chains {
        for i in 0..len {
            let id = format!("C{c}-{i}");
            let deps = if i == 0 { String::new() } else { format!("blocked_by: [C{c}-{}]\n", i - 1) };
            let text = format!("---\nid: {id}\ntitle: chain {c} issue {i}\nmilestone: M1\n{deps}---\n\n# {id}\n");
            std::fs::write(docs.join(format!("{id}.md")), text).map_err(io)?;
            if delay_ms > 0 {
                scenario.insert(id, serde_json::json!({ "delay_ms": delay_ms }));
            }
        }
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "bench docs"])?;
    let path = dir.with_extension("scenario.json");
    std::fs::write(&path, serde_json::Value::Object(scenario).to_string()).map_err(io)?;
    Ok(path)
}

/// One measured run: the milestone on Restate with `workers` workers of `jobs` slots each, or
/// on the local engine with `--jobs jobs` when `workers` is 0. Returns the wall time and the
/// number of machine transitions the journal holds.
fn one_run(
    base: &Path,
    name: &str,
    chains: usize,
    len: usize,
    delay_ms: u64,
    workers: usize,
    jobs: usize,
) -> Result<Run, BenchError> {
    let exe = std::env::current_exe().map_err(io)?;
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let src = dir.join("src");
    let scenario = milestone(&src, chains, len, delay_ms)?;
    let envs = [
        ("GIT_AUTHOR_NAME", "bench"),
        ("GIT_AUTHOR_EMAIL", "bench@loop.invalid"),
        ("GIT_COMMITTER_NAME", "bench"),
        ("GIT_COMMITTER_EMAIL", "bench@loop.invalid"),
    ];
    let jobs_s = jobs.to_string();
    let mut procs: Vec<Proc> = Vec::new();
    let submitter = if workers == 0 {
        src.clone()
    } else {
        let remote = dir.join("remote.git");
        git(&dir, &["clone", "-q", "--bare", &src.display().to_string(), &remote.display().to_string()])?;
        let server = server_bin().ok_or_else(|| BenchError::Io("the Restate server is not installed".into()))?;
        let config = dir.join("server.toml");
        let data = dir.join("restate-data");
        std::fs::write(
            &config,
            format!(
                "bind-ip = \"127.0.0.1\"\nbase-dir = \"{}\"\ndisable-telemetry = true\nnode-name = \"bench\"\n\
                 [admin]\nbind-ip = \"127.0.0.1\"\n[ingress]\nbind-ip = \"127.0.0.1\"\n",
                data.display()
            ),
        )
        .map_err(io)?;
        procs.push(spawn(Command::new(server).arg("-c").arg(&config), &dir.join("server.log"))?);
        wait_for("the server", || get_ok("http://127.0.0.1:9070/health"))?;
        let ep_log = dir.join("endpoint.log");
        procs.push(spawn(Command::new(&exe).args(["restate", "serve"]), &ep_log)?);
        wait_for("the endpoint", || std::fs::read_to_string(&ep_log).is_ok_and(|s| s.contains("serving on")))?;
        for w in 0..workers {
            let clone = dir.join(format!("w{w}"));
            git(&dir, &["clone", "-q", &remote.display().to_string(), &clone.display().to_string()])?;
            let mut cmd = Command::new(&exe);
            // LOOP_WORKER_TIMES: each job's timings, from which the git transport is summed.
            cmd.args(["worker", "--jobs", &jobs_s]).current_dir(&clone).envs(envs).env("LOOP_WORKER_TIMES", "1");
            procs.push(spawn(&mut cmd, &dir.join(format!("w{w}.log")))?);
        }
        // Ready means the ingress routes calls to the endpoint (registration has propagated):
        // the server's start-up is not a transition's cost.
        wait_for("the ingress to reach the endpoint", || post_ok("http://127.0.0.1:8080/LoopJobs/bench-warmup/peek"))?;
        let sub = dir.join("sub");
        git(&dir, &["clone", "-q", &remote.display().to_string(), &sub.display().to_string()])?;
        sub
    };
    let mut cmd = Command::new(&exe);
    cmd.args(["run", "-m", "M1", "--agent", "sim", "-q", "--no-review-doc", "--sim-scenario"])
        .arg(&scenario)
        .args(["--jobs", &jobs_s])
        .current_dir(&submitter)
        .envs(envs)
        .stdin(Stdio::null());
    if workers > 0 {
        cmd.args(["--engine", "restate"]);
    }
    let t = Instant::now();
    let out = cmd.output().map_err(io)?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(BenchError::Io(format!(
            "{name}: loop run failed ({}): {}",
            out.status,
            crate::text::printable(&String::from_utf8_lossy(&out.stderr), 2000)
        )));
    }
    let replay = Command::new(&exe)
        .args(["replay", "--json"])
        .current_dir(&submitter)
        .stdin(Stdio::null())
        .output()
        .map_err(io)?;
    let v: serde_json::Value = serde_json::from_slice(&replay.stdout).map_err(io)?;
    let transitions =
        v["timeline"].as_array().into_iter().flatten().filter(|r| r["body"]["kind"] == "issue").count().max(1) as u64;
    drop(procs);
    let transport = (0..workers)
        .map(|w| std::fs::read_to_string(dir.join(format!("w{w}.log"))).map(|l| transport_ms(&l)).unwrap_or(0))
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run { took, transitions, transport_ms: transport })
}

/// One measured run.
struct Run {
    took: Duration,
    /// Machine transitions in the run's journal.
    transitions: u64,
    /// What the workers spent fetching from and pushing to the shared remote (ms).
    transport_ms: u64,
}

/// The git transport in a worker's log (`LOOP_WORKER_TIMES` lines: "… fetch and sync N ms, …
/// push N ms"): the fetches and pushes a job made to the shared remote.
fn transport_ms(log: &str) -> u64 {
    let field = |line: &str, name: &str| -> u64 {
        line.split(", ")
            .find_map(|f| f.trim().strip_prefix(name).and_then(|r| r.trim().strip_suffix(" ms")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    log.lines()
        .filter(|l| l.starts_with("loop worker: ") && l.contains(": read "))
        .map(|l| field(l, "fetch and sync ") + field(l, "push "))
        .sum()
}

/// The inner half (inside the namespace): the rows.
pub fn inner(quick: bool) -> Result<Vec<Row>, BenchError> {
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().map_err(io)?;
    if !up.success() {
        return Err(BenchError::Io("ip link set lo up failed (the Restate bench needs root for its namespace)".into()));
    }
    let tmp = tempfile::Builder::new().prefix("loop-bench-restate-").tempdir().map_err(io)?;
    let base = tmp.path();
    let mut rows = Vec::new();
    // Per transition: the same milestone of zero-time phases, one issue at a time, locally and
    // on Restate with one worker; what Restate adds, per machine transition.
    let (chains, len) = if quick { (2, 2) } else { (4, 4) };
    let local = one_run(base, "local", chains, len, 0, 0, 1)?;
    let remote = one_run(base, "restate", chains, len, 0, 1, 1)?;
    let (n_local, n_remote) = (local.transitions, remote.transitions);
    let per_local = local.took.as_secs_f64() * 1000.0 / n_local as f64;
    let per_remote = remote.took.as_secs_f64() * 1000.0 / n_remote as f64;
    let added = per_remote - per_local;
    let transport = remote.transport_ms as f64 / n_remote as f64;
    rows.push(Row {
        id: "restate-transition",
        what: format!("time per machine transition, {} issues of zero-time phases, one at a time", chains * len),
        loop_value: per_remote,
        baseline_value: per_local,
        unit: "ms/transition",
        baseline: "the local engine, same milestone".into(),
        ratio: per_local / per_remote,
        goal: "Restate adds ≤ 5 ms per transition".into(),
        met: added <= 5.0,
        notes: vec![
            format!("Restate adds {added:+.2} ms per transition ({n_remote} transitions; local {n_local})"),
            format!(
                "of which {transport:.2} ms per transition is git transport with the shared remote (fetch, push), \
                 {:+.2} ms the rest (queue, workflows, log, the job's set-up)",
                added - transport
            ),
        ],
    });
    // Scaling: 16 issues in 4 chains, phases of 2 s (quick: 1 s): two workers against one.
    let delay = if quick { 1000 } else { 2000 };
    let one = one_run(base, "one-worker", 4, 4, delay, 1, 2)?.took;
    let two = one_run(base, "two-workers", 4, 4, delay, 2, 2)?.took;
    let ratio = two.as_secs_f64() / one.as_secs_f64();
    rows.push(Row {
        id: "restate-scaling",
        what: format!("16 issues in 4 chains, phases of {:.0} s: 2 workers × --jobs 2", delay as f64 / 1000.0),
        loop_value: two.as_secs_f64(),
        baseline_value: one.as_secs_f64(),
        unit: "s",
        baseline: "1 worker × --jobs 2".into(),
        ratio: one.as_secs_f64() / two.as_secs_f64(),
        goal: "≤ 0.6× the wall time of one worker".into(),
        met: ratio <= 0.6,
        notes: vec![format!(
            "{ratio:.2}× the wall time of one worker (two clones on this machine stand for two hosts)"
        )],
    });
    Ok(rows)
}
