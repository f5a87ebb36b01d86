//! `loop bench`: the performance figures, each measured side by side with its baseline in the
//! same run and reported as a ratio (absolute times on shared machines drift; ratios much less).
//!
//! These are benchmarks, not tests: nothing here asserts a speed. CI only runs `--quick` to keep
//! the code working.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::clock::Clock;
use crate::journal::log::{LogReader, LogStore};
use crate::journal::view::RunView;
use crate::journal::{self, record, AgentSpec, Body, Evidence, Journal, PlannedIssue, RunStart, Store};
use crate::machine::{Event, Phase, Rules, Stage, State, Verdict, WorkStatus};

#[cfg(feature = "restate")]
mod restate;

#[derive(Debug, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub loop_value: f64,
    pub baseline_value: f64,
    pub unit: &'static str,
    pub baseline: String,
    /// loop / baseline for rates, baseline / loop for times, so bigger is always better.
    pub ratio: f64,
    pub goal: String,
    pub met: bool,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: {0}")]
    Io(String),
}

fn io<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Io(e.to_string())
}

/// A realistic journal record body: a dev result with its evidence.
fn sample_body(i: u64) -> Body {
    let output = json!({
        "status": "pass", "branch": "loop/M1/ORB-1", "worktree": "/repo/.loop/worktrees/M1/ORB-1",
        "stack_branches": [], "draft_prs": [],
        "tests_run": [{"command": "cargo test", "status": "pass", "notes": format!("run {i}")}],
        "docs_updated": [], "deferred": [], "open_questions": []
    })
    .to_string();
    Body::Issue {
        issue: format!("ORB-{}", i % 100),
        event: Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
        to: Stage::Review { fix_cycles: 0 },
        commands: Some(vec![crate::machine::Command::StartPhase { phase: Phase::Review, attempt: 1 }]),
        evidence: Some(Evidence {
            exit_code: Some(0),
            duration_ms: 1234,
            output: Some(output),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Default::default()
        }),
    }
}

fn planned(n: usize) -> Vec<PlannedIssue> {
    (0..n)
        .map(|i| PlannedIssue {
            id: format!("ORB-{i}").into(),
            title: format!("issue {i}"),
            doc: format!("docs/projects/p/issues/ORB-{i}.md"),
            blocked_by: vec![],
            branch: format!("loop/M1/ORB-{i}").into(),
            worktree: format!("/repo/.loop/worktrees/M1/ORB-{i}"),
            verify: Vec::new(),
        })
        .collect()
}

fn run_start(issues: usize, rules: Rules) -> Body {
    Body::RunStarted(RunStart {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        milestone: "M1".into(),
        repo: "/repo".into(),
        base_commit: "0".repeat(40),
        rules,
        agent: AgentSpec { kind: "sim".into(), scenario: None, settings: None },
        phase_timeout_secs: 60,
        max_tokens_per_issue: None,
        review_doc: false,
        issues: planned(issues),
        guard: None,
        verify: Default::default(),
        earlier: Default::default(),
        resilience: Default::default(),
        spend: None,
    })
}

fn sealed_samples(n: u64) -> Vec<Vec<u8>> {
    let clock = Clock::from_env();
    let mut prev = record::Hash::ZERO;
    (0..n)
        .map(|i| {
            let content = record::Content {
                version: record::FORMAT_VERSION,
                run_id: "bench".into(),
                seq: i,
                time: clock.now(),
                prev,
                body: sample_body(i),
            };
            let (bytes, h) = record::seal(&content);
            prev = h;
            bytes
        })
        .collect()
}

