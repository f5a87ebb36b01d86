//! Broken input through the real binary: every case must end in its documented exit code and one
//! `loop: error:` line naming the file and line (or the journal record), with no panic, nothing
//! half-written, and a run that met the bad input still resumable and replayable.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::exit::{self, BAD_INPUT, CORRUPT, NOT_ALL_DONE};
use crate::support::{TestEnvironment, TestRepo};

struct Repo {
    dir: TestRepo,
}

impl Repo {
    /// A directory with `files` (paths relative to it); no git, for commands that need none.
    /// Every `loop` command of its environment runs as run `r1`.
    fn plain(files: &[(&str, &[u8])]) -> Repo {
        Repo { dir: TestEnvironment::with_run_id("r1").dir_named("repo", files) }
    }

    /// The same, committed to a git repository, for `loop run`.
    fn git(files: &[(&str, &[u8])]) -> Repo {
        let r = Repo::plain(files);
        for args in [&["init", "-q", "-b", "main"][..], &["add", "-A"], &["commit", "-q", "-m", "docs"]] {
            r.dir.git(args);
        }
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// `loop ARGS --repo DIR`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let repo = self.path().to_str().expect("utf-8 temp path");
        all.extend(["--repo", repo]);
        self.cmd(&all, &[])
    }

    /// `loop ARGS` with `env` added, run from the environment's root (which is no repository:
    /// only `--repo` or `--file` says what a command works on).
    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let env_ = self.dir.env();
        env_.loop_cmd(env_.root()).args(args).envs(env.iter().copied()).output().expect("run loop")
    }

    /// Run ids recorded under .loop/runs (a rejected run must leave none).
    fn runs(&self) -> Vec<String> {
        match std::fs::read_dir(self.path().join(".loop/runs")) {
            Ok(d) => d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit `code`, and stderr is exactly one `loop: error:` line that starts with `prefix`
/// (after the tag) and contains `needle`.
#[track_caller]
fn fails(out: &Output, code: i32, prefix: &str, needle: &str) -> String {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    let msg = lines[0].strip_prefix("loop: error: ").unwrap_or_else(|| panic!("untagged: {err}"));
    assert!(msg.starts_with(prefix), "want prefix {prefix:?}: {msg}");
    assert!(msg.contains(needle), "want {needle:?} in: {msg}");
    msg.to_owned()
}

const ISSUES: &str = "docs/projects/p/issues";

fn issue(name: &str, text: &str) -> (String, Vec<u8>) {
    (format!("{ISSUES}/{name}"), text.as_bytes().to_vec())
}

/// `loop plan` on docs made of `files`; the docs must be rejected with `at` (`file:line`) and
/// `needle`, and the repo left untouched.
#[track_caller]
fn plan_rejects(files: &[(String, Vec<u8>)], at: &str, needle: &str) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::plain(&files);
    let out = repo.run(&["plan"]);
    let msg = match at.strip_suffix(':') {
        // "file:" = some line of file: the parser decides where exactly it gave up.
        Some(file) => {
            let msg = fails(&out, BAD_INPUT, &format!("{file}:"), needle);
            let rest = &msg[file.len() + 1..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            assert!(digits > 0 && rest[digits..].starts_with(": "), "no line number: {msg}");
            msg
        }
        None => fails(&out, BAD_INPUT, &format!("{at}: "), needle),
    };
    assert!(!msg.chars().any(char::is_control), "control character in {msg:?}");
    assert!(!repo.path().join(".loop").exists(), "plan wrote state");
}

fn good(name: &str, id: &str) -> (String, Vec<u8>) {
    issue(name, &format!("---\nid: {id}\nmilestone: M1\n---\n# {id}\n"))
}

// ---------------------------------------------------------------------------------------------
// Issue docs: front matter and body
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_file() {
    plan_rejects(&[issue("a.md", "")], &format!("{ISSUES}/a.md:1"), "no front matter");
}

#[test]
fn truncated_before_the_closing_fence() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\ntitle: half a ti")],
        &format!("{ISSUES}/a.md:1"),
        "unterminated front matter",
    );
}

#[test]
fn truncated_inside_a_flow_list() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\nmilestone: M1\nblocked_by: [B,\n---\n")],
        &format!("{ISSUES}/a.md:4"),
        "unclosed bracket",
    );
}

#[test]
fn only_an_opening_fence() {
    plan_rejects(&[issue("a.md", "---\n")], &format!("{ISSUES}/a.md:1"), "unterminated");
}

#[test]
fn invalid_utf8_names_its_line() {
    let files = vec![good("a.md", "A"), (format!("{ISSUES}/b.md"), b"---\nid: B\ntitle: caf\xe9\n---\n".to_vec())];
    plan_rejects(&files, &format!("{ISSUES}/b.md:3"), "not valid UTF-8");
}

