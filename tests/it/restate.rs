//! Runs on Restate through the real binaries: the server from npm (`LOOP_TEST_RESTATE_SERVER`),
//! `loop restate serve`, two `loop worker`s in clones of one bare remote, and `loop run --engine
//! restate` from a third clone, each test in a network namespace of its own
//! (`support::restate`).
//!
//! What they prove: a distributed run equals a local one (end states, branch contents, the
//! machine events per issue, replay on the mirror); each fault (a worker, the endpoint or the
//! server killed with SIGKILL; a worker stopped past its lease; a worker asked to stop mid-phase)
//! ends in the uninterrupted run's states with `replay` passing on the mirror and no process
//! left behind; a late result is refused, never applied; `loop sync` fills a mirror and is
//! idempotent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::restate::*;
use crate::support::*;

const RUN_LIMIT: Duration = Duration::from_secs(180);
const LONG: Duration = Duration::from_secs(120);

/// The demo's outcomes with each phase of `issue` taking `delay_ms` (the simulated agent sleeps
/// before it answers), so a test can act while that phase runs.
fn slow(issue: &str, delay_ms: u64) -> String {
    let mut v: Value = serde_json::from_str(DEMO_SCENARIO).expect("demo scenario");
    let entry = v.as_object_mut().expect("object").entry(issue).or_insert_with(|| serde_json::json!({}));
    entry["delay_ms"] = delay_ms.into();
    serde_json::to_string_pretty(&v).expect("json")
}

/// The uninterrupted end states, from the same milestone on the local engine.
fn baseline(fx: &Fixture) -> Vec<(String, String, u64)> {
    let (code, status) = fx.run_local("scenario.json");
    assert_eq!(code, Some(exit::NOT_ALL_DONE), "the demo ends with one issue Capped: {status}");
    states(&status)
}

fn status_of(fx: &Fixture, dir: &Path, run: Option<&str>) -> Value {
    let mut c = fx.loop_at(dir);
    c.arg("status").args(run).arg("--json");
    let out = output_within(c, LONG, "loop status");
    assert_eq!(out.status.code(), Some(exit::OK), "status: {:?}", text(&out));
    json(&out)
}

/// `replay RUN --json` in `dir`; asserts that it passes (exit 0, verified).
fn replay_ok(fx: &Fixture, dir: &Path, run: &str) -> Value {
    let mut c = fx.loop_at(dir);
    c.args(["replay", run, "--json"]);
    let out = output_within(c, LONG, "loop replay");
    assert_eq!(out.status.code(), Some(exit::OK), "replay of {run} in {}: {:?}", dir.display(), text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true, "{v}");
    v
}

/// Hashes, paths and times differ between hosts and runs by nature; everything else of a
/// machine event must not.
fn normalise(v: &Value, run: &str) -> Value {
    const HOST_FIELDS: &[&str] = &["time", "duration_ms", "path", "worktree", "log", "host", "pid", "pgid"];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !HOST_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalise(v, run)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, run)).collect()),
        Value::String(s) if s.starts_with('/') => Value::String("<path>".into()),
        Value::String(s) if s.len() >= 40 && s.chars().all(|c| c.is_ascii_hexdigit()) => Value::String("<hash>".into()),
        Value::String(s) => Value::String(s.replace(run, "<run>")),
        other => other.clone(),
    }
}

/// Per issue, its machine events in order (event with payload, the state it led to, the
/// commands decided), normalised.
fn machine_events(replay: &Value) -> BTreeMap<String, Vec<Value>> {
    let run = replay["run_id"].as_str().expect("run_id");
    let mut per: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in replay["timeline"].as_array().expect("timeline") {
        let b = &r["body"];
        if b["kind"] != "issue" {
            continue;
        }
        let issue = b["issue"].as_str().expect("issue").to_string();
        let e = serde_json::json!({"event": b["event"], "to": b["to"], "commands": b["commands"]});
        per.entry(issue).or_default().push(normalise(&e, run));
    }
    per
}

