//! Power cuts, tried as they happen (issue #16): the whole state dir (journal, logs, worktrees) on
//! a FUSE file system that keeps every unsynced write apart and loses it at the cut
//! (`power_cut/cutfs.rs`, which says what it cannot show), the repository on a normal disk.
//! `loop` runs in its own pid namespace, so killing it kills every process it started, the way
//! a power cut does; then the file system is cut and `loop resume` must end exactly where an
//! uninterrupted run ends, with every record `--json-events` acknowledged still in the journal.
//!
//! Needs root and /dev/fuse (CI has both); without them each test says so and passes vacuously,
//! because a developer's laptop may not allow mounts.
//! `LOOP_POWERCUT_SEED` replays a run of cuts (the seed is printed), `LOOP_POWERCUT_CUTS` sets how
//! many random cases each `--jobs` value gets (default 3; more is the long mode).

#[path = "power_cut/cutfs.rs"]
mod cutfs;
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutfs::{CutFs, CutMode, Rng};
use support::*;

/// Skips (loudly) where FUSE cannot be mounted; CI runs as root with /dev/fuse.
fn fuse_or_skip(test: &str) -> bool {
    match cutfs::available() {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: FUSE is needed in CI: {e}"),
        Err(e) => {
            eprintln!("{test}: skipped, {e}");
            false
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seed(test: &str) -> u64 {
    let s = env_u64("LOOP_POWERCUT_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    eprintln!("{test}: LOOP_POWERCUT_SEED={s}");
    // Each test draws its own cuts from the one printed seed.
    test.bytes().fold(s, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

struct Area {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    fs: CutFs,
}

impl Area {
    fn new() -> Area {
        let dir = tempfile::Builder::new().prefix("loop-powercut-").tempdir().expect("tempdir");
        let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
        std::fs::create_dir_all(&backing).expect("mkdir");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let fs = CutFs::mount(&backing, &mnt).expect("mount");
        Area { _dir: dir, backing, fs }
    }

    fn mnt(&self) -> PathBuf {
        self.fs.mountpoint().to_path_buf()
    }
}

#[test]
fn the_layer_keeps_synced_data_and_loses_the_rest() {
    if !fuse_or_skip("the_layer_keeps_synced_data_and_loses_the_rest") {
        return;
    }
    let mut a = Area::new();
    let m = a.mnt();
    std::fs::create_dir(m.join("d")).expect("mkdir");
    let synced = std::fs::File::create(m.join("d/synced")).expect("create");
    synced.write_all_at(b"kept", 0).expect("write");
    synced.sync_data().expect("fdatasync");
    synced.write_all_at(b" and lost", 4).expect("write");
    drop(synced);
    std::fs::write(m.join("d/unsynced"), vec![b'x'; 3000]).expect("write");
    assert_eq!(
        std::fs::read(m.join("d/unsynced")).expect("read").len(),
        3000,
        "a reader sees unsynced data before the cut"
    );
    std::fs::rename(m.join("d/unsynced"), m.join("d/renamed")).expect("rename");
    let torn = std::fs::File::create(m.join("torn")).expect("create");
    torn.write_all_at(&[7u8; 900], 0).expect("write");
    drop(torn);

    let r = a.fs.cut(CutMode::Thirds).expect("cut");
    assert_eq!(r.files, 3, "{r:?}");
    assert_eq!(
        std::fs::read(m.join("d/synced")).expect("read"),
        b"kept an\0\0\0ost",
        "synced data kept; the unsynced write torn"
    );
    let renamed = std::fs::read(m.join("d/renamed")).expect("the rename is metadata and survives");
    assert_eq!(renamed.len(), 3000);
    assert!(renamed[1000..2000].iter().all(|&b| b == 0) && renamed[..1000].iter().all(|&b| b == b'x'));
    let t = std::fs::read(m.join("torn")).expect("read");
    assert_eq!((t.len(), t[0], t[450], t[899]), (900, 7, 0, 7));

    let f = std::fs::File::create(m.join("gone")).expect("create");
    f.write_all_at(b"never synced", 0).expect("write");
    drop(f);
    a.fs.cut(CutMode::Drop).expect("cut");
    assert_eq!(std::fs::read(m.join("gone")).expect("the create survives"), b"", "its data does not");
    assert!(a.backing.join("gone").exists());
}

const RUN_ID: &str = "powercut";

/// Where a run ends: each issue's state and each loop branch's commit count and tree.
#[derive(Debug)]
struct Outcome {
    states: Vec<(String, String, u64)>,
    branches: Vec<(String, String, String)>,
    /// Why issues that did not end Done ended so; not compared, shown.
    reasons: std::collections::BTreeMap<String, String>,
}

impl PartialEq for Outcome {
    fn eq(&self, o: &Outcome) -> bool {
        (&self.states, &self.branches) == (&o.states, &o.branches)
    }
}

fn branches(repo: &TestRepo) -> Vec<(String, String, String)> {
    let refs = git(repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/loop/"]);
    refs.lines()
        .map(|b| {
            (b.to_string(), git(repo, &["rev-list", "--count", b]), git(repo, &["rev-parse", &format!("{b}^{{tree}}")]))
        })
        .collect()
}

fn scenario(repo: &Path) -> String {
    repo.join("scenario.json").display().to_string()
}

fn run_args(repo: &Path, state: &Path, jobs: usize) -> Vec<String> {
    let s = state.display().to_string();
    [
        "run",
        "-m",
        "M1-core",
        "--agent",
        "sim",
        "--sim-scenario",
        &scenario(repo),
        "--jobs",
        &jobs.to_string(),
        "--json-events",
        "-q",
        "--state-dir",
        &s,
    ]
    .map(String::from)
    .to_vec()
}

fn resume_args(state: &Path, jobs: usize) -> Vec<String> {
    let s = state.display().to_string();
    ["resume", RUN_ID, "--jobs", &jobs.to_string(), "--json-events", "-q", "--state-dir", &s].map(String::from).to_vec()
}

fn loop_at(repo: &TestRepo) -> Command {
    let mut c = loop_cmd(repo);
    c.env("LOOP_RUN_ID", RUN_ID);
    c
}

/// The uninterrupted run, on a normal disk: what every cut case must end as.
fn uninterrupted(jobs: usize) -> (Outcome, usize) {
    let repo = demo_repo();
    let state = tempfile::tempdir().expect("tempdir");
    let out = loop_at(&repo).args(run_args(&repo, state.path(), jobs)).output().expect("loop runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "the demo ends with a Capped issue: {stderr}");
    let records = stdout.lines().filter(|l| l.starts_with('{')).count();
    (outcome(&repo, state.path()).expect("status"), records)
}

fn outcome(repo: &TestRepo, state: &Path) -> Result<Outcome, String> {
    let out = loop_at(repo).args(["status", RUN_ID, "--json", "--state-dir"]).arg(state).output().expect("loop runs");
    let (stdout, stderr) = text(&out);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|_| format!("status exit {:?}: {}", out.status.code(), stderr.trim()))?;
    let reasons = v["issues"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((i["id"].as_str()?.to_string(), i["reason"].as_str()?.chars().take(240).collect()))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Outcome { states: states(&v), branches: branches(repo), reasons })
}

/// `loop` (or anything) in a fresh pid namespace: killing its first process kills them all.
struct Tree {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Tree {
    fn spawn(repo: &TestRepo, args: &[String]) -> Tree {
        let base = loop_at(repo);
        let mut c = repo.env().command("unshare");
        c.args(["--pid", "--fork", "--kill-child", "--"]).arg(loop_bin()).args(args).current_dir(repo);
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("unshare runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
        let l = lines.clone();
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().expect("lines").push(line);
            }
        });
        let e = stderr.clone();
        let r2 = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = e.lock().expect("stderr");
                e.push_str(&line);
                e.push('\n');
            }
        });
        Tree { child, lines, stderr, readers: vec![r1, r2] }
    }

    fn count(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL to the namespace's first process; the kernel kills the rest before it is reaped.
    fn kill(&mut self) {
        let me = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: plain kill(2) of our own grandchild, the namespace's init.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: as above; unshare itself, if it outlived its child.
        unsafe { libc::kill(me as i32, libc::SIGKILL) };
    }

    /// Exit code (None when killed), stdout lines, stderr.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let lines = std::mem::take(&mut *self.lines.lock().expect("lines"));
        let err = std::mem::take(&mut *self.stderr.lock().expect("stderr"));
        (status.code(), lines, err)
    }
}

#[derive(Clone, Copy, Debug)]
enum When {
    /// After this many records were printed, and this many milliseconds more.
    AfterRecords(usize, u64),
    /// While the nth fsync from the start is in flight.
    AtFsync(u64),
}

#[derive(Clone, Copy, Debug)]
struct Cut {
    when: When,
    mode: CutMode,
}

fn random_cut(rng: &mut Rng, records: usize) -> Cut {
    let when = if rng.below(2) == 0 {
        When::AfterRecords(rng.below(records as u64) as usize, rng.below(40))
    } else {
        When::AtFsync(1 + rng.below(records as u64))
    };
    let mode = match rng.below(4) {
        0 => CutMode::Torn(rng.next()),
        1 => CutMode::Thirds,
        _ => CutMode::Drop,
    };
    Cut { when, mode }
}

/// Runs until the cut's moment (or the end), kills the tree, then cuts. Returns the exit code if
/// the command finished first, and the records it acknowledged.
fn attempt(
    area: &mut Area,
    repo: &TestRepo,
    args: &[String],
    cut: Option<Cut>,
    log: &mut Vec<String>,
) -> (Option<i32>, Vec<serde_json::Value>, String) {
    if let Some(Cut { when: When::AtFsync(n), .. }) = cut {
        area.fs.arm_fsync_trap(n);
    }
    let mut tree = Tree::spawn(repo, args);
    let mut trapped = None;
    let finished = loop {
        if tree.exited() {
            break true;
        }
        match cut.map(|c| c.when) {
            Some(When::AfterRecords(k, ms)) if tree.count() >= k => {
                std::thread::sleep(Duration::from_millis(ms));
                break false;
            }
            Some(When::AtFsync(_)) => {
                if let Some(hit) = area.fs.trap_hit(Duration::from_millis(20)) {
                    trapped = Some(hit);
                    break false;
                }
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if !finished {
        tree.kill();
    }
    // A FUSE request already taken by the file system cannot be interrupted, even by SIGKILL:
    // the held fsync must be answered for its (dead) caller to go.
    area.fs.release_trap();
    let (code, lines, err) = tree.finish();
    let acked: Vec<serde_json::Value> = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let verb = &args[0];
    if finished {
        log.push(format!("{verb}: finished, exit {code:?}, {} records", acked.len()));
        return (code, acked, err);
    }
    let mode = cut.expect("a cut").mode;
    let r = area.fs.cut(mode).expect("cut");
    let at = match (cut.expect("cut").when, &trapped) {
        (When::AtFsync(n), Some(path)) => format!(
            "at fsync #{n} of {}",
            path.rsplit('/').take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/")
        ),
        (w, _) => format!("{w:?}"),
    };
    log.push(format!(
        "{verb}: cut {at} after {} records, {mode:?}: {} unsynced writes ({} bytes) in {} files lost{}",
        acked.len(),
        r.writes,
        r.bytes,
        r.files,
        if r.sectors_applied > 0 { format!(", {} pieces landed", r.sectors_applied) } else { String::new() }
    ));
    (None, acked, err)
}

/// One case: `loop run`, cut, `loop resume` (cut again, maybe), resume to the end; then the end
/// must be the uninterrupted one and every acknowledged record must still be in the journal.
fn case(
    jobs: usize,
    cuts: &[Option<Cut>],
    rng: &mut Rng,
    records: usize,
    expected: &Outcome,
) -> Result<Vec<String>, (String, Vec<String>)> {
    let repo = demo_repo();
    let mut area = Area::new();
    let state = area.mnt().join("state");
    let mut log = Vec::new();
    let mut acked: std::collections::BTreeMap<u64, String> = Default::default();
    let mut next_cut = 0;
    let mut end = None;
    for _ in 0..cuts.len() + 3 {
        let args = if acked.is_empty() { run_args(&repo, &state, jobs) } else { resume_args(&state, jobs) };
        // A `None` plan is a random cut among the records still to come.
        let cut = cuts
            .get(next_cut)
            .map(|c| c.unwrap_or_else(|| random_cut(rng, records.saturating_sub(acked.len()).max(1))));
        let (code, records, err) = attempt(&mut area, &repo, &args, cut, &mut log);
        for r in &records {
            if let (Some(seq), Some(hash)) = (r["seq"].as_u64(), r["hash"].as_str()) {
                acked.insert(seq, hash.to_string());
            }
        }
        match code {
            None => next_cut += 1,
            Some(0 | 3) if next_cut >= cuts.len() || cut.is_some() => {
                end = code;
                if cut.is_some() {
                    log.push("(finished before the cut came)".into());
                }
                break;
            }
            Some(c) => return Err((format!("{} exited {c}: {}", args[0], err.trim()), log)),
        }
    }
    if end.is_none() {
        return Err(("never reached the end".into(), log));
    }
    let got = outcome(&repo, &state).map_err(|e| (e, log.clone()))?;
    if &got != expected {
        let diff: Vec<String> = expected
            .states
            .iter()
            .zip(&got.states)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| {
                format!(
                    "{} {} (want {}){}",
                    b.0,
                    b.1,
                    a.1,
                    got.reasons.get(&b.0).map(|r| format!(": {r}")).unwrap_or_default()
                )
            })
            .chain(
                expected
                    .branches
                    .iter()
                    .zip(&got.branches)
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| format!("{} has {} commits (want {})", b.0, b.1, a.1)),
            )
            .collect();
        return Err((format!("ended otherwise than the uninterrupted run: {}", diff.join("; ")), log));
    }
    let out = loop_at(&repo).args(["replay", RUN_ID, "--json", "--state-dir"]).arg(&state).output().expect("loop runs");
    let (stdout, stderr) = text(&out);
    if out.status.code() != Some(exit::OK) {
        return Err((format!("replay exit {:?}: {}", out.status.code(), stderr.trim()), log));
    }
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| (format!("replay --json: {e}"), log.clone()))?;
    let journal: std::collections::BTreeMap<u64, String> = v["timeline"]
        .as_array()
        .map(|t| t.iter().filter_map(|r| Some((r["seq"].as_u64()?, r["hash"].as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let lost: Vec<u64> = acked.iter().filter(|(s, h)| journal.get(s) != Some(h)).map(|(s, _)| *s).collect();
    if !lost.is_empty() {
        return Err((format!("acknowledged records lost or changed: {lost:?}"), log));
    }
    Ok(log)
}

fn cut_cases(test: &str, jobs: usize) {
    if !fuse_or_skip(test) {
        return;
    }
    let mut rng = Rng(seed(test));
    let (expected, records) = uninterrupted(jobs);
    let n = env_u64("LOOP_POWERCUT_CUTS").unwrap_or(3);
    let mut failures = Vec::new();
    for i in 0..n {
        let cuts: Vec<Option<Cut>> = vec![None; 1 + rng.below(2) as usize];
        match case(jobs, &cuts, &mut rng, records, &expected) {
            Ok(log) => eprintln!("{test} case {i}: held\n  {}", log.join("\n  ")),
            Err((why, log)) => {
                eprintln!("{test} case {i}: FAILED: {why}\n  {}", log.join("\n  "));
                failures.push(format!("case {i}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{test}: {} of {n} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn power_cuts_during_run_and_resume_jobs_1() {
    cut_cases("power_cuts_during_run_and_resume_jobs_1", 1);
}

#[test]
fn power_cuts_during_run_and_resume_jobs_3() {
    cut_cases("power_cuts_during_run_and_resume_jobs_3", 3);
}

/// The tear that was seen: the fsync of a journal append is in flight when the power goes, and
/// the append lands as its first and last thirds with zeros between. It was never acknowledged,
/// so it may cost that step, never the run: resume must end as the uninterrupted run.
#[test]
fn a_torn_unacknowledged_append_costs_one_step() {
    let test = "a_torn_unacknowledged_append_costs_one_step";
    if !fuse_or_skip(test) {
        return;
    }
    let mut rng = Rng(seed(test));
    let (expected, records) = uninterrupted(1);
    let n = env_u64("LOOP_POWERCUT_CUTS").unwrap_or(3);
    let mut failures = Vec::new();
    for i in 0..n {
        let cut = Cut { when: When::AtFsync(2 + rng.below(records as u64 - 2)), mode: CutMode::Thirds };
        match case(1, &[Some(cut)], &mut rng, records, &expected) {
            Ok(log) => eprintln!("{test} case {i}: held\n  {}", log.join("\n  ")),
            Err((why, log)) => {
                eprintln!("{test} case {i}: FAILED: {why}\n  {}", log.join("\n  "));
                failures.push(format!("case {i}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{test}: {} of {n} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// Every file under `dir` with a digest of its bytes (or its link target).
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").map_while(Result::ok) {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("under").display().to_string();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else if m.is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p).expect("readlink").display()));
            } else if !m.is_file() {
                // The guard's relay FIFOs: opening one would wait for a writer.
                out.insert(rel, "special".into());
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.insert(rel, format!("{} bytes {}", bytes.len(), &blake3::hash(&bytes).to_hex()[..12]));
            }
        }
    }
    out
}

/// `status` and `replay` only read: cut in the middle of either (at its first fsync, if it makes
/// one, or at a random moment), the state dir must hold exactly what it held before.
#[test]
fn cuts_during_status_and_replay_change_nothing() {
    let test = "cuts_during_status_and_replay_change_nothing";
    if !fuse_or_skip(test) {
        return;
    }
    let mut rng = Rng(seed(test));
    let repo = demo_repo();
    let mut area = Area::new();
    let state = area.mnt().join("state");
    let mut log = Vec::new();
    // A run cut mid-way: the state a reader finds after a crash, unsynced journal tail included.
    let first = Cut { when: When::AfterRecords(10 + rng.below(30) as usize, rng.below(20)), mode: CutMode::Drop };
    attempt(&mut area, &repo, &run_args(&repo, &state, 1), Some(first), &mut log);
    let n = env_u64("LOOP_POWERCUT_CUTS").unwrap_or(3) * 2;
    let mut failures = Vec::new();
    for i in 0..n {
        let before = snapshot(&area.backing);
        let s = state.display().to_string();
        let args: Vec<String> = match i % 2 {
            0 => ["status", RUN_ID, "--json", "--state-dir", &s],
            _ => ["replay", RUN_ID, "--json", "--state-dir", &s],
        }
        .map(String::from)
        .to_vec();
        let when = if rng.below(2) == 0 { When::AtFsync(1) } else { When::AfterRecords(0, rng.below(30)) };
        let mode = if rng.below(2) == 0 { CutMode::Drop } else { CutMode::Torn(rng.next()) };
        let (code, _, err) = attempt(&mut area, &repo, &args, Some(Cut { when, mode }), &mut log);
        if code.is_some_and(|c| c != 0) {
            failures.push(format!("{} exited {code:?}: {}", args[0], err.trim()));
        }
        if code.is_some() {
            // It finished before the cut: what it left unsynced is lost now, as at a later cut.
            area.fs.cut(CutMode::Drop).expect("cut");
        }
        let after = snapshot(&area.backing);
        if before != after {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| before.get(*k) != after.get(*k))
                .take(6)
                .map(|k| {
                    format!(
                        "{k}: {} -> {}",
                        before.get(k).map(String::as_str).unwrap_or("absent"),
                        after.get(k).map(String::as_str).unwrap_or("absent")
                    )
                })
                .collect();
            failures.push(format!("{} ({when:?}, {mode:?}) changed the state dir: {}", args[0], changed.join("; ")));
        }
    }
    eprintln!("{test}:\n  {}", log.join("\n  "));
    let out = loop_at(&repo).args(["replay", RUN_ID, "--state-dir"]).arg(&state).output().expect("loop runs");
    if out.status.code() != Some(exit::OK) {
        failures.push(format!("replay after the cuts exit {:?}: {}", out.status.code(), text(&out).1.trim()));
    }
    assert!(failures.is_empty(), "{test}: {} failures in {n} cuts:\n{}", failures.len(), failures.join("\n"));
}
