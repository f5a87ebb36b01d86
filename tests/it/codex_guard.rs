//! Issue #5 with the REAL codex binary (`LOOP_TEST_CODEX_BIN`) against the loopback mock model:
//! the default `workspace-write` sandbox (with /tmp and $TMPDIR excluded) stops an agent's
//! forbidden git commands and writes outside its worktree, and loop's git shims are in effect
//! inside codex's own `bash -lc`.

use std::path::PathBuf;

use crate::support::codex::*;
use crate::support::exit;
use serde_json::Value;

const M: &str = "M1";
const BRANCH: &str = "loop/M1/ORB-1";

fn issue_state(status: &Value, id: &str) -> Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
}

/// How many tool results the request carries (= how many commands already ran in this turn).
fn tool_outputs(body: &Value) -> usize {
    body["input"].as_array().map(|a| a.iter().filter(|i| i["type"] == "function_call_output").count()).unwrap_or(0)
}

/// A mock whose dev turn runs `steps` as shell calls, one per model request, then replies
/// `pass` for `branch`; every review passes.
fn scripted_dev<S: AsRef<str> + Send + Sync + 'static>(
    steps: Vec<S>,
    branch: &'static str,
    test_cmd: &'static str,
) -> Mock {
    Mock::start(move |_, body| match phase_of(body) {
        "dev" => match steps.get(tool_outputs(body)) {
            Some(cmd) => shell(&format!("call_{}", tool_outputs(body)), cmd.as_ref()),
            None => message(&work_reply("pass", branch, test_cmd)),
        },
        "review" => message(&review_reply("pass", &[])),
        other => Reply::Status(400, format!("mock: unexpected phase {other}")),
    })
}