/// The records of `issue` whose event is `name` (e.g. `work_finished`) for `phase`.
fn results(replay: &Value, issue: &str, name: &str, phase: &str) -> Vec<Value> {
    replay["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|r| {
            let b = &r["body"];
            b["kind"] == "issue" && b["issue"] == issue && b["event"]["event"] == name && b["event"]["phase"] == phase
        })
        .cloned()
        .collect()
}

/// Every file of `rev` in the repo at `git_dir` with its text, the run id replaced.
fn contents(env: &TestEnvironment, git_dir: &Path, rev: &str, run: &str) -> BTreeMap<String, String> {
    let files = env.git(git_dir, &["ls-tree", "-r", "--name-only", rev]);
    files
        .lines()
        .map(|f| (f.to_string(), env.git(git_dir, &["show", &format!("{rev}:{f}")]).replace(run, "<run>")))
        .collect()
}

/// What every run on the cluster must end with: the submitter's exit code, the uninterrupted
/// run's states in the mirror (`status`), `replay` passing on the mirror. Returns the run id
/// and the replay.
fn ends_as_uninterrupted(cluster: &Cluster, run: &mut Proc, expected: &[(String, String, u64)]) -> (String, Value) {
    let status = run.wait(RUN_LIMIT).unwrap_or_else(|| panic!("the run did not end:\n{}", run.log()));
    assert_eq!(
        status.code(),
        Some(exit::NOT_ALL_DONE),
        "the run's exit code is the local one's (one issue Capped)\nrun:\n{}",
        run.log()
    );
    let st = status_of(&cluster.fx, &cluster.fx.submit, None);
    let id = st["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(states(&st), expected, "end states of the mirror");
    let replay = replay_ok(&cluster.fx, &cluster.fx.submit, &id);
    (id, replay)
}

/// The line a worker prints when it takes a phase of `issue` (attempt `attempt`):
/// `loop worker: took RUN/ISSUE/N run_phase (attempt 1)`.
fn took_phase(issue: &str, attempt: u64) -> impl Fn(&str) -> bool + '_ {
    move |l: &str| {
        l.starts_with("loop worker: took ")
            && l.contains(&format!("/{issue}/"))
            && l.contains(" run_phase ")
            && l.ends_with(&format!("(attempt {attempt})"))
    }
}

/// The job id (`RUN/ISSUE/N`) of a `took` line.
fn job_of(took_line: &str) -> String {
    took_line.strip_prefix("loop worker: took ").and_then(|r| r.split(' ').next()).expect("a took line").to_string()
}