/// 1. Durable appends from one writer: the journal vs write+fdatasync vs SQLite WAL FULL.
fn append_one_writer(dir: &Path, n: u64) -> Result<(Row, f64), BenchError> {
    // loop's journal: seal, one frame, one fdatasync, per record.
    let store = LogStore::create_in(&dir.join("j1"), "bench").map_err(io)?;
    let mut j = Journal::create(Box::new(store), "bench", Clock::from_env());
    j.append(run_start(100, Rules::default())).map_err(io)?;
    let t = Instant::now();
    for i in 0..n {
        j.append(sample_body(i)).map_err(io)?;
    }
    let journal_rate = n as f64 / t.elapsed().as_secs_f64();

    // A plain file: write + fdatasync per record, the same bytes.
    let records = sealed_samples(n);
    let mut f = File::create(dir.join("flat.log")).map_err(io)?;
    let t = Instant::now();
    for r in &records {
        f.write_all(&(r.len() as u32).to_be_bytes()).map_err(io)?;
        f.write_all(r).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    let file_rate = n as f64 / t.elapsed().as_secs_f64();

    let sqlite = sqlite_rate(dir, &records)?;

    let ratio = journal_rate / file_rate;
    Ok((
        Row {
            id: "append-1",
            what: format!("durable append, 1 writer ({n} records)"),
            loop_value: journal_rate,
            baseline_value: file_rate,
            unit: "records/s",
            baseline: "write + fdatasync per record".into(),
            ratio,
            goal: "≥ 0.8× the fdatasync file".into(),
            met: ratio >= 0.8,
            notes: vec![match sqlite {
                Some(rate) => format!(
                    "SQLite WAL synchronous=FULL: {rate:.0} records/s (loop = {:.2}× SQLite)",
                    journal_rate / rate
                ),
                None => "SQLite WAL comparison: build with `--features bench-sqlite`".to_string(),
            }],
        },
        journal_rate,
    ))
}

/// SQLite in WAL mode with synchronous=FULL, one insert per transaction: a reference point for
/// the notes, not a goal. Behind the `bench-sqlite` feature so bundled SQLite is no runtime
/// dependency of `loop`.
#[cfg(feature = "bench-sqlite")]
fn sqlite_rate(dir: &Path, records: &[Vec<u8>]) -> Result<Option<f64>, BenchError> {
    let db = rusqlite::Connection::open(dir.join("bench.sqlite")).map_err(io)?;
    db.pragma_update(None, "journal_mode", "WAL").map_err(io)?;
    db.pragma_update(None, "synchronous", "FULL").map_err(io)?;
    db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)", []).map_err(io)?;
    let mut stmt = db.prepare("INSERT INTO records (seq, data) VALUES (?1, ?2)").map_err(io)?;
    let t = Instant::now();
    for (i, r) in records.iter().enumerate() {
        stmt.execute(rusqlite::params![i as i64, r]).map_err(io)?;
    }
    Ok(Some(records.len() as f64 / t.elapsed().as_secs_f64()))
}

#[cfg(not(feature = "bench-sqlite"))]
fn sqlite_rate(_dir: &Path, _records: &[Vec<u8>]) -> Result<Option<f64>, BenchError> {
    Ok(None)
}

/// 2. Eight concurrent writers through the engine's writer (group commit) vs one.
fn append_group(dir: &Path, n: u64) -> Result<Row, BenchError> {
    let measure = |name: &str, writers: usize| -> Result<f64, BenchError> {
        let store = LogStore::create_in(&dir.join(name), "bench").map_err(io)?;
        let mut j = Journal::create(Box::new(store), "bench", Clock::from_env());
        let first = j.append(run_start(writers, Rules::default())).map_err(io)?;
        let view = RunView::new(&first).map_err(io)?;
        let per = (n as usize / writers).max(1);
        let took = crate::engine::bench_group_commit(j, view, writers, per).map_err(io)?;
        Ok((per * writers) as f64 / took.as_secs_f64())
    };
    let one = measure("g1", 1)?;
    let eight = measure("g8", 8)?;
    let ratio = eight / one;
    Ok(Row {
        id: "append-8",
        what: format!("durable append, 8 concurrent writers, group commit ({n} records)"),
        loop_value: eight,
        baseline_value: one,
        unit: "records/s",
        baseline: "1 writer through the same writer".into(),
        ratio,
        goal: "≥ 5× the one-writer rate".into(),
        met: ratio >= 5.0,
        notes: vec![],
    })
}

