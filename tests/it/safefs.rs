//! Issue #10 part 4: no write loop makes follows a symlink out of the tree. The real binary, the
//! simulated agent, real git; the victim lives outside the repository and must never change.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use crate::support::{exit, git, loop_cmd, repo_with, text, TestEnvironment, TestRepo, DEMO_DOCS};

const DOC: &str = "docs/projects/orbit/reviews/M1-core/ORB-1.md";

/// A directory outside the repository holding `victim.txt`.
fn outside() -> TestRepo {
    TestEnvironment::new().dir_named("outside", &[("victim.txt", b"victim\n")])
}

fn run(repo: &TestRepo, scenario: Option<(&Path, &str)>) -> Output {
    let mut c = loop_cmd(repo);
    c.args(["run", "-m", "M1-core", "--agent", "sim", "-q"]);
    if let Some((dir, s)) = scenario {
        // Outside the repository, so the main checkout stays clean for the guard.
        let f = dir.join("scenario.json");
        std::fs::write(&f, s).unwrap();
        c.arg("--sim-scenario").arg(f);
    }
    c.output().unwrap()
}

fn status(repo: &TestRepo) -> serde_json::Value {
    crate::support::json(&loop_cmd(repo).args(["status", "--json"]).output().unwrap())
}

fn issue<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap()
}

/// The `guard_violation` events of the only run, as their change lists.
fn violations(repo: &TestRepo) -> Vec<String> {
    let id = std::fs::read_dir(repo.join(".loop/runs")).unwrap().next().unwrap().unwrap().file_name();
    let out = loop_cmd(repo).args(["replay", id.to_str().unwrap(), "--json"]).output().unwrap();
    crate::support::json(&out)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["body"]["event"]["event"] == "guard_violation")
        .map(|t| t["body"]["event"]["changes"].to_string())
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Seen: the dev agent ran `ln -sf <outside>/victim.txt docs/projects/orbit/reviews/REVIEW-M1-core.md`
/// (the review doc's path then; now one file per issue)
/// in its worktree, and loop appended its review to victim.txt; the issue ended Done.
#[test]
fn a_review_doc_symlinked_by_the_agent_is_a_guard_violation_and_the_victim_is_untouched() {
    let repo = repo_with(DEMO_DOCS);
    let out = outside();
    let victim = out.join("victim.txt");
    let scenario = format!(
        r#"{{"ORB-1": {{"dev": "shell:mkdir -p docs/projects/orbit/reviews/M1-core && ln -sf {} {DOC}"}}}}"#,
        victim.display()
    );
    let o = run(&repo, Some((&out, &scenario)));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::NOT_ALL_DONE), "{stdout}\n{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n", "loop wrote through the symlink");
    assert_eq!(entries(&out), ["scenario.json", "victim.txt"]);
    let st = status(&repo);
    let orb1 = issue(&st, "ORB-1");
    assert_eq!(orb1["state"], "Failed", "{st}");
    let reason = orb1["reason"].as_str().unwrap();
    assert!(reason.starts_with("guard: ") && reason.contains(DOC) && reason.contains("is a symlink"), "{reason}");
    let v = violations(&repo);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains(DOC) && v[0].contains(&victim.display().to_string()), "{v:?}");
    assert_eq!(issue(&st, "ORB-2")["state"], "Blocked");
}

/// Seen: a committed directory symlink `reviews -> /tmp/x` in the repository had loop write its
/// review doc into /tmp/x.
#[test]
fn a_committed_directory_symlink_is_a_guard_violation_and_nothing_lands_outside() {
    let repo = repo_with(DEMO_DOCS);
    let out = outside();
    let x = out.join("x");
    std::fs::create_dir(&x).unwrap();
    symlink(&x, repo.join("docs/projects/orbit/reviews")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "reviews symlink"]);
    let o = run(&repo, None);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::NOT_ALL_DONE), "{stdout}\n{stderr}");
    assert!(entries(&x).is_empty(), "loop wrote into the symlinked dir: {:?}", entries(&x));
    let st = status(&repo);
    let orb1 = issue(&st, "ORB-1");
    assert_eq!(orb1["state"], "Failed", "{st}");
    let reason = orb1["reason"].as_str().unwrap();
    assert!(
        reason.contains("docs/projects/orbit/reviews is a symlink") && reason.contains(&x.display().to_string()),
        "{reason}"
    );
    // ORB-1 and ORB-3 have no dependencies, so both get to review and meet the symlink.
    let v = violations(&repo);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().all(|c| c.contains("docs/projects/orbit/reviews is a symlink")), "{v:?}");
    // Every issue reaches its review doc through the same symlink: none ends Done.
    for i in st["issues"].as_array().unwrap() {
        assert_ne!(i["state"], "Done", "{st}");
    }
}