/// The outputs the agent's commands produced, as codex reported them back to the model.
fn outputs_seen(mock: &Mock) -> String {
    (0..mock.count())
        .map(|i| mock.request(i))
        .flat_map(|b| b["input"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["type"] == "function_call_output")
        .map(|i| format!("{} => {}", i["call_id"], i["output"]))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The real git, by absolute path (so the agent's commands bypass loop's shims and only the
/// sandbox stands in their way).
fn real_git() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// Everything outside loop's own issue branch and worktree that the agent must not touch.
fn snapshot(r: &Repo) -> (String, String, String) {
    let repo = r.path.as_path();
    let refs = r
        .git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter(|l| !l.starts_with(&format!("refs/heads/{BRANCH} ")))
        .collect::<Vec<_>>()
        .join("\n");
    let worktrees = r
        .git(repo, &["worktree", "list", "--porcelain"])
        .split("\n\n")
        .filter(|w| !w.contains(&format!("branch refs/heads/{BRANCH}")))
        .collect::<Vec<_>>()
        .join("\n\n");
    (refs, worktrees, r.git(repo, &["status", "--porcelain", "--ignored=no"]))
}

/// Case 1: The sandbox is the prevention layer: an agent that calls the real git directly (no shim in
/// the way) cannot add a worktree, delete or move another branch, create a ref, or write into
/// the main checkout — yet its own write inside the worktree lands in loop's dev commit, and
/// the after-phase check finds nothing foreign.
#[test]
fn sandbox_blocks_forbidden_git_and_writes_outside_the_worktree() {
    let Some(codex) = codex_bin() else { return };
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    let repo_root = r.path.clone();
    let git_bin = real_git().display().to_string();
    let intruder = repo_root.join("intruder.txt");
    let steps: Vec<String> = vec![
        format!("{git_bin} worktree add ../x -b x"),
        format!("{git_bin} branch -D keep"),
        format!("{git_bin} update-ref refs/heads/main HEAD~1"),
        format!("{git_bin} update-ref refs/heads/rogue HEAD"),
        format!("printf 'intrusion\\n' > {}", intruder.display()),
        format!("{git_bin} -c user.name=a -c user.email=a@b.c commit --allow-empty -m rogue"),
        format!("{git_bin} push origin HEAD:refs/heads/pushed"),
        "printf 'inside\\n' > inside.txt && cat inside.txt".to_string(),
    ];
    let mock = scripted_dev(steps.clone(), BRANCH, "cat inside.txt");
    r.use_mock(&mock, codex);
    // A branch the agent will try to delete (not checked out anywhere, unlike main), and a
    // local remote it will try to push to.
    r.git(&r.path, &["branch", "keep"]);
    let remote = r.path.parent().unwrap().join("remote.git");
    r.git(r.path.parent().unwrap(), &["init", "-q", "--bare", remote.to_str().unwrap()]);
    r.git(&r.path, &["remote", "add", "origin", remote.to_str().unwrap()]);
    let before = snapshot(&r);
    let main_sha = r.git(&r.path, &["rev-parse", "main"]);

    let t = std::time::Instant::now();
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "sandbox")]);
    eprintln!("TIMING sandbox run: {:.2}s, {} model requests", t.elapsed().as_secs_f64(), mock.count());
    let seen = outputs_seen(&mock);
    eprintln!("command outputs seen by the model:\n{seen}");
    assert_eq!(out.status.code(), Some(exit::OK), "{}\n{seen}", show(&out));
    // Every step ran (the model was asked again after each), then the dev reply and one review.
    assert_eq!(mock.count(), steps.len() + 2, "{seen}");

    // Nothing outside loop's own branch and worktree changed.
    assert_eq!(snapshot(&r), before, "{seen}");
    assert_eq!(r.git(&r.path, &["rev-parse", "main"]), main_sha);
    assert!(r.git(&r.path, &["for-each-ref", "refs/heads/rogue", "refs/heads/x"]).is_empty());
    assert!(!r.git(&r.path, &["for-each-ref", "refs/heads/keep"]).is_empty(), "keep was deleted");
    assert!(!intruder.exists(), "the agent wrote into the main checkout");
    assert!(r.git(&remote, &["for-each-ref"]).is_empty(), "the agent pushed");
    assert!(!r.git(&r.path, &["log", "--all", "--format=%s"]).lines().any(|l| l == "rogue"), "the agent committed");
    assert!(!r.path.join(".loop/worktrees/M1/x").exists(), "the agent created a worktree");

    // The write inside the worktree succeeded and is in loop's dev commit on the issue branch.
    assert_eq!(r.git(&r.path, &["show", &format!("{BRANCH}:inside.txt")]), "inside");
    let records = r.records("sandbox");
    let dev_commit = events(&records, "work_finished")[0]["body"]["evidence"]["commit"].as_str().unwrap().to_string();
    assert_eq!(r.git(&r.path, &["show", &format!("{dev_commit}:inside.txt")]), "inside");
    assert!(r.git(&r.path, &["merge-base", "--is-ancestor", &dev_commit, BRANCH]).is_empty());

    // The after-phase check ran and found nothing foreign.
    assert!(events(&records, "guard_violation").is_empty(), "{records:#?}");
    let checked = events(&records, "guard_checked");
    assert!(checked.iter().any(|c| c["body"]["event"]["phase"] == "dev" && c["body"]["event"]["ok"] == true));
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Done");
}

fn shim_run(run_id: &str) -> (Repo, Mock, String) {
    let codex = codex_bin().expect("checked by the caller");
    let steps = ["echo HOME=$HOME; command -v git; git worktree add ../y -b y", "git status"];
    let mock = scripted_dev(steps.to_vec(), BRANCH, "git status");
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let before = snapshot(&r);
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", run_id)]);
    let seen = outputs_seen(&mock);
    eprintln!("command outputs seen by the model:\n{seen}");
    assert_eq!(out.status.code(), Some(exit::OK), "{}\n{seen}", show(&out));
    assert_eq!(snapshot(&r), before, "{seen}");
    assert_eq!(mock.count(), steps.len() + 2, "{seen}");
    (r, mock, seen)
}