#[test]
fn bom_keeps_line_numbers() {
    plan_rejects(&[issue("a.md", "\u{feff}---\nid: A\nid: B\n---\n")], &format!("{ISSUES}/a.md:3"), "duplicate");
}

#[test]
fn crlf_keeps_line_numbers() {
    plan_rejects(
        &[issue("a.md", "---\r\nid: A\r\nmilestone: M1\r\nblocked_by:\r\n  - ZZ\r\n---\r\n")],
        &format!("{ISSUES}/a.md:5"),
        "blocked_by names unknown issue 'ZZ'",
    );
}

#[test]
fn tab_indentation_in_yaml() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\nblocked_by:\n\t- B\n---\n")],
        &format!("{ISSUES}/a.md:4"),
        "malformed front matter",
    );
}

#[test]
fn duplicate_keys() {
    plan_rejects(&[issue("a.md", "---\nid: A\ntitle: x\ntitle: y\n---\n")], &format!("{ISSUES}/a.md:4"), "duplicate");
}

#[test]
fn duplicate_issue_ids_across_files() {
    plan_rejects(
        &[good("a.md", "A"), good("b.md", "A")],
        &format!("{ISSUES}/b.md:2"),
        "also in docs/projects/p/issues/a.md:2",
    );
}

#[test]
fn front_matter_that_is_a_list() {
    plan_rejects(&[issue("a.md", "---\n- id: A\n---\n")], &format!("{ISSUES}/a.md:2"), "malformed front matter");
}

#[test]
fn missing_id() {
    plan_rejects(
        &[issue("a.md", "---\ntitle: no id\n---\n")],
        &format!("{ISSUES}/a.md:2"),
        "missing required field 'id'",
    );
}

/// A typo in a key loop reads would silently drop the dependency: `plan` and `run` refuse it.
#[test]
fn a_misspelt_blocked_by_names_its_line_and_the_key_meant() {
    let files =
        [good("a.md", "A"), issue("b.md", "---\nid: B\nmilestone: M1\ntitle: b\nblokced_by: [A]\nowner: me\n---\n")];
    plan_rejects(
        &files,
        &format!("{ISSUES}/b.md:5"),
        "unknown front-matter key 'blokced_by': did you mean 'blocked_by'?",
    );
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::git(&files);
    let out = repo.run(&["run", "--agent", "sim"]);
    fails(&out, BAD_INPUT, &format!("{ISSUES}/b.md:5: "), "did you mean 'blocked_by'?");
    assert!(repo.runs().is_empty());
}

/// The Issue Map's "Blocked by" column and the issue docs disagree: both are named.
#[test]
fn an_issue_map_that_contradicts_the_docs_names_both() {
    let map = "---\nid: M1\n---\n# M1\n\n## Issue Map\n\n| ID | Title | Blocked by |\n|---|---|---|\n\
               | [A](../issues/a.md) | a | — |\n| [B](../issues/b.md) | b | — |\n";
    plan_rejects(
        &[
            good("a.md", "A"),
            issue("b.md", "---\nid: B\nmilestone: M1\nblocked_by: [A]\n---\n"),
            ("docs/projects/p/milestones/M1.md".into(), map.as_bytes().to_vec()),
        ],
        "docs/projects/p/milestones/M1.md:11",
        &format!("Issue Map says 'B' is blocked by nothing, but {ISSUES}/b.md:4 says A; make them agree"),
    );
}

#[test]
fn id_that_is_a_mapping() {
    plan_rejects(
        &[issue("a.md", "---\ntitle: t\nid: {x: 1}\n---\n")],
        &format!("{ISSUES}/a.md:3"),
        "malformed front matter",
    );
}

#[test]
fn id_with_a_newline() {
    plan_rejects(&[issue("a.md", "---\nid: \"A\\nB\"\n---\n")], &format!("{ISSUES}/a.md:2"), "control characters");
}

#[test]
fn id_with_a_nul_byte() {
    plan_rejects(
        &[issue("a.md", "---\ntitle: t\nid: \"A\\0B\"\n---\n")],
        &format!("{ISSUES}/a.md:3"),
        "control characters",
    );
}

#[test]
fn empty_dependency_entry() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\nblocked_by:\n  - ''\n---\n")],
        &format!("{ISSUES}/a.md:4"),
        "must not be empty",
    );
}

#[test]
fn deeply_nested_yaml() {
    let deep = format!("---\nid: A\nextra: {}{}\n---\n", "[".repeat(100_000), "]".repeat(100_000));
    plan_rejects(&[issue("a.md", &deep)], &format!("{ISSUES}/a.md:3"), "malformed front matter");
}