/// A journal of `events` realistic records (1,000 issues cycling through review and fix), and
/// the same records as a flat export file. Written without per-record fsync: this measures
/// reading, not writing.
pub fn generate(dir: &Path, events: u64) -> Result<(PathBuf, PathBuf), BenchError> {
    let path = dir.join(format!("replay-{events}"));
    let mut store = LogStore::create_in(&path, "bench").map_err(io)?;
    store.set_fsync(false);
    let mut j = Journal::create(Box::new(store), "bench", Clock::from_env());
    let issues = 1000usize;
    j.append(run_start(issues, Rules::with_max_fix_cycles(u32::MAX))).map_err(io)?;
    let mut states: Vec<State> = vec![State::PENDING; issues];
    let rules = Rules::with_max_fix_cycles(u32::MAX);
    let mut batch = Vec::with_capacity(1000);
    let mut written = 1u64;
    let mut i = 0usize;
    while written < events {
        let idx = i % issues;
        i += 1;
        let s = &states[idx];
        let (event, evidence) = match &s.stage {
            Stage::Pending => {
                (Event::WorktreeCreated { path: "/w".into(), branch: "b".into(), base: "c".into() }, None)
            }
            Stage::WorktreeReady => (Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }, None),
            Stage::Dev => {
                (Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass }, Some(sample_evidence()))
            }
            Stage::Review { .. } => {
                (Event::ReviewFinished { verdict: Verdict::ChangesRequired }, Some(sample_evidence()))
            }
            Stage::Fix { .. } => {
                (Event::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass }, Some(sample_evidence()))
            }
            _ => unreachable!("nothing ends in this generator"),
        };
        let (to, commands) = crate::machine::transition(s, &event, &rules).map_err(io)?;
        batch.push(Body::Issue {
            issue: format!("ORB-{idx}"),
            event,
            to: to.stage.clone(),
            commands: Some(commands),
            evidence,
        });
        states[idx] = to;
        written += 1;
        if batch.len() == 1000 || written == events {
            j.append_group(std::mem::take(&mut batch)).map_err(io)?;
        }
    }
    drop(j);
    let (store, _) = LogStore::open(&path.join(crate::journal::log::LOG_FILE), "bench", &mut |_| {}).map_err(io)?;
    let flat = dir.join(format!("replay-{events}.loopj"));
    let mut out = std::io::BufWriter::new(File::create(&flat).map_err(io)?);
    // Raw framing only: the flat baseline must not pay for verification either.
    out.write_all(journal::EXPORT_MAGIC).map_err(io)?;
    let mut err = None;
    store
        .scan(&mut |_, bytes| {
            if let Err(e) = out.write_all(&(bytes.len() as u32).to_be_bytes()).and_then(|_| out.write_all(bytes)) {
                err = Some(e);
            }
            true
        })
        .map_err(io)?;
    if let Some(e) = err {
        return Err(io(e));
    }
    out.flush().map_err(io)?;
    Ok((path, flat))
}

