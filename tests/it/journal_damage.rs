//! The journal under damage, through the real binary: every truncation, flipped byte, deleted,
//! swapped or foreign file is reported (exit 4, naming the run, the file and the first bad or
//! missing record); a torn tail of an unacknowledged append is not corruption; read-only
//! commands never change a byte; empty runs are listed, skipped and removable; format-1 journals
//! still replay and resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::*;

use crate::support::exit::CORRUPT;

fn run_demo(repo: &TestRepo, run_id: &str) -> std::process::Output {
    loop_cmd(repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "--json", "-q"])
        .env("LOOP_RUN_ID", run_id)
        .output()
        .expect("loop runs")
}

fn log_path(repo: &Path, run: &str) -> PathBuf {
    repo.join(".loop/runs").join(run).join("journal.log")
}

fn replay_q(repo: &TestRepo, run: &str) -> (Option<i32>, String, String) {
    let out = loop_cmd(repo).args(["replay", run, "--json"]).output().expect("replay");
    let (o, mut e) = text(&out);
    // With --json the verdict's error is in the object; keep it with stderr's lines.
    if let Some(msg) =
        serde_json::from_str::<serde_json::Value>(o.trim()).ok().and_then(|v| v["error"].as_str().map(str::to_string))
    {
        e.push_str(&msg);
        e.push('\n');
    }
    (out.status.code(), o, e)
}

fn records_of(stdout: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(stdout.trim()).ok().and_then(|v| v["records"].as_u64()).unwrap_or(0)
}

/// Every file under `dir` with its bytes: what "never changes a byte" compares.
fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            let p = e.path();
            let t = e.file_type().expect("type");
            if t.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                walk(&p, out);
            } else if t.is_file() {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    walk(dir, &mut out);
    out
}

/// Names the paths that differ, not their bytes.
#[track_caller]
fn same_tree(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let differ: Vec<&PathBuf> = a.keys().chain(b.keys()).filter(|p| a.get(*p) != b.get(*p)).collect();
    assert!(differ.is_empty(), "{what}: {differ:?}");
}