#[test]
fn deeply_nested_block_yaml() {
    let mut yaml = String::from("---\nid: A\nextra:\n");
    for depth in 1..5_000 {
        yaml.push_str(&" ".repeat(depth));
        yaml.push_str("- \n");
    }
    yaml.push_str("---\n");
    plan_rejects(&[issue("a.md", &yaml)], &format!("{ISSUES}/a.md:"), "malformed front matter: budget breached");
}

#[test]
fn alias_bomb_in_an_ignored_field() {
    // Billion laughs: nine levels of ten aliases each would expand to 10^9 nodes.
    let mut yaml = String::from("---\nid: A\nmilestone: M1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    yaml.push_str("---\n");
    plan_rejects(&[issue("a.md", &yaml)], &format!("{ISSUES}/a.md:"), "malformed front matter: budget breached");
}

#[test]
fn enormous_id_is_not_echoed_whole() {
    // `\a` is YAML's escape for BEL, a control character ids may not contain.
    let id = format!("{}\\a", "x".repeat(5 << 20));
    let files = [issue("a.md", &format!("---\nid: \"{id}\"\n---\n"))];
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::plain(&files);
    let out = repo.run(&["plan"]);
    let msg = fails(&out, BAD_INPUT, &format!("{ISSUES}/a.md:2: "), "control characters");
    assert!(msg.len() < 1000, "a 5 MB id was echoed into the error ({} bytes)", msg.len());
}

#[test]
fn enormous_title_is_accepted() {
    let title = "t".repeat(5 << 20);
    let files = [issue("a.md", &format!("---\nid: A\nmilestone: M1\ntitle: {title}\n---\n"))];
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::plain(&files);
    let out = repo.run(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["issues"][0]["title"].as_str().map(str::len), Some(5 << 20));
}

#[test]
fn dependency_on_itself() {
    let repo = Repo::plain(&[(&format!("{ISSUES}/a.md"), b"---\nid: A\nmilestone: M1\nblocked_by: [A]\n---\n")]);
    let msg = fails(&repo.run(&["plan"]), BAD_INPUT, "dependency cycle: A → A (docs/projects/p/issues/a.md:4)", "");
    assert_eq!(msg, "dependency cycle: A → A (docs/projects/p/issues/a.md:4)");
}

#[test]
fn ten_thousand_issue_cycle() {
    let n = 10_000;
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            issue(
                &format!("i{i:05}.md"),
                &format!("---\nid: I{i:05}\nmilestone: M1\nblocked_by: [I{:05}]\n---\n", (i + 1) % n),
            )
        })
        .collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::plain(&files);
    let out = repo.run(&["plan"]);
    let msg = fails(&out, BAD_INPUT, "dependency cycle: I00000 → I00001 → ", "(docs/projects/p/issues/i00000.md:4)");
    assert_eq!(msg.matches(" → ").count(), n, "the cycle is not complete");
}

#[test]
fn unknown_dependency() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\nblocking:\n  - B\n  - \"../../etc/passwd\"\n---\n"), good("b.md", "B")],
        &format!("{ISSUES}/a.md:5"),
        "blocking names unknown issue '../../etc/passwd'",
    );
}

#[test]
fn unknown_milestone_of_an_issue() {
    let files = vec![good("a.md", "A"), ("docs/projects/p/milestones/M2.md".into(), b"# M2\n".to_vec())];
    plan_rejects(&files, &format!("{ISSUES}/a.md:3"), "milestone 'M1' is not a milestone of project p");
}

#[test]
fn no_docs_at_all() {
    let repo = Repo::plain(&[("README.md", b"# nothing here\n")]);
    fails(&repo.run(&["plan"]), BAD_INPUT, "no issue docs found under ", "/docs/projects/*/issues/");
}

#[test]
fn unknown_milestone_requested() {
    let repo = Repo::plain(&[(&format!("{ISSUES}/a.md"), b"---\nid: A\nmilestone: M1\n---\n")]);
    fails(
        &repo.run(&["plan", "--milestone", "M1; rm -rf ~"]),
        BAD_INPUT,
        "unknown milestone 'M1; rm -rf ~'",
        "known: M1",
    );
}

// ---------------------------------------------------------------------------------------------
// Milestone docs and Issue Map tables
// ---------------------------------------------------------------------------------------------

const MS: &str = "docs/projects/p/milestones";

#[test]
fn issue_map_names_an_unknown_issue() {
    let map = "---\ntitle: M\n---\n# M1\n\n## Issue Map\n| ID | Title |\n|---|---|\n| [A](../issues/a.md) | a |\n| `NOPE` | gone |\n";
    plan_rejects(
        &[good("a.md", "A"), (format!("{MS}/M1.md"), map.as_bytes().to_vec())],
        &format!("{MS}/M1.md:10"),
        "Issue Map names unknown issue 'NOPE'",
    );
}

