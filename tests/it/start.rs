//! Getting started: `loop init` scaffolds docs and a commented loop.toml that loop's own checks
//! accept (and a simulated run finishes), never overwriting or following a symlink; `loop config`
//! shows every effective setting with its source (flag > env > file:line > default), read-only.

use std::path::Path;

use crate::support::*;

/// Every file below `dir` with its bytes (`.git` aside), to prove a command wrote nothing.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() && rel != ".git" {
                stack.push(p.clone());
                out.push((rel + "/", Vec::new()));
            } else if !ft.is_dir() {
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fn init(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    repo.loop_cmd().arg("init").args(args).output().unwrap()
}

#[test]
fn init_scaffold_plans_and_a_simulated_run_finishes_it() {
    let env = TestEnvironment::new();
    let repo = env.repo_named("Shop Front", &[]);
    let out = init(&repo, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::OK), "{stderr}");
    // The default project is the directory's name, made a valid id.
    for made in [
        "docs/projects/shop-front/milestones/M1.md",
        "docs/projects/shop-front/issues/SHOPFRON-1.md",
        "docs/projects/shop-front/issues/SHOPFRON-2.md",
        "docs/projects/shop-front/reviews/README.md",
        "loop.toml",
    ] {
        assert!(repo.join(made).is_file(), "{made} missing");
        assert!(stdout.contains(made), "{made} not reported: {stdout}");
    }
    for next in ["loop plan -m M1", "loop run -m M1 --dry-run", "git add docs/projects/shop-front loop.toml"] {
        assert!(stdout.contains(next), "{next:?} not suggested: {stdout}");
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "loop init"]);

    let out = repo.loop_cmd().args(["plan", "-m", "M1", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    let plan = json(&out);
    assert_eq!(plan["order"], serde_json::json!(["SHOPFRON-1", "SHOPFRON-2"]));
    assert_eq!(plan["issues"][1]["blocked_by"], serde_json::json!(["SHOPFRON-1"]));

    let out = repo.loop_cmd().args(["run", "-m", "M1", "--agent", "sim", "--json", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    let done: Vec<(String, String, u64)> = states(&json(&out));
    assert_eq!(done, [("SHOPFRON-1".into(), "Done".into(), 0), ("SHOPFRON-2".into(), "Done".into(), 0)]);
}

#[test]
fn init_takes_a_project_name_and_reports_json() {
    let repo = repo_with(&[]);
    let sub = repo.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    // Any directory inside the repository will do; the files go to its root.
    let out = repo.env().loop_cmd(&sub).args(["init", "--project", "api", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    let v = json(&out);
    assert_eq!(v["project"], "api");
    assert_eq!(v["milestone"], "M1");
    assert_eq!(v["files"].as_array().unwrap().len(), 5);
    assert!(v["next"].as_array().unwrap().iter().any(|n| n == "loop plan -m M1"), "{v}");
    assert!(repo.join("docs/projects/api/issues/API-2.md").is_file());
    assert!(repo.join("loop.toml").is_file() && !sub.join("loop.toml").exists());
    let out = init(&repo, &["--project", "../escape"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("--project ../escape"), "{}", text(&out).1);
}

#[test]
fn init_refuses_to_overwrite_any_file_and_then_writes_nothing() {
    let repo = repo_with(&[("docs/projects/repo/issues/REPO-2.md", "mine\n"), ("loop.toml", "[run]\n")]);
    let before = tree(&repo);
    let out = init(&repo, &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("docs/projects/repo/issues/REPO-2.md") && stderr.contains("loop.toml"),
        "both files named: {stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(tree(&repo), before, "a refused init changed the repository");
}

#[test]
fn init_never_writes_through_a_symlinked_docs_dir() {
    let env = TestEnvironment::new();
    let repo = env.repo_named("repo", &[]);
    let outside = env.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("docs")).unwrap();
    let out = init(&repo, &[]);
    assert_ne!(out.status.code(), Some(exit::OK));
    assert!(text(&out).1.contains("symlink"), "{}", text(&out).1);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "wrote through the symlink");
    assert!(!repo.join("loop.toml").exists(), "wrote part of the scaffold");
}

#[test]
fn init_outside_a_git_repository_says_so() {
    let env = TestEnvironment::new();
    let dir = env.dir_named("plain", &[]);
    let out = init(&dir, &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("is not inside a git repository"), "{}", text(&out).1);
    assert_eq!(std::fs::read_dir(&*dir).unwrap().count(), 0);
}

/// `loop config --json ARGS` in `repo`: key → (value, the whole entry).
fn config(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
    let out = repo.loop_cmd().args(["config", "--json"]).args(args).envs(env.iter().copied()).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    json(&out).as_array().unwrap().iter().map(|s| (s["key"].as_str().unwrap().to_string(), s.clone())).collect()
}

#[test]
fn config_defaults_only_and_read_only() {
    let repo = repo_with(&[]);
    let before = tree(&repo);
    let all = config(&repo, &[], &[]);
    assert_eq!(tree(&repo), before, "loop config changed the repository");
    for (key, s) in &all {
        assert_eq!(s["source"], "default", "{key}: {s}");
        assert!(s.get("file").is_none() && s.get("line").is_none(), "{s}");
    }
    assert_eq!(all["run.phase_timeout"]["value"], 1800);
    assert_eq!(all["run.max_tokens_per_issue"]["value"], serde_json::Value::Null);
    assert_eq!(all["codex.sandbox.review"]["value"], "read-only");
    assert_eq!(all["state_dir"]["value"], repo.join(".loop").display().to_string());
}

#[test]
fn config_file_overrides_name_their_line_and_env_and_flags_win_in_turn() {
    let toml = "# team settings\n[run]\nmax_fix_cycles = 3\n\n[codex]\nbin = \"/file/codex\"\nmodel = \"file-model\"\n\
                [verify]\ncommands = [\n  \"make test\",\n]\ntimeout = 30\n[prices.\"gpt-5.5\"]\ninput = 1\noutput = 2\n";
    let repo = repo_with(&[("loop.toml", toml)]);
    let file = repo.join("loop.toml").display().to_string();
    let all = config(&repo, &[], &[]);
    let at = |k: &str| (all[k]["source"].clone(), all[k]["file"].clone(), all[k]["line"].clone());
    assert_eq!(at("run.max_fix_cycles"), ("file".into(), file.clone().into(), 3.into()));
    assert_eq!(at("codex.bin"), ("file".into(), file.clone().into(), 6.into()));
    assert_eq!(at("verify.commands"), ("file".into(), file.clone().into(), 9.into()));
    assert_eq!(at("verify.timeout").2, 12);
    assert_eq!(at("prices.\"gpt-5.5\"").2, 13);
    assert_eq!(all["verify.commands"]["value"], serde_json::json!(["make test"]));
    assert_eq!(all["prices.\"gpt-5.5\""]["value"]["cached_input"], 1.0);
    assert_eq!(all["run.phase_timeout"]["source"], "default");

    // The environment beats the file…
    let all = config(&repo, &[], &[("LOOP_CODEX_BIN", "/env/codex"), ("LOOP_STATE_DIR", "/env/state")]);
    assert_eq!(
        (all["codex.bin"]["source"].as_str(), all["codex.bin"]["env"].as_str()),
        (Some("env"), Some("LOOP_CODEX_BIN"))
    );
    assert_eq!(all["codex.bin"]["value"], "/env/codex");
    assert_eq!(
        (all["state_dir"]["source"].as_str(), all["state_dir"]["value"].as_str()),
        (Some("env"), Some("/env/state"))
    );
    // …and a flag beats both, with the flags `loop run` takes.
    let all = config(
        &repo,
        &[
            "--codex-bin",
            "/flag/codex",
            "--max-fix-cycles",
            "5",
            "--agent",
            "sim",
            "--no-guard",
            "--state-dir",
            "/flag/state",
        ],
        &[("LOOP_CODEX_BIN", "/env/codex"), ("LOOP_STATE_DIR", "/env/state")],
    );
    for (key, flag, value) in [
        ("codex.bin", "--codex-bin", serde_json::json!("/flag/codex")),
        ("run.max_fix_cycles", "--max-fix-cycles", 5.into()),
        ("agents.review", "--agent", "sim".into()),
        ("guard.checks", "--no-guard", false.into()),
        ("state_dir", "--state-dir", "/flag/state".into()),
    ] {
        assert_eq!(
            (&all[key]["source"], &all[key]["flag"], &all[key]["value"]),
            (&"flag".into(), &flag.into(), &value),
            "{key}"
        );
    }
    assert_eq!(all["codex.model"]["source"], "file");
}

#[test]
fn config_gives_the_same_error_as_run_for_a_bad_loop_toml() {
    let repo = repo_with(&[("loop.toml", "[run]\nmax_fix_cycles = 2\nphase_timout = 5\n")]);
    let config = repo.loop_cmd().arg("config").output().unwrap();
    let run = repo.loop_cmd().args(["run", "--agent", "sim", "--dry-run"]).output().unwrap();
    assert_eq!(config.status.code(), Some(exit::BAD_INPUT));
    assert_eq!(run.status.code(), Some(exit::BAD_INPUT));
    let (_, err) = text(&config);
    assert!(err.contains("loop.toml:3: unknown field `phase_timout`"), "{err}");
    assert_eq!(err, text(&run).1);
}

#[test]
fn config_text_snapshot() {
    let toml = "[run]\nphase_timeout = 600\n[codex]\nmodel = \"gpt-5.5\"\n";
    let repo = repo_with(&[("loop.toml", toml)]);
    // A fixed state dir: the default one's path (the test's temp dir) would move the columns.
    let out = repo
        .loop_cmd()
        .args(["config", "--max-fix-cycles", "4"])
        .env("LOOP_AGENT", "sim")
        .env("LOOP_STATE_DIR", "/srv/loop-state")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    insta::assert_snapshot!("config", repo.env().redact(&text(&out).0));
}