/// Damage every part of a finished run's journal: truncations at many offsets and single flipped
/// bytes across the whole file. Not one case may report success with fewer records.
#[test]
fn every_truncation_and_flipped_byte_is_reported() {
    let repo = demo_repo();
    let out = run_demo(&repo, "d");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let (code, stdout, err) = replay_q(&repo, "d");
    assert_eq!(code, Some(exit::OK), "{err}");
    let full = records_of(&stdout);
    assert!(full > 50, "a demo run has many records: {full}");
    let path = log_path(&repo, "d");
    let original = std::fs::read(&path).expect("journal");

    let (mut cases, mut reported, mut harmless) = (0, 0, 0);
    let mut check = |bytes: &[u8], what: String| {
        std::fs::write(&path, bytes).expect("write damaged");
        let (code, stdout, err) = replay_q(&repo, "d");
        cases += 1;
        assert!(!err.contains("panicked"), "{what}: {err}");
        match code {
            Some(CORRUPT) => {
                reported += 1;
                let line = err.lines().last().unwrap_or("");
                assert!(line.contains("runs/d/journal.log"), "{what}: the file is not named: {err}");
                assert!(line.contains("record "), "{what}: no record named: {err}");
            }
            Some(exit::OK) => {
                // Only damage that loses nothing may pass (an inactive head slot), and it is said.
                assert_eq!(records_of(&stdout), full, "{what}: replay ok with fewer records: {err}");
                assert!(err.contains("head slot"), "{what}: harmless damage must still be said: {err}");
                harmless += 1;
            }
            other => panic!("{what}: exit {other:?}: {err}"),
        }
    };
    // Truncations: inside the header, at and around every frame boundary, and through frames.
    let mut cuts: Vec<usize> = (0..original.len()).step_by(61).collect();
    cuts.extend([0, 1, 8, 4095, 4096, 4097, original.len() - 1, original.len() - 17]);
    let mut pos = 4096;
    while pos + 8 <= original.len() {
        cuts.extend([pos, pos + 4, pos + 20]);
        let len = u32::from_be_bytes(original[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 20 + len + 16;
    }
    cuts.sort();
    cuts.dedup();
    for c in cuts.iter().filter(|c| **c < original.len()) {
        check(&original[..*c], format!("truncated to {c} bytes"));
    }
    // Flipped bytes across the whole file, header and slots included.
    for i in (0..original.len()).step_by(37).chain([0, 9, 11, 256, 300, 512, 520, 1024, 1030, 4000]) {
        let mut b = original.clone();
        b[i] ^= 0x10;
        check(&b, format!("byte {i} flipped"));
    }
    std::fs::write(&path, &original).expect("restore");
    eprintln!("damage cases: {cases}, reported (exit 4): {reported}, harmless and said: {harmless}");
    assert!(reported > cases * 9 / 10, "{reported} of {cases}");
    let (code, _, err) = replay_q(&repo, "d");
    assert_eq!(code, Some(exit::OK), "restored journal replays: {err}");
}

/// The seen cases: a truncated journal used to replay "ok" with fewer records and resume used
/// to re-drive finished issues; a swapped or deleted file must be named too.
#[test]
fn truncated_swapped_and_deleted_journals_are_named_and_never_resumed() {
    let repo = demo_repo();
    run_demo(&repo, "a");
    run_demo(&repo, "b");
    let a = log_path(&repo, "a");
    let original = std::fs::read(&a).unwrap();

    // Truncated at a frame boundary in the middle: the head knows the end.
    let mut pos = 4096;
    let mut boundaries = Vec::new();
    while pos + 8 <= original.len() {
        boundaries.push(pos);
        let len = u32::from_be_bytes(original[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 20 + len + 16;
    }
    let cut = boundaries[boundaries.len() / 2];
    std::fs::write(&a, &original[..cut]).unwrap();
    let (code, _, err) = replay_q(&repo, "a");
    assert_eq!(code, Some(CORRUPT), "{err}");
    assert!(err.contains("runs/a/journal.log") && err.contains("durably appended"), "{err}");
    let journal_only = |repo: &Path| {
        let mut t = tree_bytes(&repo.join(".loop/runs"));
        t.retain(|p, _| !p.ends_with("run.lock")); // resume takes the lock (and writes its pid)
        t
    };
    let before = journal_only(&repo);
    let out = loop_cmd(&repo).args(["resume", "a", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(CORRUPT), "resume must refuse a damaged journal: {:?}", text(&out));
    same_tree(&before, &journal_only(&repo), "a refused resume changed the store");
    for cmd in [&["status", "a"][..], &["export", "a", "--out", "/dev/null"][..]] {
        let out = loop_cmd(&repo).args(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(CORRUPT), "{cmd:?}: {:?}", text(&out));
    }

    // Another run's file in its place.
    std::fs::copy(log_path(&repo, "b"), &a).unwrap();
    let (code, _, err) = replay_q(&repo, "a");
    assert_eq!(code, Some(CORRUPT), "{err}");
    assert!(err.contains("belongs to run b"), "{err}");

    // Deleted.
    std::fs::remove_file(&a).unwrap();
    let (code, _, err) = replay_q(&repo, "a");
    assert_eq!(code, Some(CORRUPT), "{err}");
    assert!(err.contains("run a") && err.contains("missing"), "{err}");
    let runs = loop_cmd(&repo).args(["runs", "--json"]).output().unwrap();
    assert_eq!(runs.status.code(), Some(exit::OK));
    let v = json(&runs);
    let row = v.as_array().unwrap().iter().find(|r| r["run_id"] == "a").expect("a listed");
    assert_eq!(row["state"], "unreadable", "{row}");
}

/// An append that never completed (a power cut mid-write: the frame reached the disk with a
/// hole in it) is the torn tail: readers ignore it with one line, resume moves it aside and
/// redoes that step, and the run ends as an undisturbed one. A bad frame with a good one after
/// it is corruption.
#[test]
fn a_torn_unacknowledged_tail_costs_one_step_not_the_run() {
    use devloop::journal::log::{encode_frame, scan_file};
    let want = {
        let other = demo_repo();
        run_demo(&other, "whole");
        states(&json(&loop_cmd(&other).args(["status", "whole", "--json"]).output().unwrap()))
    };
    let repo = demo_repo();

    // A run that crashed after its 20th append, then a torn 21st group as a power cut leaves it.
    let out = loop_cmd(&repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "torn")
        .env("LOOP_FAULT_AFTER_APPEND", "20")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(exit::OK));
    let path = log_path(&repo, "torn");
    let good = std::fs::read(&path).unwrap();
    let scan = scan_file(&path, Some("torn")).unwrap();
    assert_eq!(scan.records.len(), 20);
    // The next record as it would have been written, torn: first and last thirds, zeros between.
    let mut frame = encode_frame(&[(20, scan.records[19].1.clone())]);
    let third = frame.len() / 3;
    frame[third..2 * third].fill(0);
    let mut torn = good.clone();
    torn.extend_from_slice(&frame);
    std::fs::write(&path, &torn).unwrap();

    let (code, stdout, err) = replay_q(&repo, "torn");
    assert_eq!(code, Some(exit::OK), "a torn tail is not corruption: {err}");
    assert_eq!(records_of(&stdout), 20);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("runs/torn/journal.log"), "{err}");
    assert!(err.contains("never completed"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), torn, "replay must not repair");

    // A bad frame followed by a good one is not a tail: corruption.
    let mut mid = torn.clone();
    mid.extend_from_slice(&encode_frame(&[(21, scan.records[19].1.clone())]));
    std::fs::write(&path, &mid).unwrap();
    let (code, _, err) = replay_q(&repo, "torn");
    assert_eq!(code, Some(CORRUPT), "{err}");
    assert!(err.contains("record 20"), "{err}");

    std::fs::write(&path, &torn).unwrap();
    let out = loop_cmd(&repo).args(["resume", "torn", "--json", "-q"]).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{err}");
    assert!(err.contains("never completed"), "the tail is reported: {err}");
    assert_eq!(states(&json(&out)), want);
    let aside = path.with_file_name(format!("journal.log.torn-{}", good.len()));
    assert_eq!(std::fs::read(&aside).unwrap(), frame, "the torn bytes are kept as evidence");
    let (code, _, err) = replay_q(&repo, "torn");
    assert_eq!(code, Some(exit::OK), "{err}");
}

/// A cut export (even at a record boundary) is caught by the trailer.
#[test]
fn an_export_cut_at_a_record_boundary_is_caught() {
    let repo = demo_repo();
    run_demo(&repo, "x");
    let file = repo.join("x.loopj");
    let out = loop_cmd(&repo).args(["export", "x", "--out"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let bytes = std::fs::read(&file).unwrap();
    let mut at = 8;
    let mut boundaries = vec![];
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        if len == u32::MAX {
            boundaries.push(at);
            break;
        }
        boundaries.push(at);
        at += 4 + len as usize;
    }
    for cut in [boundaries[1], boundaries[boundaries.len() / 2], *boundaries.last().unwrap()] {
        let p = repo.join("cut.loopj");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let out = loop_cmd(&repo).args(["replay", "-q", "--file"]).arg(&p).output().unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(CORRUPT), "cut at {cut}: {err}");
        assert!(err.contains("cut short"), "{err}");
    }
    // The golden v1 export (no trailer) still replays.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("journals/demo-golden.loopj");
    let out = loop_cmd(&repo).args(["replay", "-q", "--file"]).arg(&golden).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
}

/// Read-only commands never change a byte, and work on a read-only `.loop/` and a full disk.
#[test]
fn read_only_commands_are_read_only_even_on_a_read_only_or_full_file_system() {
    let repo = demo_repo();
    run_demo(&repo, "ro");
    let state = repo.join(".loop");
    let before = tree_bytes(&state);
    let export = repo.join("ro.loopj");
    let cmds: Vec<Vec<String>> = vec![
        vec!["replay".into(), "ro".into()],
        vec!["replay".into(), "ro".into(), "--json".into()],
        vec!["status".into()],
        vec!["status".into(), "ro".into(), "--json".into()],
        vec!["runs".into()],
        vec!["runs".into(), "--json".into()],
        vec!["export".into(), "ro".into(), "--out".into(), export.display().to_string()],
    ];
    for c in &cmds {
        let out = loop_cmd(&repo).args(c).output().unwrap();
        assert_eq!(out.status.code(), Some(exit::OK), "{c:?}: {:?}", text(&out));
    }
    same_tree(&before, &tree_bytes(&state), "a read-only command changed the state dir");

    // A read-only mount holding a copy of .loop/, and a full one: the same commands work.
    for mode in ["ro", "full"] {
        let mnt = tempfile::tempdir().unwrap();
        let m = mnt.path();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(m).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "mounting a tmpfs needs root (CI runs as root)");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let _guard = Unmount(m.to_path_buf());
        let copy = m.join("state");
        let cp = std::process::Command::new("cp").arg("-a").arg(&state).arg(&copy).status().unwrap();
        assert!(cp.success());
        if mode == "ro" {
            let st = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(m).status().unwrap();
            assert!(st.success());
        } else {
            // Fill it: the next write fails with ENOSPC.
            let _ = std::process::Command::new("dd")
                .args(["if=/dev/zero", "bs=1M", "count=16"])
                .arg(format!("of={}", m.join("fill").display()))
                .stderr(std::process::Stdio::null())
                .status();
            assert!(std::fs::write(m.join("probe"), vec![0u8; 8192]).is_err(), "the tmpfs is full");
        }
        let before = tree_bytes(&copy);
        for c in cmds.iter().filter(|c| c[0] != "export") {
            let out = loop_cmd(&repo).args(c).arg("--state-dir").arg(&copy).output().unwrap();
            assert_eq!(out.status.code(), Some(exit::OK), "{mode} {c:?}: {:?}", text(&out));
        }
        same_tree(&before, &tree_bytes(&copy), mode);
    }
}

/// A run killed within its first milliseconds leaves only a staging directory (or, from format
/// 1, a run directory with just its lock): listed as empty, skipped by status, removed by clean.
#[test]
fn an_empty_run_is_listed_skipped_and_removable() {
    let repo = demo_repo();
    run_demo(&repo, "20260101-000000-aaaaaa");
    let runs = repo.join(".loop/runs");
    // Sorts after the real run, as a newer run would.
    let staged = runs.join(".new-20260101-000001-bbbbbb");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("run.lock"), "").unwrap();
    std::fs::write(staged.join("journal.log"), b"LOOPLOG2").unwrap();
    let old = runs.join("20260101-000002-cccccc");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("lock"), "123").unwrap();

    let out = loop_cmd(&repo).args(["runs", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    let by_id = |id: &str| v.as_array().unwrap().iter().find(|r| r["run_id"] == id).cloned().expect(id);
    assert_eq!(by_id("20260101-000001-bbbbbb")["state"], "empty");
    assert_eq!(by_id("20260101-000002-cccccc")["state"], "empty");
    assert_eq!(by_id("20260101-000000-aaaaaa")["state"], "finished");

    let out = loop_cmd(&repo).args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "status skips empty runs: {:?}", text(&out));
    assert_eq!(json(&out)["run_id"], "20260101-000000-aaaaaa");

    for _ in 0..2 {
        let out = loop_cmd(&repo).args(["clean"]).output().unwrap();
        assert_eq!(out.status.code(), Some(exit::OK), "clean: {:?}", text(&out));
    }
    assert!(!staged.exists() && !old.exists(), "empty runs removed");
    assert!(runs.join("20260101-000000-aaaaaa/journal.log").exists(), "the real run stays");
}

/// A format-1 journal (sled + WAL) still replays, read from a private copy without a byte of the
/// original changed, and resume upgrades it to format 2 and keeps the original.
#[test]
fn format_1_journals_still_replay_and_resume() {
    use devloop::journal::log::scan_file;
    use devloop::journal::{SledStore, Store};
    let repo = demo_repo();
    let out = loop_cmd(&repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "new")
        .env("LOOP_FAULT_AFTER_APPEND", "25")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(exit::OK));
    let records = scan_file(&log_path(&repo, "new"), Some("new")).unwrap().records;
    // Rewrite the same run in format 1, as loop 0.1 left it.
    let dir = repo.join(".loop/runs/new");
    std::fs::remove_file(dir.join("journal.log")).unwrap();
    std::fs::rename(dir.join("run.lock"), dir.join("lock")).unwrap();
    {
        let mut s = SledStore::open(&dir.join("journal")).unwrap();
        s.append(&records).unwrap();
    }
    let before = tree_bytes(&dir);
    let (code, stdout, err) = replay_q(&repo, "new");
    assert_eq!(code, Some(exit::OK), "{err}");
    // The fault aborts right after the 25th record; a record journaled in the same group as it
    // (an event and the `phase_started` it leads to) is durable with it.
    assert!((25..=26).contains(&records.len()), "{} records", records.len());
    assert_eq!(records_of(&stdout), records.len() as u64);
    same_tree(&before, &tree_bytes(&dir), "replay of a format-1 journal wrote to it");

    let out = loop_cmd(&repo).args(["resume", "new", "--json", "-q"]).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{err}");
    assert!(err.contains("upgraded to format 2"), "{err}");
    assert!(dir.join("journal.log").exists() && dir.join("journal.v1").is_dir());
    let (code, _, err) = replay_q(&repo, "new");
    assert_eq!(code, Some(exit::OK), "{err}");
}

/// A power cut while a run was staged (before its first record was durable) leaves
/// `runs/.new-<id>/`; a new run under the same id acknowledged nothing there, so it proceeds
/// instead of refusing. Seen with power_cut seed 1796282737680829760 ("run powercut already
/// exists").
#[test]
fn a_run_staged_and_cut_before_its_first_record_gives_way_to_a_new_run_of_that_id() {
    let repo = demo_repo();
    let staged = repo.join(".loop/runs/.new-cutrun");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("run.lock"), "").unwrap();
    std::fs::write(staged.join("journal.log"), b"LOOPLOG2").unwrap();
    let out = run_demo(&repo, "cutrun");
    // The demo ends with one issue Capped.
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    assert!(!staged.exists(), "the staged leftover was replaced");
    assert!(log_path(&repo, "cutrun").exists());
    let (code, _, err) = replay_q(&repo, "cutrun");
    assert_eq!(code, Some(exit::OK), "{err}");
}