/// Case 2a: The shims are in effect inside codex's own login shell: in the agent's `bash -lc`, HOME is
/// loop's shim home (whose profile puts the shim dir first despite /etc/profile), plain `git` is
/// loop's shim, which refuses `git worktree add` with its own message and passes `git status`
/// on to the real git.
#[test]
fn shims_are_in_effect_inside_codex_login_shell() {
    if codex_bin().is_none() {
        return;
    }
    let (r, _mock, seen) = shim_run("shims");
    let guard_dir = r.path.join(".loop/logs/shims/guard/ORB-1");
    let call0 = seen.lines().find(|l| l.starts_with("\"call_0\"")).unwrap_or_else(|| panic!("{seen}"));
    assert!(call0.contains(&format!("HOME={}", guard_dir.join("home").display())), "{call0}");
    assert!(call0.contains(&format!("\\n{}\\n", guard_dir.join("bin/git").display())), "{call0}");
    assert!(
        call0.contains("Process exited with code 1")
            && call0.contains("loop guard: refused `git worktree add ../y -b y` (rule git-worktree)"),
        "{call0}"
    );
    let call1 = seen.lines().find(|l| l.starts_with("\"call_1\"")).unwrap_or_else(|| panic!("{seen}"));
    assert!(call1.contains("Process exited with code 0") && call1.contains(&format!("On branch {BRANCH}")), "{call1}");
    assert!(!r.path.join(".loop/worktrees/M1/y").exists());
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Done");
}

/// Case 2b: Every decision of the agent's shims is journaled, from inside codex's `workspace-write`
/// sandbox: the shim cannot write any file outside the worktree there, so it writes into the FIFO
/// loop holds open for the phase (see `guard::shim`). Both the refused `git worktree add` and the
/// allowed `git status` are `command_decided` events of the dev phase, labelled `(shim)` (the
/// agent's login shell). codex's OWN git calls (it runs `git rev-parse` and the like outside the
/// sandbox, with loop's PATH) are journaled too, but labelled `(shim:agent-process)`, so they are
/// never mistaken for the agent's commands.
#[test]
fn agent_shim_decisions_are_journaled() {
    if codex_bin().is_none() {
        return;
    }
    let (r, _mock, seen) = shim_run("decisions");
    let records = r.records("decisions");
    let decided: Vec<Value> = events(&records, "command_decided")
        .into_iter()
        .map(|d| d["body"]["event"].clone())
        .filter(|e| e["phase"] == "dev" && e["tool"] == "git")
        .collect();
    let find = |argv: Value| decided.iter().find(|e| e["argv"] == argv).cloned();
    let add = find(serde_json::json!(["worktree", "add", "../y", "-b", "y"]))
        .unwrap_or_else(|| panic!("no decision for `git worktree add`: {decided:#?}\n{seen}"));
    assert_eq!(add["allowed"], false, "{add}");
    assert!(add["rule"].as_str().unwrap().ends_with("(shim)"), "{add}");
    let status = find(serde_json::json!(["status"]))
        .unwrap_or_else(|| panic!("no decision for `git status`: {decided:#?}\n{seen}"));
    assert_eq!(status["allowed"], true, "{status}");
    assert!(status["rule"].as_str().unwrap().ends_with("(shim)"), "{status}");
    // Anything else decided in this phase came from codex itself, and says so.
    let agent_argvs = [serde_json::json!(["worktree", "add", "../y", "-b", "y"]), serde_json::json!(["status"])];
    for e in decided.iter().filter(|e| !agent_argvs.contains(&e["argv"])) {
        assert!(e["rule"].as_str().unwrap().ends_with("(shim:agent-process)"), "{e}");
        assert_eq!(e["allowed"], true, "codex's own git call was refused: {e}");
    }
    // codex's harness git calls (`git -c safe.bareRepository=explicit … rev-parse …`) are not
    // the agent's decisions: they are counted apart, one `harness_commands` fact per phase.
    assert!(!decided.iter().any(|e| e["argv"][1] == "safe.bareRepository=explicit"), "{decided:#?}");
    let harness = events(&records, "harness_commands");
    let dev = harness.iter().find(|h| h["body"]["event"]["phase"] == "dev").expect("harness calls counted");
    assert!(dev["body"]["event"]["count"].as_u64().unwrap() > 0, "{dev}");
}