/// Without symlinks the review doc is still written (the refusal is not a blanket one).
#[test]
fn without_symlinks_the_review_doc_is_written_and_committed() {
    let repo = repo_with(DEMO_DOCS);
    let o = run(&repo, None);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::OK), "{stdout}\n{stderr}");
    let doc = git(&repo, &["show", &format!("loop/M1-core/ORB-1:{DOC}")]);
    assert!(doc.starts_with("# Reviews: M1-core / ORB-1\n") && doc.contains("<!-- loop-review "), "{doc}");
}

/// `loop prompts install` into a dir that has a symlink is refused as a whole.
#[test]
fn prompts_install_through_a_symlink_is_refused_and_writes_nothing() {
    let repo = repo_with(DEMO_DOCS);
    let out = outside();
    let h = tempfile::tempdir().unwrap();
    let home = h.path().to_path_buf();
    let (codex, claude) = (home.join("codex"), home.join("claude"));
    std::fs::create_dir_all(&codex).unwrap();
    std::fs::create_dir_all(&claude).unwrap();
    let install = |codex: &Path, claude: &Path| {
        loop_cmd(&repo)
            .args(["prompts", "install", "--codex-home"])
            .arg(codex)
            .arg("--claude-dir")
            .arg(claude)
            .output()
            .unwrap()
    };

    // A directory symlink: <codex home>/prompts -> outside.
    symlink(&out, codex.join("prompts")).unwrap();
    let o = install(&codex, &claude);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::ERROR), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("{} is a symlink", codex.join("prompts").display())), "{stderr}");
    assert_eq!(entries(&out), ["victim.txt"]);
    assert!(entries(&claude).is_empty(), "a refused install wrote elsewhere: {:?}", entries(&claude));

    // A file symlink in the last component.
    std::fs::remove_file(codex.join("prompts")).unwrap();
    symlink(out.join("victim.txt"), claude.join("dev-auto-fix-review.md")).unwrap();
    let o = install(&codex, &claude);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::ERROR), "{stdout}\n{stderr}");
    assert!(stderr.contains("dev-auto-fix-review.md is a symlink"), "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("victim.txt")).unwrap(), "victim\n");
    assert!(!codex.join("prompts").exists(), "nothing is written before every target is checked");

    // Without symlinks it installs.
    std::fs::remove_file(claude.join("dev-auto-fix-review.md")).unwrap();
    let o = install(&codex, &claude);
    assert_eq!(o.status.code(), Some(exit::OK), "{:?}", text(&o));
    assert_eq!(entries(&claude).len(), 3);
    assert_eq!(entries(&codex.join("prompts")).len(), 3);
}

/// Seen: a failed write left an empty review doc, and a later run appended to it without its
/// header. An empty (here: committed empty) doc gets the header again.
#[test]
fn an_empty_review_doc_gets_its_header_again() {
    let repo = repo_with(DEMO_DOCS);
    std::fs::create_dir_all(repo.join("docs/projects/orbit/reviews/M1-core")).unwrap();
    std::fs::write(repo.join(DOC), "").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "empty review doc"]);
    let o = run(&repo, None);
    assert_eq!(o.status.code(), Some(exit::OK), "{:?}", text(&o));
    let doc = git(&repo, &["show", &format!("loop/M1-core/ORB-1:{DOC}")]);
    assert!(doc.starts_with("# Reviews: M1-core / ORB-1\n\nAppended by loop"), "{doc}");
}

/// loop commits with `git -C <worktree>`, which follows the worktree's `.git`: an agent that
/// points it (a symlink) at another repository would have loop commit there.
#[test]
fn a_symlinked_dot_git_in_the_worktree_is_a_guard_violation_and_the_other_repo_is_untouched() {
    let repo = repo_with(DEMO_DOCS);
    let other = repo_with(&[("other.txt", "other\n")]);
    let out = outside();
    let before = git(&other, &["rev-parse", "HEAD"]);
    let scenario = format!(r#"{{"ORB-1": {{"dev": "shell:rm .git && ln -s {}/.git .git"}}}}"#, other.display());
    let o = run(&repo, Some((&out, &scenario)));
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(exit::NOT_ALL_DONE), "{stdout}\n{stderr}");
    assert_eq!(git(&other, &["rev-parse", "HEAD"]), before, "loop committed into another repository");
    let st = status(&repo);
    let orb1 = issue(&st, "ORB-1");
    assert_eq!(orb1["state"], "Failed", "{st}");
    let reason = orb1["reason"].as_str().unwrap();
    assert!(reason.contains("committing: ") && reason.contains("/.git is a symlink"), "{reason}");
}