#[test]
fn issue_map_with_crlf_and_bom() {
    let map = "\u{feff}# M1\r\n## Issue Map\r\n| id |\r\n|:--:|\r\n| A |\r\n| B |\r\n";
    plan_rejects(
        &[good("a.md", "A"), (format!("{MS}/M1.md"), map.as_bytes().to_vec())],
        &format!("{MS}/M1.md:6"),
        "unknown issue 'B'",
    );
}

#[test]
fn issue_map_with_an_escaped_pipe() {
    let map = "## Issue Map\n| id | note |\n|-|-|\n| A\\|B | x |\n";
    plan_rejects(
        &[good("a.md", "A"), (format!("{MS}/M1.md"), map.as_bytes().to_vec())],
        &format!("{MS}/M1.md:4"),
        "unknown issue 'A|B'",
    );
}

#[test]
fn milestone_doc_with_invalid_utf8() {
    plan_rejects(
        &[good("a.md", "A"), (format!("{MS}/M1.md"), b"# M1\n\n## Issue Map\n| id |\n|-|\n| \xc3\x28 |\n".to_vec())],
        &format!("{MS}/M1.md:6"),
        "not valid UTF-8",
    );
}

#[test]
fn duplicate_milestone_ids() {
    plan_rejects(
        &[
            good("a.md", "A"),
            (format!("{MS}/M1.md"), b"# one\n".to_vec()),
            (format!("{MS}/other.md"), b"---\nid: M1\n---\n".to_vec()),
        ],
        &format!("{MS}/other.md:1"),
        "duplicate milestone id 'M1'",
    );
}

#[test]
fn milestone_front_matter_unterminated() {
    plan_rejects(
        &[good("a.md", "A"), (format!("{MS}/M1.md"), b"---\nid: M1\n# Issue Map\n".to_vec())],
        &format!("{MS}/M1.md:1"),
        "unterminated",
    );
}

#[test]
fn issue_map_lists_an_issue_whose_front_matter_names_another_milestone() {
    let m1 = "# M1\n\n## Issue Map\n| ID |\n|---|\n| A |\n| B |\n";
    plan_rejects(
        &[
            good("a.md", "A"),
            issue("b.md", "---\nid: B\nmilestone: M2\n---\n"),
            (format!("{MS}/M1.md"), m1.as_bytes().to_vec()),
            (format!("{MS}/M2.md"), b"# M2\n".to_vec()),
        ],
        &format!("{MS}/M1.md:7"),
        "Issue Map of milestone 'M1' lists 'B', but its front matter names milestone 'M2' (docs/projects/p/issues/b.md:3)",
    );
}

#[test]
fn two_issue_maps_list_one_issue() {
    let map = |m: &str| format!("# {m}\n## Issue Map\n| ID |\n|---|\n| C |\n");
    plan_rejects(
        &[
            good("a.md", "A"),
            issue("c.md", "---\nid: C\n---\n"),
            (format!("{MS}/M1.md"), map("M1").into_bytes()),
            (format!("{MS}/M2.md"), map("M2").into_bytes()),
        ],
        &format!("{MS}/M2.md:5"),
        "Issue Map of milestone 'M2' lists 'C', but the Issue Map of milestone 'M1' lists it too (docs/projects/p/milestones/M1.md:5)",
    );
}

/// `a b` is tamed to `a-b-c95e5a48`, a name another id may already have: both would share one
/// branch and one worktree.
#[test]
fn ids_that_map_to_one_branch_name() {
    let files = [good("a.md", "a b"), good("b.md", "a-b-c95e5a48")];
    let want = "issue 'a-b-c95e5a48' would get the branch and worktree name 'a-b-c95e5a48', as issue 'a b' does (docs/projects/p/issues/a.md:2)";
    plan_rejects(&files, &format!("{ISSUES}/b.md:2"), want);
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::git(&files);
    fails(&repo.run(&["run", "--agent", "sim", "-q"]), BAD_INPUT, &format!("{ISSUES}/b.md:2: "), want);
    assert!(repo.runs().is_empty(), "a rejected run left a journal");
}

// ---------------------------------------------------------------------------------------------
// Scenario files: rejected before anything is written
// ---------------------------------------------------------------------------------------------

fn two_issue_repo() -> Repo {
    Repo::git(&[
        (&format!("{ISSUES}/a.md"), b"---\nid: A\nmilestone: M1\n---\n# A\n"),
        (&format!("{ISSUES}/b.md"), b"---\nid: B\nmilestone: M1\nblocked_by: [A]\n---\n# B\n"),
    ])
}