/// Case 3: Under full access (`[codex.sandbox] dev = "danger-full-access"` in loop.toml) nothing
/// prevents the damage, so detection must catch it: loop warns loudly before the run, the
/// shim still refuses what goes through it (and that command never reaches the real git), and
/// every change the agent makes with the real git or a plain write outside its worktree is
/// listed by the after-phase check, which fails the phase. Nothing is reverted.
#[test]
fn full_access_forbidden_actions_are_caught_after_the_phase() {
    let Some(codex) = codex_bin() else { return };
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    let git_bin = real_git().display().to_string();
    let intruder = r.path.join("intruder.txt");
    let steps: Vec<String> = vec![
        "git worktree add ../via-shim -b via-shim".to_string(),
        format!("{git_bin} worktree add ../rogue-wt -b rogue-wt"),
        format!("{git_bin} branch -D keep"),
        format!("{git_bin} update-ref refs/heads/rogue HEAD"),
        format!("printf 'intrusion\\n' > {}", intruder.display()),
    ];
    let mock = scripted_dev(steps.clone(), BRANCH, "true");
    r.use_mock(&mock, codex);
    let toml = std::fs::read_to_string(r.path.join("loop.toml")).unwrap();
    std::fs::write(r.path.join("loop.toml"), format!("{toml}\n[codex.sandbox]\ndev = \"danger-full-access\"\n"))
        .unwrap();
    r.git(&r.path, &["commit", "-qam", "full access"]);
    r.git(&r.path, &["branch", "keep"]);

    // --jobs 2: changes outside every issue are still caught; loop warns about siblings.
    let out = r.run(&["run", "--json", "--jobs", "2"], &[("LOOP_RUN_ID", "full")]);
    let seen = outputs_seen(&mock);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}\n{seen}", show(&out));
    assert!(stderr.contains("WARNING: sandbox = \"danger-full-access\""), "{stderr}");
    assert!(stderr.contains("with --jobs 2 the after-phase check ignores other issues'"), "{stderr}");
    assert_eq!(mock.count(), steps.len() + 1, "every step ran, then the dev reply: {seen}");

    // The shim refused its command before the real git: no such worktree or branch.
    assert!(!r.path.join(".loop/worktrees/M1/via-shim").exists(), "{seen}");
    assert!(r.git(&r.path, &["for-each-ref", "refs/heads/via-shim"]).is_empty());
    let records = r.records("full");
    let refused: Vec<Value> = events(&records, "command_decided")
        .into_iter()
        .map(|d| d["body"]["event"].clone())
        .filter(|e| e["argv"][0] == "worktree")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["allowed"], false);

    // Each real change is listed in the one guard_violation, and the phase failed on it.
    let violations = events(&records, "guard_violation");
    assert_eq!(violations.len(), 1, "{records:#?}");
    let changes = violations[0]["body"]["event"]["changes"].to_string();
    for needle in ["refs/heads/rogue created", "refs/heads/keep deleted", "rogue-wt", "intruder.txt"] {
        assert!(changes.contains(needle), "{needle} not in {changes}");
    }
    let orb1 = issue_state(&r.status(), "ORB-1");
    assert_eq!(orb1["state"], "Failed", "{orb1}");
    assert!(orb1["reason"].as_str().unwrap().contains("outside its worktree"), "{orb1}");
    // Nothing was reverted: the evidence stays for a human to judge.
    assert!(intruder.exists());
    assert!(!r.git(&r.path, &["for-each-ref", "refs/heads/rogue"]).is_empty());
    assert!(r.path.join(".loop/worktrees/M1/rogue-wt").exists());
}