fn sample_evidence() -> Evidence {
    Evidence {
        exit_code: Some(0),
        duration_ms: 900,
        output: Some(r#"{"status":"changes_required","summary":"s","issues":[],"required_actions":["a"],"followups":[],"review_doc_path":null,"review_entry_written":false,"confidence":"high"}"#.into()),
        ..Default::default()
    }
}

/// What a replay child process reports.
#[derive(Debug, serde::Deserialize, Serialize)]
pub struct ReplayChild {
    pub events: u64,
    pub secs: f64,
    pub max_rss_kb: u64,
    /// User + system CPU time of the whole process (all its threads): on a shared machine the
    /// wall time mostly says how busy the others were, this says how much work the replay is.
    #[serde(default)]
    pub cpu_secs: f64,
}

fn cpu_secs() -> f64 {
    // SAFETY: a zeroed rusage is valid plain data, and getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn max_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// In a child process: replay (verify + fold) a sled journal, or just read a flat file.
pub fn replay_child(path: &Path, flat: bool) -> Result<ReplayChild, BenchError> {
    let t = Instant::now();
    let events = if flat {
        let mut r = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io)?;
        let mut n = 0u64;
        let mut len = [0u8; 4];
        let mut buf = Vec::new();
        while r.read_exact(&mut len).is_ok() {
            buf.resize(u32::from_be_bytes(len) as usize, 0);
            r.read_exact(&mut buf).map_err(io)?;
            let body = &buf[..buf.len().saturating_sub(32)];
            let _content: record::Content = rmp_serde::from_slice(body).map_err(io)?;
            n += 1;
        }
        n
    } else {
        // The path `status` and `replay` take: streamed, verified, folded, no record kept.
        let reader = LogReader::open(&path.join(crate::journal::log::LOG_FILE), Some("bench")).map_err(io)?;
        let view = journal::fold_verified(&reader).map_err(io)?.map_err(io)?;
        view.records
    };
    Ok(ReplayChild { events, secs: t.elapsed().as_secs_f64(), max_rss_kb: max_rss_kb(), cpu_secs: cpu_secs() })
}

fn spawn_replay(path: &Path, flat: bool) -> Result<ReplayChild, BenchError> {
    let exe = std::env::current_exe().map_err(io)?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench").arg("--replay-child").arg(path);
    if flat {
        cmd.arg("--flat");
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(io)?;
    if !out.status.success() {
        return Err(BenchError::Io(format!("replay child failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    serde_json::from_slice(&out.stdout).map_err(io)
}

/// 3. Replay with chain verification vs reading the same records from a flat file.
fn replay(dir: &Path, sizes: &[u64]) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    for &n in sizes {
        let (sled_path, flat) = generate(dir, n)?;
        let ours = spawn_replay(&sled_path, false)?;
        let base = spawn_replay(&flat, true)?;
        let rate = ours.events as f64 / ours.secs;
        let base_rate = base.events as f64 / base.secs;
        let goal_applies = n >= 1_000_000;
        rows.push(Row {
            id: "replay",
            what: format!("replay + chain verification, {n} events"),
            loop_value: rate,
            baseline_value: base_rate,
            unit: "events/s",
            baseline: "decode the same records from a flat file".into(),
            ratio: rate / base_rate,
            goal: if goal_applies { "≥ 500k events/s at 1M, memory flat".into() } else { "(goal is at 1M)".into() },
            met: !goal_applies || rate >= 500_000.0,
            notes: vec![format!(
                "{:.2}s; CPU {:.2}s (flat file reader: {:.2}s); peak RSS {} MiB (flat file reader: {} MiB)",
                ours.secs,
                ours.cpu_secs,
                base.cpu_secs,
                ours.max_rss_kb / 1024,
                base.max_rss_kb / 1024
            )],
        });
        let _ = std::fs::remove_dir_all(&sled_path);
        let _ = std::fs::remove_file(journal::store::wal_path(&sled_path));
        let _ = std::fs::remove_file(&flat);
    }
    Ok(rows)
}

fn git(dir: &Path, args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@loop.invalid"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io)?;
    if !out.status.success() {
        return Err(BenchError::Io(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

fn sample_repo(dir: &Path, issues: usize) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir.join("docs/projects/bench/issues")).map_err(io)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    write_issue_docs(dir, "M1", "B", issues)?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "bench docs"])
}

fn write_issue_docs(dir: &Path, milestone: &str, prefix: &str, issues: usize) -> Result<(), BenchError> {
    let docs = dir.join("docs/projects/bench/issues");
    std::fs::create_dir_all(&docs).map_err(io)?;
    for i in 0..issues {
        let text =
            format!("---\nid: {prefix}-{i}\ntitle: bench issue {i}\nmilestone: {milestone}\n---\n\n# {prefix}-{i}\n");
        std::fs::write(docs.join(format!("{prefix}-{i}.md")), text).map_err(io)?;
    }
    Ok(())
}

/// `loop run --agent sim -q` in `repo` with `extra` arguments; how long it took.
fn time_loop(repo: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Duration, BenchError> {
    let exe = std::env::current_exe().map_err(io)?;
    let t = Instant::now();
    let out = Command::new(&exe)
        .args(["run", "--agent", "sim", "-q", "--repo"])
        .arg(repo)
        .args(extra)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@loop.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@loop.invalid")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io)?;
    let took = t.elapsed();
    if out.status.code() != Some(0) {
        // `-q` keeps a failed run quiet: say how it ended and which issues did not end done, why.
        let status = Command::new(&exe)
            .args(["status", "--json", "--repo"])
            .arg(repo)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .map(|v| {
                let not_done: Vec<String> = v["issues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["state"] != "Done")
                    .map(|i| format!("{} {}: {}", i["id"], i["state"], i["reason"]))
                    .collect();
                crate::text::printable(&not_done.join("; "), 2000)
            })
            .unwrap_or_default();
        return Err(BenchError::Io(format!(
            "loop run {extra:?} failed after {:.1}s ({}): {} {}; status: {status}",
            took.as_secs_f64(),
            out.status,
            crate::text::printable(&String::from_utf8_lossy(&out.stderr), 2000),
            crate::text::printable(&String::from_utf8_lossy(&out.stdout), 2000),
        )));
    }
    Ok(took)
}

/// The floor one issue cannot go below: `git worktree add` of a new branch, one file written
/// and committed in it, `git worktree remove`, each a plain git command (no fsync).
///
/// `durable`: the same floor with each effect made durable as loop makes a local run's (on a
/// file system whose `syncfs` reaches the device): git with loop's fsync settings, then one
/// `syncfs` after the add, the commit and the removal. What the plain floor leaves in the page
/// cache (and, for a removed worktree, never writes at all), a power cut would lose; loop may not.
fn floor(repo: &Path, issues: usize, durable: bool) -> Result<Duration, BenchError> {
    let fsync: &[&str] = if durable { &crate::workspace::FSYNC_CONFIG } else { &[] };
    let g = |dir: &Path, args: &[&str]| git(dir, &[fsync, args].concat());
    let settle = || if durable { crate::workspace::syncfs(repo).map_err(io) } else { Ok(()) };
    let t = Instant::now();
    for i in 0..issues {
        let wt = repo.join(format!(".wt/w{i}"));
        let w = wt.to_string_lossy();
        g(repo, &["worktree", "add", "-q", "-b", &format!("b{i}"), &w, "HEAD"])?;
        settle()?;
        std::fs::write(wt.join("work.txt"), format!("work of issue {i}\n")).map_err(io)?;
        g(&wt, &["add", "-A"])?;
        g(&wt, &["commit", "-q", "-m", "work"])?;
        settle()?;
        g(repo, &["worktree", "remove", &w])?;
        settle()?;
    }
    Ok(t.elapsed())
}

/// 4. Per-issue overhead of `loop run --agent sim --no-guard` vs the git floor, at one size.
///
/// `details` adds the guard, `--jobs 4` and durability figures (once is enough).
fn per_issue(dir: &Path, issues: usize, details: bool) -> Result<Row, BenchError> {
    let floor_repo = dir.join(format!("floor-{issues}"));
    // The same repository content as the runs below: a worktree checks out every file, and
    // the milestone's docs are files of it, so a bigger milestone means a bigger checkout.
    sample_repo(&floor_repo, issues)?;
    let floor = floor(&floor_repo, issues, false)?;
    let _ = std::fs::remove_dir_all(&floor_repo);
    // A big size runs for hours: what is already measured is said as it comes, so a run cut
    // short still leaves a figure.
    crate::eoutln!("per-issue, {issues} issues: floor {:.1} ms/issue", floor.as_secs_f64() * 1000.0 / issues as f64);

    let timed_env = |name: &str, extra: &[&str], env: &[(&str, &str)]| -> Result<Duration, BenchError> {
        let repo = dir.join(format!("{name}-{issues}"));
        sample_repo(&repo, issues)?;
        let took = time_loop(&repo, extra, env);
        let _ = std::fs::remove_dir_all(&repo);
        took
    };
    let timed = |name: &str, extra: &[&str]| timed_env(name, extra, &[]);
    let plain = timed("run-noguard", &["--no-guard", "--no-review-doc"])?;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / issues as f64;
    crate::eoutln!("per-issue, {issues} issues: loop run --no-guard {:.1} ms/issue", per(plain));
    let mut notes = vec![format!("{:.2}× the floor", plain.as_secs_f64() / floor.as_secs_f64())];
    if details {
        let guarded = timed("run-guard", &["--no-review-doc"])?;
        let jobs = timed("run-jobs4", &["--no-guard", "--no-review-doc", "--jobs", "4"])?;
        // The same run without the fsyncs that make git's effects durable before they are
        // journaled (git's core.fsync and loop's own): what durability costs per issue.
        let unsynced =
            timed_env("run-nofsync", &["--no-guard", "--no-review-doc"], &[("LOOP_BENCH_NO_GIT_FSYNC", "1")])?;
        let durable_repo = dir.join(format!("floor-durable-{issues}"));
        sample_repo(&durable_repo, issues)?;
        let durable = self::floor(&durable_repo, issues, true);
        let _ = std::fs::remove_dir_all(&durable_repo);
        let durable = durable?;
        notes.push(format!("with guard checks: {:.1} ms/issue", per(guarded)));
        notes.push(format!("--jobs 4, no guard: {:.1} ms/issue", per(jobs)));
        notes.push(format!(
            "git effects durable (the default) {:.1} ms/issue vs without their fsyncs {:.1} ms/issue: {:+.1} ms/issue",
            per(plain),
            per(unsynced),
            per(plain) - per(unsynced)
        ));
        notes.push(format!(
            "without fsyncs {:.2}× the floor; the floor made as durable as loop makes its effects \
             (git's fsyncs, a syncfs after each effect) {:.1} ms/issue: loop durable {:.2}× it",
            unsynced.as_secs_f64() / floor.as_secs_f64(),
            per(durable),
            plain.as_secs_f64() / durable.as_secs_f64()
        ));
    }
    let ratio = floor.as_secs_f64() / plain.as_secs_f64();
    Ok(Row {
        id: "per-issue",
        what: format!("per-issue overhead, loop run --agent sim --no-guard, {issues} issues"),
        loop_value: per(plain),
        baseline_value: per(floor),
        unit: "ms/issue",
        baseline: "git worktree add + commit + worktree remove".into(),
        ratio,
        goal: "≤ 1.3× the floor (ratio ≥ 0.77)".into(),
        met: plain.as_secs_f64() <= 1.3 * floor.as_secs_f64(),
        notes,
    })
}

/// A repository of `files` source files (100 to a directory, as a real tree has them) and one
/// milestone of `issues` issues per name in `milestones`, so each run gets a fresh milestone in
/// the same checkout.
fn large_repo(dir: &Path, files: usize, milestones: &[&str], issues: usize) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    for i in 0..files {
        let sub = dir.join(format!("src/m{}/d{}", i / 1000, (i / 100) % 10));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).map_err(io)?;
        }
        std::fs::write(sub.join(format!("f{i}.rs")), format!("// file {i}\npub fn f{i}() -> u32 {{\n    {i}\n}}\n"))
            .map_err(io)?;
    }
    for m in milestones {
        write_issue_docs(dir, m, m, issues)?;
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "large repository"])?;
    // A checkout in use has an index git refreshed after its files last changed. Right after a
    // commit, files written in the index's own second look "racily clean" and every `git
    // status` re-reads them; a second later one refresh settles that, as daily use would.
    std::thread::sleep(Duration::from_millis(1100));
    git(dir, &["update-index", "-q", "--refresh"])
}

/// 6. The guard's per-issue overhead on a large repository.
///
/// The same milestone size runs with the guard (the default) and with `--no-guard`, at
/// `--jobs 1` and `--jobs 4`.
fn guard_overhead(dir: &Path, files: usize, issues: usize) -> Result<Vec<Row>, BenchError> {
    let repo = dir.join("large");
    let names = ["G1", "G2", "G3", "G4"];
    let t = Instant::now();
    large_repo(&repo, files, &names, issues)?;
    let made = t.elapsed();
    let mut rows = Vec::new();
    for (jobs, plain_m, guard_m) in [("1", "G1", "G2"), ("4", "G3", "G4")] {
        let plain = time_loop(&repo, &["--milestone", plain_m, "--no-guard", "--no-review-doc", "--jobs", jobs], &[])?;
        let guarded = time_loop(&repo, &["--milestone", guard_m, "--no-review-doc", "--jobs", jobs], &[])?;
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / issues as f64;
        let times = guarded.as_secs_f64() / plain.as_secs_f64();
        rows.push(Row {
            id: "guard-overhead",
            what: format!("guard on vs --no-guard, {files} files, {issues} issues, --jobs {jobs}"),
            loop_value: per(guarded),
            baseline_value: per(plain),
            unit: "ms/issue",
            baseline: "the same run with --no-guard".into(),
            ratio: plain.as_secs_f64() / guarded.as_secs_f64(),
            goal: "≤ 1.2× --no-guard (ratio ≥ 0.83)".into(),
            met: times <= 1.2,
            notes: vec![format!("{times:.2}× --no-guard; repository generated in {:.1}s", made.as_secs_f64())],
        });
    }
    let _ = std::fs::remove_dir_all(&repo);
    Ok(rows)
}

/// 5. Planning a generated milestone (docs on disk, dependencies in a random DAG).
fn planning(dir: &Path, issues: usize) -> Result<Row, BenchError> {
    let repo = dir.join("plan");
    let issues_dir = repo.join("docs/projects/big/issues");
    std::fs::create_dir_all(&issues_dir).map_err(io)?;
    // A fixed LCG: the same DAG every run, no dependency on a random crate.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for i in 0..issues {
        let deps: Vec<String> = if i == 0 {
            vec![]
        } else {
            (0..(next() % 4))
                .map(|_| format!("P-{}", next() as usize % i))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let text = format!(
            "---\nid: P-{i}\ntitle: planned issue {i}\nmilestone: BIG\nblocked_by: [{}]\n---\n\nBody of P-{i}.\n",
            deps.join(", ")
        );
        std::fs::write(issues_dir.join(format!("P-{i}.md")), text).map_err(io)?;
    }
    let t = Instant::now();
    let docs = crate::docs::load(&repo).map_err(io)?;
    let loaded = t.elapsed();
    let plan = crate::plan::build(&docs, "BIG").map_err(io)?;
    let took = t.elapsed();
    Ok(Row {
        id: "plan",
        what: format!("plan a {issues}-issue milestone (docs on disk, random DAG)"),
        loop_value: took.as_secs_f64(),
        baseline_value: 1.0,
        unit: "s",
        baseline: "the 1 s goal".into(),
        ratio: 1.0 / took.as_secs_f64(),
        goal: "< 1 s".into(),
        met: took < Duration::from_secs(1),
        notes: vec![format!(
            "reading + parsing {:.3}s, DAG + order + waves {:.3}s; {} waves",
            loaded.as_secs_f64(),
            (took - loaded).as_secs_f64(),
            plan.waves.len()
        )],
    })
}

pub struct Report {
    pub machine: String,
    pub rows: Vec<Row>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

/// Runs every benchmark; `quick` makes each small enough for CI.
pub fn run_all(quick: bool, only: Option<&str>, progress: &mut dyn FnMut(&Row)) -> Result<Report, BenchError> {
    let tmp = tempfile::Builder::new().prefix("loop-bench-").tempdir().map_err(io)?;
    let dir = tmp.path();
    let mut rows = Vec::new();
    let mut push = |row: Row, rows: &mut Vec<Row>| {
        progress(&row);
        rows.push(row);
    };
    // `--only per-issue:200` runs one size of a row that has several.
    let (only, only_size) = match only.and_then(|o| o.split_once(':')) {
        Some((id, size)) => (Some(id), size.parse::<usize>().ok()),
        None => (only, None),
    };
    let wanted = |id: &str| only.is_none_or(|o| o == id);
    let n = if quick { 200 } else { 2000 };
    if wanted("append-1") {
        let (row, _) = append_one_writer(dir, n)?;
        push(row, &mut rows);
    }
    if wanted("append-8") {
        push(append_group(dir, if quick { 400 } else { 8000 })?, &mut rows);
    }
    if wanted("replay") {
        let sizes: &[u64] = if quick { &[10_000] } else { &[10_000, 100_000, 1_000_000] };
        for row in replay(dir, sizes)? {
            push(row, &mut rows);
        }
    }
    if wanted("per-issue") {
        // The ratio must stay flat as the milestone grows: the first size adds the detail notes.
        let sizes: &[usize] = match &only_size {
            Some(n) => std::slice::from_ref(n),
            None if quick => &[10, 50],
            None => &[10, 200, 1000],
        };
        for (i, &n) in sizes.iter().enumerate() {
            // The detail runs (guard, --jobs 4, without fsyncs) once, at a small size: at 1,000
            // issues each would add hours.
            push(per_issue(dir, n, i == 0 && n <= 200)?, &mut rows);
        }
    }
    if wanted("plan") {
        push(planning(dir, if quick { 1000 } else { 10_000 })?, &mut rows);
    }
    if wanted("guard-overhead") {
        let (files, issues) = if quick { (2_000, 3) } else { (30_000, 8) };
        for row in guard_overhead(dir, files, issues)? {
            push(row, &mut rows);
        }
    }
    #[cfg(feature = "restate")]
    if only == Some("restate-inner") {
        for row in restate::inner(quick)? {
            push(row, &mut rows);
        }
        return Ok(Report { machine: machine(), rows });
    }
    #[cfg(feature = "restate")]
    if wanted("restate") {
        if restate::server_bin().is_some() {
            for row in restate::rows(quick)? {
                push(row, &mut rows);
            }
        } else {
            crate::eoutln!("bench: the Restate rows need the server: scripts/restate-up.sh installs it (or set LOOP_RESTATE_SERVER)");
        }
    }
    Ok(Report { machine: machine(), rows })
}

pub fn format_row(r: &Row) -> String {
    let fmt = |v: f64| {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    };
    format!(
        "{:<66} {:>12} vs {:>12} {:<10} ratio {:>6.2}  goal {:<34} {}{}",
        r.what,
        fmt(r.loop_value),
        fmt(r.baseline_value),
        r.unit,
        r.ratio,
        r.goal,
        if r.met { "met" } else { "MISSED" },
        if r.notes.is_empty() { String::new() } else { format!("  ({})", r.notes.join("; ")) }
    )
}