/// The demo milestone on the local engine and on Restate with two workers (`--jobs 2`) ends in
/// the same states, with the same files on every issue's branch and the same machine events
/// per issue; the mirror replays.
#[test]
fn a_distributed_run_equals_a_local_one() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[]);
    let (code, local) = fx.run_local("scenario.json");
    assert_eq!(code, Some(exit::NOT_ALL_DONE), "{local}");
    let local_replay = replay_ok(&fx, &fx.local, "local");
    let cluster = Cluster::start(fx, &server, &["--jobs", "2"]);
    let out = cluster.run("scenario.json", &["--json", "-q"], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let dist = json(&out);
    let run = dist["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(states(&dist), states(&local), "run --json");
    let fx = &cluster.fx;
    let mirror = status_of(fx, &fx.submit, Some(&run));
    assert_eq!(states(&mirror), states(&local), "status --json on the mirror");

    // The same files on every issue's branch: the local clone's against what workers pushed.
    for issue in local["issues"].as_array().expect("issues") {
        let id = issue["id"].as_str().expect("id");
        let branch = issue["branch"].as_str().expect("branch");
        let dist_branch = mirror["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).expect("issue")["branch"]
            .as_str()
            .expect("branch")
            .to_string();
        let here = contents(&fx.env, &fx.local, branch, "local");
        let there = contents(&fx.env, &fx.origin, &dist_branch, &run);
        assert_eq!(here, there, "{id}: local {branch} and pushed {dist_branch} differ");
        assert!(here.keys().any(|f| f.starts_with("loop-sim/")), "{id}: the agent's work is on the branch");
    }

    let dist_replay = replay_ok(fx, &fx.submit, &run);
    let (a, b) = (machine_events(&local_replay), machine_events(&dist_replay));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (issue, events) in &a {
        assert_eq!(events, &b[issue], "{issue}: the machine events differ");
    }
    assert!(
        cluster.worker_lines().iter().any(|(_, l)| l.starts_with("loop worker: took ")),
        "the workers ran the phases"
    );
    // Every job was completed: the queue is empty, as `loop restate jobs` shows (a call
    // without input, which the ingress refuses if it carries a content type).
    let mut c = fx.loop_at(&fx.submit);
    c.args(["restate", "jobs", "--ingress", INGRESS, "--json"]);
    let out = output_within(c, LONG, "loop restate jobs");
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    assert_eq!(json(&out), serde_json::json!([]), "the queue after the run");
    cluster.shutdown();
}

/// `kill -9` of the worker running a phase: the job's lease lapses and the other worker takes
/// it again and completes it.
#[test]
fn a_killed_worker_s_job_goes_to_the_other_after_its_lease() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[("slow.json", &slow("ORB-1", 4000))]);
    let expected = baseline(&fx);
    let mut cluster = Cluster::start(fx, &server, &["--jobs", "1", "--lease", "3"]);
    let mut run = cluster.submit("slow.json", &["-q"]);
    let (a, line) = cluster.wait_worker_line("a phase of ORB-1", LONG, took_phase("ORB-1", 1));
    let job = job_of(&line);
    let killed_at = Instant::now();
    cluster.workers[a].kill9();
    let b = 1 - a;
    let again = format!("loop worker: took {job} run_phase (attempt 2)");
    cluster.workers[b].wait_line("the job taken again", LONG, |l| l == again);
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "taken again only after the 3 s lease");
    cluster.workers[b].wait_line("the job done", LONG, |l| l == format!("loop worker: {job} run_phase done"));
    ends_as_uninterrupted(&cluster, &mut run, &expected);
    cluster.shutdown();
}

/// `kill -9` of the endpoint while phases run, then a restart: the run goes on by itself.
#[test]
fn the_endpoint_killed_and_restarted_loses_nothing() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[("slow.json", &slow("ORB-2", 1500))]);
    let expected = baseline(&fx);
    let mut cluster = Cluster::start(fx, &server, &["--jobs", "2", "--lease", "3"]);
    let mut run = cluster.submit("slow.json", &["-q"]);
    cluster.wait_worker_line("a phase of ORB-2", LONG, took_phase("ORB-2", 1));
    cluster.endpoint.kill9();
    std::thread::sleep(Duration::from_secs(1));
    cluster.endpoint.restart();
    cluster.wait_endpoint();
    ends_as_uninterrupted(&cluster, &mut run, &expected);
    cluster.shutdown();
}

/// `kill -9` of the server while phases run, then a restart on the same data: the run goes on.
#[test]
fn the_server_killed_and_restarted_loses_nothing() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[("slow.json", &slow("ORB-2", 1500))]);
    let expected = baseline(&fx);
    let mut cluster = Cluster::start(fx, &server, &["--jobs", "2", "--lease", "3"]);
    let mut run = cluster.submit("slow.json", &["-q"]);
    cluster.wait_worker_line("a phase of ORB-2", LONG, took_phase("ORB-2", 1));
    cluster.server.kill9();
    std::thread::sleep(Duration::from_secs(1));
    cluster.server.restart();
    cluster.wait_server();
    ends_as_uninterrupted(&cluster, &mut run, &expected);
    cluster.shutdown();
}

