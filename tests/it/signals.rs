//! Children never outlive loop (issue #10, part 2): SIGTERM and SIGHUP take the Ctrl-C path,
//! a SIGKILLed loop leaves no agent process behind (not even one that left its process group
//! and ignores SIGTERM), and `resume` kills a recorded group that still lives.
//!
//! "Survivor" means a living process whose working directory is inside the repo's
//! `.loop/worktrees`, read from `/proc/*/cwd`, as the issue was reported.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::*;

/// Processes with their cwd under `<repo>/.loop/worktrees`: `(pid, cwd, cmdline)`.
fn survivors(repo: &Path) -> Vec<(i32, String, String)> {
    let root = repo.join(".loop/worktrees");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) else { continue };
        if cwd.starts_with(&root) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push((pid, cwd.display().to_string(), cmd));
        }
    }
    found
}

/// Waits (15 s at most) until no process has its cwd in a worktree: loop's own short git
/// steps may still be finishing, and the supervisor gives the tree its grace period.
fn assert_no_survivors(repo: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = survivors(repo);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: processes survived in loop's worktrees: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/proc/<pid>/stat`: (state, start time).
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f[0].chars().next()?, f[19].parse().ok()?))
}

/// The process that started at `start` is still running (a zombie or a reused pid is not).
fn alive(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Some((state, s)) if state != 'Z' && s == start)
}

/// Waits until `path` holds a pid, and returns it with its start time.
fn wait_for_pid(path: &Path, what: &str) -> (i32, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            if let Some((_, start)) = stat(pid) {
                return (pid, start);
            }
        }
        assert!(Instant::now() < deadline, "{what} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until_dead(pid: i32, start: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid, start) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) survived");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// A dev phase whose agent leaves a grandchild that double-forks out of its process group
/// (`setsid`), ignores SIGTERM and sits in the worktree, then hangs itself.
fn escaping_agent(pidfile: &Path) -> String {
    format!(
        "shell:(setsid sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 3599' &); exec sleep 3599",
        pidfile.display()
    )
}

fn start_escaping_run(repo: &TestRepo, run_id: &str, pidfile: &Path) -> Child {
    let scenario = serde_json::json!({"ORB-1": {"dev": escaping_agent(pidfile)}}).to_string();
    write_committed(repo, "escape.json", &scenario);
    loop_cmd(repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "escape.json", "--phase-timeout", "120", "-q"])
        .env("LOOP_RUN_ID", run_id)
        .spawn()
        .unwrap()
}

/// SIGTERM, SIGHUP or SIGINT: exit 128+N, `interrupted` journaled for the run (naming the
/// signal) and the issue in flight, and nothing left: loop waits for the supervisor, which
/// ends only when every process below it is gone, so this holds the moment loop has exited.
fn stopping_signal_case(sig: &str, code: i32) {
    let repo = demo_repo();
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("grandchild.pid");
    let mut child = start_escaping_run(&repo, "sig", &pidfile);
    let (gc, gc_start) = wait_for_pid(&pidfile, "the escaping grandchild");
    assert!(!survivors(&repo).is_empty(), "the agent runs in its worktree");
    kill(child.id() as i32, sig);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "SIG{sig}");
    assert!(!alive(gc, gc_start), "SIG{sig}: the grandchild that left its group and ignores SIGTERM survived");
    let left = survivors(&repo);
    assert!(left.is_empty(), "SIG{sig}: {left:#?}");

    let st = json(&loop_cmd(&repo).args(["status", "sig", "--json"]).output().unwrap());
    assert_eq!(st["interrupted"], true, "{st}");
    let r = json(&loop_cmd(&repo).args(["replay", "sig", "--json"]).output().unwrap());
    let timeline = r["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|x| x["body"]["kind"] == "run_interrupted"
            && x["body"]["reason"].as_str().unwrap().contains(&format!("SIG{sig}"))),
        "{r}"
    );
    assert!(
        timeline.iter().any(|x| x["body"]["issue"] == "ORB-1" && x["body"]["event"]["event"] == "interrupted"),
        "{r}"
    );
    assert!(timeline.iter().any(|x| x["body"]["kind"] == "process_group" && x["body"]["issue"] == "ORB-1"), "{r}");
}

#[test]
fn sigterm_is_journaled_as_interrupted_exits_143_and_leaves_no_process() {
    stopping_signal_case("TERM", exit::TERMINATED);
}

#[test]
fn sighup_is_journaled_as_interrupted_exits_129_and_leaves_no_process() {
    stopping_signal_case("HUP", exit::HANGUP);
}

#[test]
fn sigint_stops_even_a_grandchild_that_left_its_group() {
    stopping_signal_case("INT", exit::INTERRUPTED);
}

#[test]
fn sigkill_of_loop_leaves_no_process_not_even_one_that_left_its_group() {
    let repo = demo_repo();
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("grandchild.pid");
    let mut child = start_escaping_run(&repo, "killed", &pidfile);
    let (gc, gc_start) = wait_for_pid(&pidfile, "the escaping grandchild");
    kill(child.id() as i32, "KILL");
    assert_eq!(child.wait().unwrap().code(), None);
    wait_until_dead(gc, gc_start, "the grandchild that left its group and ignores SIGTERM");
    assert_no_survivors(&repo, "after SIGKILL");
}