#[track_caller]
fn scenario_rejected(text: &[u8], needle: &str) {
    let repo = two_issue_repo();
    let f = repo.write(".git/scenario-bad.json", text);
    let shown = f.display().to_string();
    let out = repo.run(&["run", "--agent", "sim", "--sim-scenario", &shown, "-q"]);
    fails(&out, BAD_INPUT, &format!("{shown}: "), needle);
    assert!(repo.runs().is_empty(), "a rejected run left a journal: {:?}", repo.runs());
}

#[test]
fn scenario_truncated() {
    scenario_rejected(b"{\"A\": {\"dev\": \"pa", "line 1 column 17");
}

#[test]
fn scenario_not_an_object() {
    scenario_rejected(b"[\"A\"]", "not a valid scenario");
}

#[test]
fn scenario_names_an_unknown_issue() {
    scenario_rejected(b"{\"../A\": {\"dev\": \"pass\"}}", "names issue ../A, which is not in this milestone");
}

#[test]
fn scenario_bad_outcome() {
    scenario_rejected(b"{\"A\": {\"reviews\": [\"pass\", \"$(reboot)\"]}}", "reviews is \"$(reboot)\"");
}

#[test]
fn scenario_unknown_field() {
    scenario_rejected(b"{\"A\": {\"dve\": \"pass\"}}", "unknown field `dve`");
}

#[test]
fn scenario_deeply_nested() {
    let mut text = "[".repeat(100_000).into_bytes();
    text.extend("]".repeat(100_000).bytes());
    scenario_rejected(&text, "recursion limit exceeded");
}

// ---------------------------------------------------------------------------------------------
// Agent final messages: a bad one fails the issue, never the run or its journal
// ---------------------------------------------------------------------------------------------

/// Runs A and B with `scenario` and returns the final status JSON; the run must end with exit 3
/// and replay cleanly.
fn run_with(scenario: &str, env: &[(&str, &str)]) -> (Repo, Output) {
    let repo = two_issue_repo();
    let f = repo.path().join(".git/scenario.json");
    std::fs::write(&f, scenario).expect("write scenario");
    let repo_s = repo.path().to_str().expect("utf-8").to_owned();
    let out = repo.cmd(
        &[
            "run",
            "--repo",
            &repo_s,
            "--agent",
            "sim",
            "--sim-scenario",
            f.to_str().expect("utf-8"),
            "--json",
            "-q",
            "--phase-timeout",
            "2",
        ],
        env,
    );
    (repo, out)
}

fn status_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn state_of(status: &serde_json::Value, id: &str) -> String {
    let issues = status["issues"].as_array().expect("issues");
    let i = issues.iter().find(|i| i["id"] == id).unwrap_or_else(|| panic!("{id} in {status}"));
    i["state"].as_str().map(str::to_owned).unwrap_or_else(|| i["state"].to_string())
}

#[track_caller]
fn replays_clean(repo: &Repo) {
    let out = repo.run(&["replay", "r1", "-q"]);
    assert_eq!(out.status.code(), Some(exit::OK), "replay: {}", stderr(&out));
}