/// A worker stopped (SIGSTOP) past its lease while the other takes and finishes the job, then
/// continued: its late result is refused. The journal holds one result for that phase, and the
/// pushed branch holds the commit of the worker that kept its lease.
#[test]
fn a_worker_back_after_its_lease_cannot_overwrite() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[("slow.json", &slow("ORB-1", 2000))]);
    let expected = baseline(&fx);
    let mut cluster = Cluster::start(fx, &server, &["--jobs", "1", "--lease", "3"]);
    let mut run = cluster.submit("slow.json", &["-q"]);
    // ORB-1's first phase is its dev.
    let (a, line) = cluster.wait_worker_line("ORB-1's dev", LONG, took_phase("ORB-1", 1));
    let job = job_of(&line);
    cluster.workers[a].signal(libc::SIGSTOP);
    let b = 1 - a;
    let again = format!("loop worker: took {job} run_phase (attempt 2)");
    cluster.workers[b].wait_line("ORB-1's dev taken again", LONG, |l| l == again);
    cluster.workers[b].wait_line("ORB-1's dev done", LONG, |l| l == format!("loop worker: {job} run_phase done"));
    // A commit made a second later differs from the other worker's even with the same tree.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.workers[a].signal(libc::SIGCONT);
    let refused = format!("loop worker: {job} run_phase refused (lease lapsed)");
    cluster.workers[a].wait_line("its late result refused", LONG, |l| l == refused);
    let late_done = format!("loop worker: {job} run_phase done");
    assert!(!cluster.workers[a].log().lines().any(|l| l == late_done), "the late result was not taken");
    let (_, replay) = ends_as_uninterrupted(&cluster, &mut run, &expected);
    let finished = results(&replay, "ORB-1", "work_finished", "dev");
    assert_eq!(finished.len(), 1, "one result for ORB-1's dev: {finished:?}");
    let recorded = finished[0]["body"]["evidence"]["commit"].as_str().expect("the result names its commit").to_string();
    let fx = &cluster.fx;
    let branch = "loop/M1-core/ORB-1";
    let pushed = fx.origin_git(&["rev-parse", branch]);
    let held = fx.env.git_output(&fx.origin, &["merge-base", "--is-ancestor", &recorded, &pushed]);
    assert!(held.status.success(), "the pushed {branch} ({pushed}) holds the recorded commit {recorded}");
    // The branch holds one dev commit, the recorded one; whatever dev commit the late worker
    // made (its reflog remembers) never reached the remote.
    let dev_commits = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, subject)| subject.starts_with("ORB-1: dev"))
            .map(|(h, _)| h.to_string())
            .collect()
    };
    let on_remote = fx.env.git_output(&fx.origin, &["log", "--format=%H %s", branch]);
    assert_eq!(dev_commits(&on_remote), [recorded.as_str()], "the pushed {branch} has one dev commit");
    let late = fx.env.git_output(&fx.worker_clones[a], &["reflog", "--format=%H %s", branch]);
    for c in dev_commits(&late).into_iter().filter(|c| *c != recorded) {
        let reached = fx.env.git_output(&fx.origin, &["cat-file", "-e", &format!("{c}^{{commit}}")]);
        assert!(!reached.status.success(), "the late worker's commit {c} reached the remote");
    }
    cluster.shutdown();
}

/// SIGTERM to a worker mid-phase: a phase shorter than `--grace` finishes, a longer one is
/// stopped at the grace and handed back (the other worker then runs it). Either way the worker
/// exits and the phase has one result.
fn stop_mid_phase(delay_ms: u64, grace: &str, how: &str) {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[("slow.json", &slow("ORB-1", delay_ms))]);
    let expected = baseline(&fx);
    let mut cluster = Cluster::start(fx, &server, &["--jobs", "1", "--lease", "3", "--grace", grace]);
    let mut run = cluster.submit("slow.json", &["-q"]);
    let (a, line) = cluster.wait_worker_line("ORB-1's dev", LONG, took_phase("ORB-1", 1));
    let job = job_of(&line);
    let asked = Instant::now();
    let grace_secs: u64 = grace.parse().expect("seconds");
    let exited = cluster.workers[a].sigterm(Duration::from_secs(grace_secs + 15));
    assert!(exited.is_some(), "the worker exits after SIGTERM\n{}", cluster.workers[a].log());
    assert!(
        asked.elapsed() < Duration::from_secs(grace_secs + 5),
        "within the grace ({grace} s): {:?}",
        asked.elapsed()
    );
    let ended = format!("loop worker: {job} run_phase {how}");
    assert!(cluster.workers[a].log().lines().any(|l| l == ended), "{ended:?}:\n{}", cluster.workers[a].log());
    let (_, replay) = ends_as_uninterrupted(&cluster, &mut run, &expected);
    assert_eq!(results(&replay, "ORB-1", "work_finished", "dev").len(), 1, "one result for ORB-1's dev");
    cluster.shutdown();
}