/// `loop` and the phase's supervisor SIGKILLed together (an OOM kill, `pkill -9 loop`): the
/// agent dies with its supervisor, but a process it started in its group lives on under init.
/// `resume` finds the recorded group and kills it before it runs the phase again.
#[test]
fn resume_kills_a_recorded_group_that_outlived_loop_and_its_supervisor() {
    let repo = demo_repo();
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("member.pid");
    let marker = scratch.path().join("second-attempt");
    // The first attempt leaves a TERM-ignoring member in its group and hangs; the attempt resume
    // starts passes at once.
    let shell = format!(
        "shell:if [ -e {m} ]; then exit 0; fi; touch {m}; sh -c 'trap \"\" TERM; echo $$ > {p}; exec sleep 3599' & exec sleep 3599",
        m = marker.display(),
        p = pidfile.display()
    );
    write_committed(&repo, "leftover.json", &serde_json::json!({"ORB-1": {"dev": shell}}).to_string());
    let mut child = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "leftover.json", "--phase-timeout", "120", "-q"])
        .env("LOOP_RUN_ID", "left")
        .spawn()
        .unwrap();
    let (member, member_start) = wait_for_pid(&pidfile, "the group member");
    let r = json(&loop_cmd(&repo).args(["replay", "left", "--json"]).output().unwrap());
    let pgid = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["body"]["kind"] == "process_group")
        .and_then(|x| x["body"]["pgid"].as_i64())
        .unwrap_or_else(|| panic!("no process_group record: {r}")) as i32;
    // Stopped first, so loop cannot journal the supervisor's death before it dies too.
    kill(child.id() as i32, "STOP");
    kill(pgid, "KILL");
    kill(child.id() as i32, "KILL");
    assert_eq!(child.wait().unwrap().code(), None);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(member, member_start), "precondition: the group member outlived loop and its supervisor");

    let out = loop_cmd(&repo).args(["resume", "left", "--json", "-q"]).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(exit::OK), "{err}");
    assert!(err.contains(&format!("killed process group {pgid}")), "{err}");
    assert!(!alive(member, member_start), "resume left the recorded group's member running");
    assert!(json(&out)["issues"].as_array().unwrap().iter().all(|i| i["state"] == "Done"), "{err}");
    assert_no_survivors(&repo, "after resume");
}

/// A generated 14-issue milestone (as tests/it/parallel.rs) whose scenario has fix cycles, a Capped,
/// a Failed and Blocked issues, and agents that leave a `setsid` grandchild in their worktree.
fn generated() -> TestRepo {
    let mut files = generated_dag_docs();
    let shell = "shell:(setsid sleep 3599 &); sleep 0.3";
    let scenario = serde_json::json!({
        "G-0": {"dev": shell},
        "G-1": {"reviews": ["changes_required", "pass"]},
        "G-2": {"reviews": ["changes_required", "changes_required", "changes_required"]},
        "G-3": {"dev": "failed"},
        "G-5": {"dev": shell},
        "G-6": {"reviews": ["blocked"]},
        "G-9": {"dev": shell},
        "G-11": {"dev": shell},
        "G-13": {"reviews": ["changes_required", "changes_required", "pass"]},
    });
    files.push(("scenario.json".into(), scenario.to_string()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    repo_with(&refs)
}

fn gen_run(repo: &TestRepo, id: &str) -> Command {
    let mut c = loop_cmd(repo);
    c.args(["run", "-m", "GEN", "--sim-scenario", "scenario.json", "--json", "-q", "--jobs", "3"]);
    c.env("LOOP_RUN_ID", id);
    c
}

fn final_states(out: &std::process::Output) -> Vec<(String, String, u64)> {
    let mut s = states(&json(out));
    s.sort();
    s
}

/// xorshift64*: enough to spread kill moments, and reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn sigkill_at_seeded_moments_of_a_jobs_3_run_leaves_no_process_and_resume_ends_the_same() {
    let reference = generated();
    let started = Instant::now();
    let want_out = gen_run(&reference, "ref").output().unwrap();
    let took = started.elapsed();
    assert_eq!(want_out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&want_out));
    let want = final_states(&want_out);
    assert_no_survivors(&reference, "uninterrupted run");

    let mut seed: u64 = std::env::var("LOOP_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    eprintln!("sigkill moments: seed {seed} (LOOP_TEST_SEED={seed} repeats them); uninterrupted run took {took:?}");
    let span = (took.as_millis() as u64 * 9 / 10).max(100);
    for round in 0..5 {
        let at = Duration::from_millis(30 + next(&mut seed) % span);
        let repo = generated();
        let mut child = gen_run(&repo, "k").stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(at);
        kill(child.id() as i32, "KILL");
        let status = child.wait().unwrap();
        let what = format!("round {round}: SIGKILL after {at:?} (exit {status:?})");
        assert_no_survivors(&repo, &what);
        let resumed = loop_cmd(&repo).args(["resume", "k", "--json", "-q", "--jobs", "3"]).output().unwrap();
        assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "{what}: {:?}", text(&resumed));
        assert_eq!(final_states(&resumed), want, "{what}");
        let rp = loop_cmd(&repo).args(["replay", "k", "-q"]).output().unwrap();
        assert_eq!(rp.status.code(), Some(exit::OK), "{what}: {:?}", text(&rp));
        assert_no_survivors(&repo, &format!("{what}, after resume"));
    }
}