fn gt_bin() -> Option<String> {
    match std::env::var("LOOP_TEST_GT_BIN") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true but LOOP_TEST_GT_BIN is not set"),
        _ => None,
    }
}

/// Case 4: The real codex with `--stack graphite` and the real gt: a dependency chain becomes a
/// stack (`gt state`), each dev commit is loop's `gt modify` in the issue's worktree, and the
/// agent's own `gt move` is refused by the gt shim (journaled) while the sandbox holds.
#[test]
fn codex_run_with_graphite_stack() {
    let (Some(codex), Some(gt)) = (codex_bin(), gt_bin()) else { return };
    // The last step bypasses the shim: the real gt, by absolute path, inside the sandbox.
    let steps = [
        "basename \"$PWD\" > work.txt".to_string(),
        "gt move --onto main".to_string(),
        format!("{gt} move --onto main --no-interactive; echo gt-exit=$?"),
    ];
    let mock = scripted_dev(steps.to_vec(), "any", "true");
    let mut r = repo(M, &[("ORB-1", "First", &[]), ("ORB-2", "Second", &["ORB-1"])]);
    r.use_mock(&mock, codex);
    let home = r.path.parent().unwrap().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let home = home.display().to_string();
    let env = [("LOOP_RUN_ID", "stack"), ("LOOP_GT_BIN", gt.as_str()), ("HOME", home.as_str())];
    let out = r.run(&["run", "--json", "--stack", "graphite"], &env);
    let seen = outputs_seen(&mock);
    assert_eq!(out.status.code(), Some(exit::OK), "{}\n{seen}", show(&out));

    let state = r
        .env
        .command(&gt)
        .args(["state", "--no-interactive"])
        .current_dir(&r.path)
        .env("HOME", &home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&state.stdout);
    let json: Value =
        serde_json::from_str(&text[text.find('{').unwrap_or(0)..]).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["loop/M1/ORB-1"]["parents"][0]["ref"], "main", "{json}");
    assert_eq!(json["loop/M1/ORB-2"]["parents"][0]["ref"], "loop/M1/ORB-1", "{json}");

    let records = r.records("stack");
    for id in ["ORB-1", "ORB-2"] {
        let branch = format!("loop/M1/{id}");
        assert_eq!(r.git(&r.path, &["show", &format!("{branch}:work.txt")]), id);
        // loop's two commits on the branch: the dev work, then the review entry.
        assert_eq!(r.git(&r.path, &["log", "-2", "--format=%s", &branch]), format!("{id}: review 1 (pass)\n{id}: dev"));
        for kind in ["work_finished", "review_finished"] {
            let done = events(&records, kind).into_iter().find(|e| e["body"]["issue"] == id).unwrap();
            assert!(done["body"]["evidence"]["note"].as_str().unwrap().contains("gt modify"), "{done}");
        }
    }
    // ORB-2's branch stands on ORB-1's work.
    assert!(r.git(&r.path, &["merge-base", "--is-ancestor", "loop/M1/ORB-1", "loop/M1/ORB-2"]).is_empty());
    let moves: Vec<Value> = events(&records, "command_decided")
        .into_iter()
        .map(|d| d["body"]["event"].clone())
        .filter(|e| e["tool"] == "gt" && e["argv"][0] == "move")
        .collect();
    assert_eq!(moves.len(), 2, "one refused `gt move` per issue: {moves:#?}\n{seen}");
    assert!(
        moves.iter().all(|m| m["allowed"] == false && m["rule"].as_str().unwrap().ends_with("(shim)")),
        "{moves:#?}"
    );
    assert!(seen.contains("loop guard: refused `gt move --onto main`"), "{seen}");
    // The real gt's move failed in the sandbox: the stack above is unchanged and no
    // guard_violation was raised (the after-phase check compares gt's metadata too).
    assert!(seen.contains("gt-exit=") && !seen.contains("gt-exit=0"), "{seen}");
    assert!(events(&records, "guard_violation").is_empty(), "{records:#?}");
}
