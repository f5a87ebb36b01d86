//! Pre-flight through the real binary: a run that cannot start says every reason at once, one
//! line each, exits 2 and writes nothing (no state dir, journal, branch, worktree or git config).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{demo_repo, exit, git, loop_cmd, text, TestRepo};

/// Every file and directory below `dir` with its bytes (directories: empty), symlinks as links.
pub(crate) fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                out.insert(rel, Vec::new());
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                out.insert(rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// What a run could change: every byte under the repo (`.git` and `.loop` included), the refs
/// and the worktrees git knows.
pub(crate) fn everything(repo: &TestRepo) -> (BTreeMap<PathBuf, Vec<u8>>, String, String) {
    (tree(repo.path()), git(repo, &["for-each-ref"]), git(repo, &["worktree", "list", "--porcelain"]))
}

fn fake_codex(repo: &TestRepo, login_exit: u8) -> PathBuf {
    let fake = repo.env().root().join("fake-codex");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = 'login status' ]; then echo 'WARNING: noise' >&2; echo 'Not logged in' >&2; exit {login_exit}; fi\n\
             echo 'the agent must not run' >&2\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

#[test]
fn every_problem_is_named_at_once_and_nothing_is_written() {
    let repo = demo_repo();
    // A dirty checkout, an issue doc changed since its commit, a new one never committed.
    std::fs::write(repo.join("README.md"), "changed\n").unwrap();
    let orb2 = repo.join("docs/projects/orbit/issues/ORB-2.md");
    let text2 = std::fs::read_to_string(&orb2).unwrap();
    std::fs::write(&orb2, format!("{text2}\nmore acceptance\n")).unwrap();
    std::fs::write(
        repo.join("docs/projects/orbit/issues/ORB-7.md"),
        "---\nid: ORB-7\ntitle: New\nmilestone: M1-core\n---\n",
    )
    .unwrap();
    // More free space than any disk has, a codex that is not logged in, no gt.
    std::fs::write(repo.join("loop.toml"), "[run]\nmin_free_disk_mb = 1000000000000\n").unwrap();
    let fake = fake_codex(&repo, 1);
    let before = everything(&repo);

    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--codex-bin"])
        .arg(&fake)
        .args(["--stack", "graphite"])
        .env("LOOP_GT_BIN", "/nonexistent/gt")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let want = [
        "loop: error: main checkout is not clean ( M README.md,  M docs/projects/orbit/issues/ORB-2.md, ?? docs/projects/orbit/issues/ORB-7.md, ?? loop.toml); commit or stash, or pass --allow-dirty",
        "loop: error: issue doc docs/projects/orbit/issues/ORB-2.md is changed since it was committed in HEAD: commit it;",
        "loop: error: issue doc docs/projects/orbit/issues/ORB-7.md is not committed in HEAD: commit it;",
        &format!("loop: error: codex is not logged in: `{} login status` ended with exit code 1 (Not logged in); run `codex login`", fake.display()),
        "loop: error: --stack graphite needs gt: /nonexistent/gt was not found",
        "loop: error: only ",
        "loop: pre-flight found 6 problem(s); nothing was written",
    ];
    assert_eq!(lines.len(), want.len(), "one line per problem: {stderr}");
    for (got, want) in lines.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?}\n  should start with {want:?}");
    }
    assert!(lines[5].contains("a run needs at least 1000000000000 MiB"), "{stderr}");
    assert!(!stderr.contains("the agent must not run"), "{stderr}");
    assert_eq!(everything(&repo), before, "a failed pre-flight changed the repo, its refs or worktrees");
    assert!(!repo.join(".loop").exists());

    // The dry run shows the same problems, and starts nothing either.
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--dry-run", "--codex-bin"])
        .arg(&fake)
        .args(["--stack", "graphite"])
        .env("LOOP_GT_BIN", "/nonexistent/gt")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    // It exits as the real run did, after its summary, which starts with the same problems.
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("warning: main checkout is not clean"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[3].starts_with("warning: codex is not logged in"), "{stdout}");
    assert_eq!(lines[6], "`loop run` would not start: 6 problem(s) above", "{stdout}");
    assert!(stdout.contains("\n== ORB-4: "), "the summary follows: {stdout}");
    assert!(stderr.contains("6 problem(s) would stop `loop run`"), "{stderr}");
    assert_eq!(everything(&repo), before, "a dry run changed the repo");
}

#[test]
fn allow_dirty_covers_the_checkout_but_not_an_uncommitted_issue_doc() {
    let repo = demo_repo();
    std::fs::write(repo.join("notes.txt"), "mine\n").unwrap();
    std::fs::write(
        repo.join("docs/projects/orbit/issues/ORB-7.md"),
        "---\nid: ORB-7\ntitle: New\nmilestone: M1-core\n---\n",
    )
    .unwrap();
    let before = everything(&repo);
    let run = |extra: &[&str]| {
        loop_cmd(&repo)
            .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--allow-dirty"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.starts_with(
            "loop: error: issue doc docs/projects/orbit/issues/ORB-7.md is not committed in HEAD: commit it \
             (--allow-dirty does not cover issue docs); the agent's worktree is made from a commit"
        ),
        "{stderr}"
    );
    assert_eq!(everything(&repo), before);

    // Without the new doc, --allow-dirty lets the dirty checkout through (the simulated agent
    // needs no codex), and the run reaches its end.
    std::fs::remove_file(repo.join("docs/projects/orbit/issues/ORB-7.md")).unwrap();
    let out = run(&[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert!(stderr.starts_with("loop: error: main checkout is not clean (?? notes.txt)"), "{stderr}");
    let out = run(&["--allow-dirty"]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
}

#[test]
fn without_the_guard_only_the_issue_docs_status_is_checked() {
    // `--no-guard` turns the checkout's check off: an unrelated change passes, a changed issue
    // doc still does not (its status is asked for the docs alone).
    let repo = demo_repo();
    std::fs::write(repo.join("notes.txt"), "mine\n").unwrap();
    let doc = repo.join("docs/projects/orbit/issues/ORB-1.md");
    let text_before = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, format!("{text_before}\nA line added after the commit.\n")).unwrap();
    let before = everything(&repo);
    let run = || {
        loop_cmd(&repo)
            .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q", "--no-guard"])
            .output()
            .unwrap()
    };
    let out = run();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert!(
        stderr.starts_with(
            "loop: error: issue doc docs/projects/orbit/issues/ORB-1.md is changed since it was committed"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(everything(&repo), before);

    std::fs::write(&doc, text_before).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
}

#[test]
fn a_logged_in_codex_passes_and_an_unwritable_state_dir_does_not() {
    let repo = demo_repo();
    let fake = fake_codex(&repo, 0);
    // The state dir would be made below a file: it cannot be written.
    let blocker = repo.env().root().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let state = blocker.join("state");
    let before = everything(&repo);
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--codex-bin"])
        .arg(&fake)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert_eq!(
        stderr.lines().next().unwrap(),
        format!("loop: error: state dir {}: not writable: not a directory", blocker.display())
    );
    assert_eq!(stderr.lines().count(), 2, "codex logged in is no problem: {stderr}");
    assert_eq!(everything(&repo), before);
}