#[test]
fn a_worker_asked_to_stop_finishes_a_phase_within_its_grace() {
    stop_mid_phase(2000, "10", "done");
}

#[test]
fn a_worker_asked_to_stop_hands_back_a_phase_longer_than_its_grace() {
    stop_mid_phase(8000, "1", "interrupted; handed back");
}

/// `loop sync` fills a mirror that missed records: a `--detach`ed run (nobody mirrors it) and a
/// mirror whose run directory was deleted. A second sync adds nothing.
#[test]
fn sync_fills_a_mirror_and_is_idempotent() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let fx = Fixture::new(2, &[]);
    let expected = baseline(&fx);
    let cluster = Cluster::start(fx, &server, &["--jobs", "2"]);
    let fx = &cluster.fx;
    let out = cluster.run("scenario.json", &["--detach"], LONG);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    let run = stdout.trim().to_string();
    assert!(!run.is_empty() && !run.contains(char::is_whitespace), "--detach prints the run id: {stdout:?}");

    let sync = |what: &str| {
        let mut c = fx.loop_at(&fx.submit);
        c.args(["sync", &run, "--ingress", INGRESS, "--json"]);
        let out = output_within(c, LONG, what);
        assert_eq!(out.status.code(), Some(exit::OK), "{what}: {:?}", text(&out));
        json(&out)
    };
    // Sync until the mirror shows the run's end (it runs on while we sync).
    let until = Instant::now() + RUN_LIMIT;
    let mut added = 0;
    loop {
        let v = sync("loop sync");
        assert_eq!(v["run"], run.as_str(), "{v}");
        added += v["added"].as_u64().expect("added");
        if v["finished"] == true {
            break;
        }
        assert!(Instant::now() < until, "the run never finished: {v}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(added > 0, "the detached run's records came by sync");
    assert_eq!(states(&status_of(fx, &fx.submit, Some(&run))), expected, "the mirror's end states");
    let full = replay_ok(fx, &fx.submit, &run);
    let last = |v: &Value| v["timeline"].as_array().expect("timeline").last().expect("a record")["hash"].clone();
    let journal = fx.submit.join(".loop/runs").join(&run).join("journal.log");
    let size = std::fs::metadata(&journal).expect("the mirror's journal").len();

    let second = sync("a second loop sync");
    assert_eq!(
        (&second["added"], &second["records"], &second["finished"]),
        (&0.into(), &full["records"], &true.into())
    );
    let again = replay_ok(fx, &fx.submit, &run);
    assert_eq!((&again["records"], last(&again)), (&full["records"], last(&full)), "a second sync adds nothing");
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), size, "a second sync appends nothing");

    // A mirror that lost its run entirely is filled again, with the same chain.
    std::fs::remove_dir_all(fx.submit.join(".loop/runs").join(&run)).expect("delete the mirror");
    let refill = sync("loop sync of a deleted mirror");
    assert_eq!(refill["records"], full["records"], "{refill}");
    let refilled = replay_ok(fx, &fx.submit, &run);
    assert_eq!((&refilled["records"], last(&refilled)), (&full["records"], last(&full)), "the same records");
    assert_eq!(states(&status_of(fx, &fx.submit, Some(&run))), expected);
    cluster.shutdown();
}