#[track_caller]
fn agent_outcome_fails_issue(scenario: &str, failed: &str, detail: &str) {
    let (repo, out) = run_with(scenario, &[]);
    assert_eq!(out.status.code(), Some(NOT_ALL_DONE), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    let status = status_of(&out);
    let st = state_of(&status, failed).to_lowercase();
    assert!(st.contains("fail") || st.contains("block"), "{failed} is {st}: {status}");
    assert!(status.to_string().contains(detail), "status does not say why ({detail}): {status}");
    replays_clean(&repo);
}

#[test]
fn dev_message_not_json() {
    agent_outcome_fails_issue(r#"{"A": {"dev": "garbage"}}"#, "A", "not JSON");
}

#[test]
fn dev_message_breaks_schema() {
    agent_outcome_fails_issue(r#"{"A": {"dev": "invalid"}}"#, "A", "dev.schema.json");
}

#[test]
fn review_message_not_json() {
    agent_outcome_fails_issue(r#"{"B": {"reviews": ["garbage"]}}"#, "B", "not JSON");
}

#[test]
fn review_message_breaks_schema() {
    agent_outcome_fails_issue(r#"{"B": {"reviews": ["invalid"]}}"#, "B", "review.schema.json");
}

#[test]
fn fix_message_breaks_schema() {
    agent_outcome_fails_issue(r#"{"A": {"fix": "invalid", "reviews": ["changes_required"]}}"#, "A", "dev.schema.json");
}

#[test]
fn agent_crash_mid_run_then_resume_and_replay() {
    // Killed right after the 4th record is durable, while B still waits for A.
    let (repo, out) = run_with(r#"{"A": {"dev": "garbage"}}"#, &[("LOOP_FAULT_AFTER_APPEND", "4")]);
    assert_ne!(out.status.code(), Some(exit::OK), "the fault hook did not fire: {}", stderr(&out));
    let resumed = repo.run(&["resume", "r1", "--json", "-q"]);
    assert_eq!(resumed.status.code(), Some(NOT_ALL_DONE), "{}", stderr(&resumed));
    assert!(status_of(&resumed).to_string().contains("not JSON"));
    replays_clean(&repo);
}

/// A 50 MB final message: rejected with a short message that quotes only its start, and a
/// 50 MB valid one is accepted whole. (The real codex driver's stream is tested with it.)
#[test]
fn fifty_megabyte_agent_message() {
    use devloop::agent::output::{parse_review, validate, OutputError};
    use devloop::machine::Phase;
    let junk = "x".repeat(50 << 20);
    let e = validate(Phase::Dev, &junk).expect_err("junk");
    assert!(matches!(e, OutputError::NotJson { .. }), "{e:?}");
    assert!(e.to_string().len() < 300, "the error echoes the message: {} bytes", e.to_string().len());

    let big = format!(
        r#"{{"status":"pass","summary":"{}","issues":[],"required_actions":[],"followups":[],"review_doc_path":null,"review_entry_written":false,"confidence":"high"}}"#,
        "s".repeat(50 << 20)
    );
    assert_eq!(parse_review(&big).expect("valid").summary.len(), 50 << 20);
    let mut cut = big.clone();
    cut.truncate(big.len() / 2);
    let e = validate(Phase::Review, &cut).expect_err("truncated");
    assert!(e.to_string().contains("EOF"), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn deeply_nested_agent_message() {
    use devloop::agent::output::validate;
    use devloop::machine::Phase;
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let e = validate(Phase::Review, &deep).expect_err("too deep");
    assert!(e.to_string().contains("recursion limit"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Journals: exported files and the store itself
// ---------------------------------------------------------------------------------------------

/// A finished run (A passes, B fails its dev) and its export file.
fn exported() -> (Repo, Vec<u8>) {
    let (repo, out) = run_with(r#"{"B": {"dev": "failed"}}"#, &[]);
    assert_eq!(out.status.code(), Some(NOT_ALL_DONE), "{}", stderr(&out));
    let file = repo.path().join(".git/r1.loopjnl");
    let out = repo.run(&["export", "r1", "--out", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", stderr(&out));
    let bytes = std::fs::read(&file).expect("export");
    (repo, bytes)
}

/// Record boundaries of an export file: `bounds[k]` is where record k starts.
fn bounds(bytes: &[u8]) -> Vec<usize> {
    let mut b = vec![8];
    while *b.last().expect("one") < bytes.len() {
        let at = *b.last().expect("one");
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4"));
        if len == u32::MAX {
            break; // the trailer
        }
        b.push(at + 4 + len as usize);
    }
    b
}

#[track_caller]
fn replay_file_fails(repo: &Repo, bytes: &[u8], prefix: &str, needle: &str) {
    let f = repo.write(".git/bad.loopjnl", bytes);
    let out = repo.cmd(&["replay", "--file", f.to_str().expect("utf-8"), "-q"], &[]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(CORRUPT), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    // Framing errors stop before replay starts (`loop: error:`); chain errors are replay's verdict.
    let msg = lines[0]
        .strip_prefix("loop: replay failed: ")
        .or_else(|| lines[0].strip_prefix("loop: error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(msg.starts_with(prefix) && msg.contains(needle), "want {prefix:?}…{needle:?}: {msg}");
}

#[test]
fn export_file_round_trips() {
    let (repo, bytes) = exported();
    let f = repo.write(".git/copy.loopjnl", &bytes);
    let out = repo.cmd(&["replay", "--file", f.to_str().expect("utf-8"), "-q"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", stderr(&out));
}

#[test]
fn export_truncated_mid_record() {
    let (repo, bytes) = exported();
    let b = bounds(&bytes);
    let cut = b[3] + 4 + 10;
    replay_file_fails(&repo, &bytes[..cut], "journal file ", "truncated inside record 3");
}

#[test]
fn export_truncated_inside_a_length() {
    let (repo, bytes) = exported();
    let b = bounds(&bytes);
    replay_file_fails(&repo, &bytes[..b[2] + 2], "journal file ", "truncated inside the length of record 2");
}

#[test]
fn export_without_magic() {
    let (repo, bytes) = exported();
    replay_file_fails(&repo, &bytes[1..], "journal file ", "missing LOOPJNL2 or LOOPJNL1 header");
    replay_file_fails(&repo, b"", "journal file ", "missing LOOPJNL2 or LOOPJNL1 header");
}

#[test]
fn export_with_a_flipped_byte() {
    let (repo, bytes) = exported();
    let b = bounds(&bytes);
    let mut bad = bytes.clone();
    bad[b[2] + 20] ^= 0x20;
    replay_file_fails(&repo, &bad, "journal is corrupt at record 2: ", "hash does not match");
}

#[test]
fn export_with_records_swapped() {
    let (repo, bytes) = exported();
    let b = bounds(&bytes);
    let mut bad = bytes[..b[1]].to_vec();
    bad.extend_from_slice(&bytes[b[2]..b[3]]);
    bad.extend_from_slice(&bytes[b[1]..b[2]]);
    bad.extend_from_slice(&bytes[b[3]..]);
    replay_file_fails(&repo, &bad, "journal is corrupt at record 1: ", "says it is record 2");
}

#[test]
fn export_with_a_record_dropped() {
    let (repo, bytes) = exported();
    let b = bounds(&bytes);
    let mut bad = bytes[..b[2]].to_vec();
    bad.extend_from_slice(&bytes[b[3]..]);
    replay_file_fails(&repo, &bad, "journal is corrupt at record 2: ", "says it is record 3");
}

#[test]
fn export_with_a_huge_announced_length() {
    let (repo, bytes) = exported();
    let mut bad = bytes[..8].to_vec();
    bad.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
    bad.extend_from_slice(&bytes[12..]);
    replay_file_fails(&repo, &bad, "journal file ", "truncated inside record 0: 4294967294 bytes announced");
}

#[test]
fn export_of_a_missing_file() {
    let repo = Repo::plain(&[]);
    let out = repo.cmd(&["replay", "--file", repo.path().join("nope.loopjnl").to_str().expect("utf-8")], &[]);
    // A wrong argument, not a damaged journal: exit 2, not 4.
    let msg = fails(&out, BAD_INPUT, "--file ", "nope.loopjnl");
    assert!(msg.contains("No such file"), "{msg}");
}

/// Rewrites record `seq` of run r1 as a careful hand edit would: the file's framing (frame
/// checks, head) is rebuilt around the edited record, so only the hash chain can tell.
fn tamper(repo: &Repo, seq: u64, f: impl FnOnce(&mut Vec<u8>)) {
    use devloop::journal::log::{scan_file, LogStore};
    use devloop::journal::Store;
    let path = repo.path().join(".loop/runs/r1/journal.log");
    let mut records = scan_file(&path, Some("r1")).expect("scan").records;
    f(&mut records[seq as usize].1);
    let fresh = repo.path().join(".git/tampered");
    {
        let mut store = LogStore::create_in(&fresh, "r1").expect("create");
        store.append(&records).expect("append");
    }
    std::fs::rename(fresh.join("journal.log"), &path).expect("replace");
}

#[test]
fn corrupt_store_is_named_and_never_extended() {
    let (repo, _) = exported();
    tamper(&repo, 3, |b| {
        let n = b.len() / 2;
        b[n] ^= 1;
    });
    fails(&repo.run(&["status", "r1", "--json"]), CORRUPT, "journal is corrupt at record 3: ", "hash does not match");
    fails(&repo.run(&["resume", "r1"]), CORRUPT, "journal is corrupt at record 3: ", "");
    let out = repo.run(&["replay", "r1", "-q"]);
    assert_eq!(out.status.code(), Some(CORRUPT));
    assert!(stderr(&out).contains("record 3"), "{}", stderr(&out));
    // No partial write: the export refuses and leaves no file behind.
    let out_file = repo.path().join(".git/never.loopjnl");
    fails(
        &repo.run(&["export", "r1", "--out", out_file.to_str().expect("utf-8")]),
        CORRUPT,
        "journal is corrupt at record 3",
        "",
    );
    assert!(!out_file.exists(), "a corrupt journal was exported");
}

#[test]
fn store_record_truncated() {
    let (repo, _) = exported();
    tamper(&repo, 2, |b| b.truncate(b.len() - 33));
    fails(&repo.run(&["status", "r1"]), CORRUPT, "journal is corrupt at record 2: ", "");
}

#[test]
fn store_record_shorter_than_a_hash() {
    let (repo, _) = exported();
    tamper(&repo, 1, |b| b.truncate(7));
    fails(
        &repo.run(&["status", "r1"]),
        CORRUPT,
        "journal is corrupt at record 1: ",
        "record is 7 bytes, shorter than its hash",
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile ids: accepted as names, never as paths or shell text
// ---------------------------------------------------------------------------------------------

#[test]
fn ids_with_dots_spaces_unicode_and_shell_text_stay_inside_the_state_dir() {
    let ids = ["../../escape", "with space", "ünï-çødé", "$(touch pwned);`touch pwned2`"];
    let files: Vec<(String, Vec<u8>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| issue(&format!("i{i}.md"), &format!("---\nid: {id:?}\nmilestone: \"../M 1\"\n---\n# {id}\n")))
        .collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let repo = Repo::git(&files);
    let out = repo.run(&["run", "--agent", "sim", "--json", "-q"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", stderr(&out));
    let status = status_of(&out);
    for id in ids {
        assert_eq!(state_of(&status, id), "Done", "{status}");
    }
    for w in status["issues"].as_array().expect("issues") {
        let p = w["worktree"]["path"].as_str().expect("worktree path");
        assert!(Path::new(p).starts_with(repo.path().join(".loop/worktrees")), "worktree outside the state dir: {p}");
        assert!(!p.contains(".."), "{p}");
    }
    for f in ["pwned", "pwned2"] {
        assert!(!repo.path().join(f).exists() && !Path::new(f).exists(), "an id ran as shell text");
    }
    assert!(!repo.path().parent().expect("parent").join("escape").exists(), "an id escaped the repo");
    replays_clean(&repo);
}

/// Record 0 of `bytes` rewritten by `edit`, with its hash recomputed: what a hand edit that
/// knows the format looks like. The hash then passes and decoding must catch it.
fn rehashed_first_record(bytes: &[u8], edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let b = bounds(bytes);
    let body = edit(bytes[b[0] + 4..b[1] - 32].to_vec());
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&((body.len() + 32) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(blake3::hash(&body).as_bytes());
    out.extend_from_slice(&bytes[b[1]..]);
    out
}

fn replace(mut hay: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay.windows(from.len()).position(|w| w == from).expect("pattern in record");
    hay.splice(at..at + from.len(), to.iter().copied());
    hay
}

#[test]
fn export_with_a_rehashed_record_that_does_not_decode() {
    let (repo, bytes) = exported();
    let bad = rehashed_first_record(&bytes, |r| replace(r, b"run_started", b"run_\r\nstart"));
    replay_file_fails(&repo, &bad, "journal is corrupt at record 0: record does not decode: ", "run_\\r\\nstart");
}

#[test]
fn export_from_a_future_format_version() {
    let (repo, bytes) = exported();
    // Format 2 content is a msgpack array whose first element is the version.
    let bad = rehashed_first_record(&bytes, |r| replace(r, b"\x96\x02", b"\x96\x03"));
    replay_file_fails(&repo, &bad, "journal is corrupt at record 0: ", "format version 3 is not known");
}

#[test]
fn lone_carriage_returns() {
    plan_rejects(
        &[issue("a.md", "---\nid: A\nmilestone: M1\rblocked_by: [B]\n---\n")],
        &format!("{ISSUES}/a.md:3"),
        "carriage return (CR) without a line feed",
    );
}

#[track_caller]
fn loop_toml_rejected(text: &[u8], line: usize, needle: &str) -> String {
    let repo = two_issue_repo();
    let f = repo.write("loop.toml", text);
    let out = repo.run(&["run", "--agent", "sim", "-q"]);
    let msg = fails(&out, BAD_INPUT, &format!("{}:{line}: ", f.display()), needle);
    assert!(repo.runs().is_empty(), "a rejected run left a journal: {:?}", repo.runs());
    msg
}

#[test]
fn loop_toml_tab_indented_malformed_line() {
    loop_toml_rejected(b"[run]\nreview_doc = true\n\tphase_timeout 600\n", 3, "");
}

#[test]
fn loop_toml_unterminated_string() {
    loop_toml_rejected(b"[codex]\nmodel = \"gpt-5.5\nretries = 1\n", 2, "");
}

#[test]
fn loop_toml_unknown_key() {
    loop_toml_rejected(b"[codex]\nmodel = \"gpt-5.5\"\n\nmodle = \"x\"\n", 4, "unknown field `modle`");
}

#[test]
fn loop_toml_unknown_section() {
    loop_toml_rejected(b"[run]\nphase_timeout = 60\n[codexx]\nmodel = \"m\"\n", 3, "unknown field `codexx`");
}

#[test]
fn loop_toml_wrong_type() {
    loop_toml_rejected(b"[run]\r\nphase_timeout = \"ten\"\r\n", 2, "");
}

#[test]
fn loop_toml_invalid_utf8_names_the_file() {
    let repo = two_issue_repo();
    let f = repo.write("loop.toml", b"[codex]\nmodel = \"\xff\"\n");
    let out = repo.run(&["run", "--agent", "sim", "-q"]);
    fails(&out, BAD_INPUT, &format!("{}", f.display()), "");
    assert!(repo.runs().is_empty());
}