/// A JSON call to the test server's ingress (`body` None: a call without input).
fn call(agent: &ureq::Agent, path: &str, body: Option<Value>) -> Value {
    let url = format!("{INGRESS}/{path}");
    let mut resp = match body {
        Some(b) => agent.post(&url).header("content-type", "application/json").send(b.to_string()),
        None => agent.post(&url).send_empty(),
    }
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    let text = resp.body_mut().read_to_string().expect("an answer");
    if text.is_empty() {
        // A handler that returns nothing.
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

fn a_job(id: &str) -> Value {
    serde_json::json!({ "id": id, "run_id": "r", "issue": "X-1", "command": "prepare", "awakeable": "none" })
}

/// A take that waits gets a job handed over as it is queued: its answer is that job's lease,
/// not the empty answer its wait would end in (the wait is a minute; the test's client gives
/// up after two). A take that gave up is forgotten: the next job queued is free for anyone,
/// first attempt, not handed to the gone waiter. A completion that takes the next job is
/// fenced as a plain one.
#[test]
fn a_waiting_take_gets_the_job_queued_and_a_take_that_gave_up_is_forgotten() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    let cluster = Cluster::start(Fixture::new(0, &[]), &server, &[]);
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
    let ask = |wait_ms: u64| serde_json::json!({ "take": { "worker": "t", "lease_ms": 60_000 }, "wait_ms": wait_ms, "logs": [] });
    let waiter = {
        let (agent, ask) = (agent.clone(), ask(60_000));
        std::thread::spawn(move || call(&agent, "LoopJobs/q/wait_take", Some(ask)))
    };
    let until = Instant::now() + LONG;
    while call(&agent, "LoopJobs/q/waiting", None) != serde_json::json!(1) {
        assert!(Instant::now() < until, "the take never waited:\n{}", cluster.dump_logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    call(&agent, "LoopJobs/q/enqueue", Some(a_job("r/X-1/1")));
    let taken = waiter.join().expect("the waiting take");
    assert_eq!(taken["job"]["id"], "r/X-1/1", "{taken}");
    assert_eq!(taken["token"], 1, "{taken}");
    assert_eq!(call(&agent, "LoopJobs/q/waiting", None), 0);

    let gave_up = call(&agent, "LoopJobs/q/wait_take", Some(ask(200)));
    assert!(gave_up.is_null(), "nothing was queued: {gave_up}");
    assert_eq!(call(&agent, "LoopJobs/q/waiting", None), 0, "the waiter that gave up is forgotten");
    call(&agent, "LoopJobs/q/enqueue", Some(a_job("r/X-1/2")));
    let take = serde_json::json!({ "worker": "u", "lease_ms": 60_000 });
    let lease = call(&agent, "LoopJobs/q/take", Some(take));
    assert_eq!(lease["job"]["id"], "r/X-1/2", "the job is free: {lease}");
    assert_eq!(lease["token"], 1, "its first attempt: {lease}");

    // A completion that takes the next job in the same call is fenced as any: a stale attempt
    // is refused and the job stays with its holder; the next job is leased all the same.
    call(&agent, "LoopJobs/q/enqueue", Some(a_job("r/X-1/3")));
    let stale = serde_json::json!({
        "done": { "job_id": "r/X-1/2", "token": 0, "entries": [] },
        "take": { "worker": "v", "lease_ms": 60_000 },
    });
    let answer = call(&agent, "LoopJobs/q/complete_take", Some(stale));
    assert_eq!(answer["accepted"], false, "{answer}");
    assert_eq!(answer["next"]["job"]["id"], "r/X-1/3", "{answer}");
    let jobs = call(&agent, "LoopJobs/q/list", None);
    let held: Vec<(&str, &str)> = jobs
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| (s["job"]["id"].as_str().unwrap_or(""), s["holder"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(held, [("r/X-1/1", "t"), ("r/X-1/2", "u"), ("r/X-1/3", "v")], "{jobs}");
    cluster.shutdown();
}
