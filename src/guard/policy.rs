//! The command policy: a pure classifier of one `git` or `gt` invocation.
//!
//! Invariants:
//! - [`classify`] is pure: the same argv, context and config always give the same decision, so
//!   the shims, the Claude Code hook and the tests all agree.
//! - gt is an allowlist (unknown commands are refused); git is a denylist over known commands,
//!   and unknown git commands (user aliases included) are refused too, since an alias can hide
//!   any other command.
//! - Flag parsing errs towards refusal: every character of a combined short flag counts as a
//!   flag, `--x=v` counts as `--x`, and anything after `--` is positional.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::GuardConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    Git,
    Gt,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Git => "git",
            Tool::Gt => "gt",
        }
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        match name {
            "git" => Some(Tool::Git),
            "gt" | "graphite" => Some(Tool::Gt),
            _ => None,
        }
    }
}

/// What the classifier knows about the phase the command runs in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyContext {
    /// The issue's own branch.
    pub branch: String,
    /// Branches of the issue's own stack (its branch, its dependencies' branches), trunk excluded.
    pub stack: Vec<String>,
    pub trunk: String,
    /// The branch checked out where the command runs, if known.
    pub current_branch: Option<String>,
    /// Local branch names, so `git checkout NAME` can tell a branch from a path.
    pub branches: BTreeSet<String>,
    /// gt user aliases (name → expansion); [`default_gt_aliases`] when the file is absent.
    pub gt_aliases: BTreeMap<String, Vec<String>>,
}

impl PolicyContext {
    fn in_stack(&self, b: &str) -> bool {
        b == self.branch || self.stack.iter().any(|s| s == b)
    }
}

/// One classified invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that decided, e.g. `gt-sync-restack`.
    pub rule: String,
    /// Why, in words the agent can act on.
    pub message: String,
}

fn allow(rule: &str, message: impl Into<String>) -> Decision {
    Decision { allowed: true, rule: rule.into(), message: message.into() }
}

fn refuse(rule: &str, message: impl Into<String>) -> Decision {
    Decision { allowed: false, rule: rule.into(), message: message.into() }
}

/// gt's built-in command aliases.
const GT_BUILTIN_ALIASES: &[(&str, &str)] = &[
    ("c", "create"),
    ("m", "modify"),
    ("s", "submit"),
    ("b", "bottom"),
    ("co", "checkout"),
    ("d", "down"),
    ("t", "top"),
    ("u", "up"),
    ("l", "log"),
    ("r", "restack"),
    ("dl", "delete"),
    ("ab", "absorb"),
    ("cont", "continue"),
    ("rn", "rename"),
    ("sp", "split"),
    ("sq", "squash"),
    ("tr", "track"),
    ("utr", "untrack"),
    ("g", "guide"),
];

/// The aliases gt's user aliases file holds by default.
pub fn default_gt_aliases() -> BTreeMap<String, Vec<String>> {
    [("ls", "log short"), ("ll", "log long"), ("ss", "submit --stack")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.split_whitespace().map(String::from).collect()))
        .collect()
}

/// Parses gt's aliases file: one `NAME EXPANSION...` per line, `#` comments.
pub fn parse_gt_aliases(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace().map(String::from);
        if let Some(name) = words.next() {
            let exp: Vec<String> = words.collect();
            if !exp.is_empty() {
                out.insert(name, exp);
            }
        }
    }
    out
}

/// Flags and positionals of one command's arguments.
#[derive(Debug, Default)]
struct Parsed {
    /// Flag names without dashes (`force`, `f`), with a value when one was attached or taken.
    flags: Vec<(String, Option<String>)>,
    positionals: Vec<String>,
}

impl Parsed {
    fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    fn values(&self, names: &[&str]) -> Vec<&str> {
        self.flags.iter().filter(|(n, _)| names.contains(&n.as_str())).filter_map(|(_, v)| v.as_deref()).collect()
    }
}

/// `takes_value` names flags whose value may be the next argument.
fn parse(args: &[String], takes_value: &[&str]) -> Parsed {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.positionals.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            };
            let value = if value.is_none() && takes_value.contains(&name.as_str()) && i < args.len() {
                i += 1;
                Some(args[i - 1].clone())
            } else {
                value
            };
            p.flags.push((name, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            for (k, c) in chars.iter().enumerate() {
                let name = c.to_string();
                if takes_value.contains(&name.as_str()) {
                    let rest: String = chars[k + 1..].iter().collect();
                    let value = if !rest.is_empty() {
                        Some(rest)
                    } else if i < args.len() {
                        i += 1;
                        Some(args[i - 1].clone())
                    } else {
                        None
                    };
                    p.flags.push((name, value));
                    // Count the attached rest as flags too: refusing too much is safe,
                    // missing a hidden `-f` is not.
                    for c2 in &chars[k + 1..] {
                        p.flags.push((c2.to_string(), None));
                    }
                    break;
                }
                p.flags.push((name, None));
            }
        } else {
            p.positionals.push(a.clone());
        }
    }
    p
}

/// Classifies `tool argv...` (argv without the program name). Config rules come first:
/// a `deny` pattern refuses, then an `allow` pattern allows, then the built-in policy decides.
pub fn classify(tool: Tool, argv: &[String], ctx: &PolicyContext, cfg: &GuardConfig) -> Decision {
    let canonical = match tool {
        Tool::Gt => match resolve_gt(argv, ctx) {
            Ok(v) => v,
            Err(d) => return d,
        },
        Tool::Git => argv.to_vec(),
    };
    let words: Vec<&str> = std::iter::once(tool.as_str()).chain(canonical.iter().map(String::as_str)).collect();
    for pat in &cfg.deny {
        if matches_pattern(pat, &words) {
            return refuse("config-deny", format!("refused by the [guard] deny pattern `{pat}`"));
        }
    }
    for pat in &cfg.allow {
        if matches_pattern(pat, &words) {
            return allow("config-allow", format!("allowed by the [guard] allow pattern `{pat}`"));
        }
    }
    match tool {
        Tool::Gt => classify_gt(&canonical, ctx),
        Tool::Git => classify_git(argv, ctx),
    }
}

/// A pattern is a space-separated word prefix: `gt submit` matches `gt submit --stack`.
fn matches_pattern(pat: &str, words: &[&str]) -> bool {
    let p: Vec<&str> = pat.split_whitespace().collect();
    !p.is_empty() && p.len() <= words.len() && p.iter().zip(words).all(|(a, b)| a == b)
}

const GT_GLOBAL_BOOL: &[&str] = &["debug", "interactive", "no-interactive", "verify", "no-verify", "q", "quiet"];

/// Drops gt's global flags and expands aliases, so the command word comes first.
fn resolve_gt(argv: &[String], ctx: &PolicyContext) -> Result<Vec<String>, Decision> {
    let mut rest: Vec<String> = Vec::new();
    let mut command: Option<String> = None;
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if command.is_none() {
            let name = a.trim_start_matches('-').split('=').next().unwrap_or("");
            if a.starts_with('-') {
                if name == "cwd" {
                    return Err(refuse("gt-cwd", "`gt --cwd` is refused: run gt inside your worktree"));
                }
                if GT_GLOBAL_BOOL.contains(&name) {
                    continue;
                }
                if matches!(name, "help" | "h" | "version" | "v") {
                    return Err(allow("gt-read-only", "help and version are read-only"));
                }
                return Err(refuse("gt-unknown", format!("unknown gt flag `{a}` before the command")));
            }
            command = Some(a.clone());
        } else {
            rest.push(a.clone());
        }
    }
    let Some(cmd) = command else {
        return Err(refuse("gt-unknown", "gt without a command is interactive; name a command"));
    };
    let mut out: Vec<String> = match ctx.gt_aliases.get(&cmd) {
        Some(exp) => exp.clone(),
        None => vec![GT_BUILTIN_ALIASES.iter().find(|(a, _)| *a == cmd).map(|(_, c)| c.to_string()).unwrap_or(cmd)],
    };
    // A user alias may itself name a built-in alias (`ss` → `s ...`).
    if let Some(first) = out.first_mut() {
        if let Some((_, c)) = GT_BUILTIN_ALIASES.iter().find(|(a, _)| a == first) {
            *first = c.to_string();
        }
    }
    out.extend(rest.into_iter().filter(|a| {
        let name = a.trim_start_matches('-');
        !(a.starts_with("--") && GT_GLOBAL_BOOL.contains(&name)) && a != "-q"
    }));
    Ok(out)
}

const GT_VALUE_FLAGS: &[&str] =
    &["m", "message", "p", "parent", "o", "onto", "s", "source", "branch", "cwd", "n", "name", "reviewers", "title"];

fn classify_gt(argv: &[String], ctx: &PolicyContext) -> Decision {
    let cmd = argv[0].as_str();
    let args = &argv[1..];
    let p = parse(args, GT_VALUE_FLAGS);
    if p.has(&["cwd"]) {
        return refuse("gt-cwd", "`gt --cwd` is refused: run gt inside your worktree");
    }
    let on_stack = ctx.current_branch.as_deref().is_some_and(|b| ctx.in_stack(b));
    let here = ctx.current_branch.clone().unwrap_or_else(|| "an unknown branch".into());
    match cmd {
        "log" | "info" | "parent" | "children" | "state" | "changelog" | "guide" | "help" | "completion" => {
            allow("gt-read-only", "read-only")
        }
        "trunk" if p.flags.is_empty() && p.positionals.is_empty() => allow("gt-read-only", "read-only"),
        "sync" => {
            if p.has(&["f", "force"]) {
                refuse("gt-sync-force", "`gt sync --force` is refused")
            } else if p.has(&["d", "delete-all"]) {
                refuse("gt-sync-delete", "`gt sync --delete-all` deletes branches; refused")
            } else if p.has(&["a", "all"]) {
                refuse("gt-sync-all", "`gt sync --all` touches other trunks; refused")
            } else if !p.has(&["no-restack"]) || p.has(&["restack"]) {
                refuse(
                    "gt-sync-restack",
                    "only `gt sync --no-restack` is allowed: a restacking sync rebases every stack",
                )
            } else {
                allow("gt-sync-no-restack", "gt sync --no-restack")
            }
        }
        "restack" => {
            if ctx.current_branch.as_deref() == Some(ctx.trunk.as_str()) {
                refuse("gt-restack-trunk", "`gt restack` with trunk checked out restacks every stack; refused")
            } else if !on_stack {
                refuse("gt-restack-other", format!("`gt restack` on {here}, outside this issue's stack; refused"))
            } else if let Some(b) = p.values(&["branch"]).into_iter().find(|b| !ctx.in_stack(b)) {
                refuse("gt-restack-other", format!("`gt restack --branch {b}` is outside this issue's stack"))
            } else {
                allow("gt-restack-own", "restack of this issue's own stack")
            }
        }
        "move" => refuse("gt-move", "`gt move` reparents branches; refused"),
        "get" => refuse("gt-get", "`gt get` restacks other people's branches; refused"),
        "undo" => refuse("gt-undo", "`gt undo` can undo work outside this issue; refused"),
        "rebase" | "reset" | "cherry-pick" => {
            refuse("gt-passthrough", format!("`gt {cmd}` is a git passthrough that rewrites history; refused"))
        }
        "track" => {
            let target = p.positionals.first().cloned().or(ctx.current_branch.clone());
            if target.as_deref() != Some(ctx.branch.as_str()) {
                let t = target.unwrap_or_else(|| "an unknown branch".into());
                return refuse("gt-track-other", format!("`gt track` of {t}: only {} may be tracked", ctx.branch));
            }
            match p.values(&["p", "parent"]).into_iter().find(|b| *b != ctx.trunk && !ctx.in_stack(b)) {
                Some(b) => {
                    refuse("gt-track-parent", format!("`gt track -p {b}`: the parent is outside this issue's stack"))
                }
                None if p.has(&["p", "parent"]) && p.values(&["p", "parent"]).is_empty() => {
                    refuse("gt-track-parent", "`gt track -p` without a parent")
                }
                None => allow("gt-track-own", "track of the issue's own branch"),
            }
        }
        "create" => {
            if !on_stack {
                return refuse("gt-create-other", format!("`gt create` on {here}, outside this issue's stack"));
            }
            if let Some(b) = p.values(&["o", "onto"]).into_iter().find(|b| !ctx.in_stack(b)) {
                return refuse("gt-create-onto", format!("`gt create --onto {b}` is outside this issue's stack"));
            }
            if p.has(&["o", "onto"]) && p.values(&["o", "onto"]).is_empty() {
                return refuse("gt-create-onto", "`gt create --onto` without a branch");
            }
            if p.has(&["i", "insert"]) {
                return refuse(
                    "gt-create-insert",
                    "`gt create --insert` reparents the children, which belong to other issues",
                );
            }
            allow("gt-create-own", "create on this issue's own stack")
        }
        "modify" => {
            if on_stack {
                allow("gt-modify-own", "modify on this issue's own stack")
            } else {
                refuse("gt-modify-other", format!("`gt modify` on {here}, outside this issue's stack"))
            }
        }
        "submit" => {
            if p.has(&["p", "publish"]) {
                refuse("gt-submit-publish", "`gt submit --publish` is refused: submit drafts only")
            } else if !p.has(&["d", "draft"]) {
                refuse("gt-submit-draft", "`gt submit` / `gt ss` need --draft")
            } else if p.has(&["m", "merge-when-ready"]) {
                refuse("gt-submit-merge", "`gt submit --merge-when-ready` is refused")
            } else if !on_stack {
                refuse("gt-submit-other", format!("`gt submit` on {here}, outside this issue's stack"))
            } else {
                allow("gt-submit-draft", "draft submission of this issue's own stack")
            }
        }
        "checkout" => match p.positionals.first() {
            Some(b) if ctx.in_stack(b) && p.flags.is_empty() => {
                allow("gt-checkout-own", "checkout within the own stack")
            }
            Some(b) => {
                refuse("gt-checkout-other", format!("`gt checkout {b}`: only this issue's stack may be checked out"))
            }
            None => refuse("gt-checkout-other", "`gt checkout` needs a branch of this issue's stack"),
        },
        "continue" | "abort" | "add" | "restore" if on_stack => allow("gt-own", format!("gt {cmd} on the own stack")),
        other => refuse("gt-unknown", format!("`gt {other}` is not in loop's gt policy; refused")),
    }
}

/// Git commands that read only (or write only inside the current worktree and its branch).
const GIT_SAFE: &[&str] = &[
    "status",
    "log",
    "diff",
    "show",
    "rev-parse",
    "rev-list",
    "ls-files",
    "ls-tree",
    "cat-file",
    "blame",
    "grep",
    "shortlog",
    "describe",
    "name-rev",
    "merge-base",
    "for-each-ref",
    "show-ref",
    "check-ignore",
    "check-attr",
    "range-diff",
    "whatchanged",
    "help",
    "version",
    "var",
    "add",
    "rm",
    "mv",
    "restore",
    "commit",
    "stash",
    "reset",
    "clean",
    "apply",
    "am",
    "format-patch",
    "fetch",
    "pull",
    "merge",
    "rebase",
    "cherry-pick",
    "revert",
    "notes",
    "diff-tree",
    "diff-index",
    "diff-files",
    "hash-object",
    "count-objects",
    "archive",
    "bisect",
];

const GIT_GLOBAL_VALUE: &[&str] = &["C", "c", "git-dir", "work-tree", "namespace", "exec-path", "config-env"];

const GIT_VALUE_FLAGS: &[&str] = &[
    "b",
    "B",
    "orphan",
    "c",
    "C",
    "create",
    "force-create",
    "t",
    "track",
    "u",
    "set-upstream-to",
    "format",
    "sort",
    "contains",
    "no-contains",
    "merged",
    "no-merged",
    "points-at",
    "m",
    "message",
    "o",
    "push-option",
    "repo",
    "receive-pack",
    "exec",
    "F",
    "file",
];

fn classify_git(argv: &[String], ctx: &PolicyContext) -> Decision {
    // Global options come before the command.
    let mut i = 0;
    while i < argv.len() && argv[i].starts_with('-') {
        let a = &argv[i];
        let name = a.trim_start_matches('-').split('=').next().unwrap_or("").to_string();
        let attached = a.contains('=') || (a.starts_with("-C") && a.len() > 2) || (a.starts_with("-c") && a.len() > 2);
        let value = if GIT_GLOBAL_VALUE.contains(&name.as_str()) && !attached {
            i += 1;
            argv.get(i).cloned()
        } else if !a.starts_with("--") {
            a.get(2..).map(String::from)
        } else {
            a.split_once('=').map(|(_, v)| v.to_string())
        };
        if (name == "c" || a.starts_with("-c"))
            && value.as_deref().is_some_and(|v| v.to_ascii_lowercase().starts_with("alias."))
        {
            return refuse("git-inline-alias", "`git -c alias.…` hides the real command; refused");
        }
        if name == "config-env" {
            return refuse("git-inline-alias", "`git --config-env` can define aliases; refused");
        }
        if matches!(name.as_str(), "version" | "help") {
            return allow("git-read-only", "read-only");
        }
        i += 1;
    }
    let Some(cmd) = argv.get(i) else {
        return allow("git-read-only", "git without a command prints help");
    };
    let args = &argv[i + 1..];
    let p = parse(args, GIT_VALUE_FLAGS);
    let own = |b: &str| b == ctx.branch || b.strip_prefix("refs/heads/") == Some(ctx.branch.as_str());
    match cmd.as_str() {
        "worktree" => match p.positionals.first().map(String::as_str) {
            Some("list") => allow("git-read-only", "worktree list"),
            Some(sub) => refuse("git-worktree", format!("`git worktree {sub}` is refused: loop owns the worktrees")),
            None => refuse("git-worktree", "`git worktree` needs a subcommand; only `list` is allowed"),
        },
        "push" => {
            if p.has(&[
                "f",
                "force",
                "force-with-lease",
                "force-if-includes",
                "mirror",
                "d",
                "delete",
                "prune",
                "all",
                "tags",
            ]) {
                return refuse("git-push-force", "force, delete, mirror and all-branch pushes are refused");
            }
            for spec in p.positionals.iter().skip(1) {
                if spec.starts_with('+') || spec.starts_with(':') {
                    return refuse("git-push-force", format!("refspec `{spec}` forces or deletes; refused"));
                }
                let dst = spec.rsplit(':').next().unwrap_or(spec);
                if !own(dst) && !ctx.stack.iter().any(|s| s == dst || dst.strip_prefix("refs/heads/") == Some(s)) {
                    return refuse(
                        "git-push-other",
                        format!("`git push` of `{spec}`: only this issue's stack may be pushed"),
                    );
                }
            }
            allow("git-push", "push of this issue's own branch")
        }
        "branch" => {
            if p.has(&["d", "D", "delete"]) {
                return refuse("git-branch-delete", "`git branch -d/-D` is refused: loop never deletes branches");
            }
            if p.has(&["m", "M", "move", "c", "C", "copy"]) {
                return refuse("git-branch-move", "renaming or copying branches is refused");
            }
            if p.has(&["f", "force"]) {
                return refuse("git-branch-force", "`git branch --force` is refused");
            }
            let listing = p.has(&[
                "l",
                "list",
                "a",
                "all",
                "r",
                "remotes",
                "contains",
                "no-contains",
                "merged",
                "no-merged",
                "points-at",
            ]);
            if p.has(&["u", "set-upstream-to", "unset-upstream", "edit-description"]) {
                return match p.positionals.first() {
                    Some(b) if !own(b) => refuse("git-branch-other", format!("changing branch {b} is refused")),
                    _ => allow("git-branch-upstream", "upstream of the own branch"),
                };
            }
            if listing || p.positionals.is_empty() {
                allow("git-read-only", "branch listing")
            } else {
                refuse("git-branch-create", "creating branches with git is refused; use `gt create` within your stack")
            }
        }
        "checkout" | "switch" => {
            let creating = p.values(&["b", "B", "orphan", "c", "C", "create", "force-create"]);
            if let Some(b) = creating.first() {
                if !own(b) {
                    return refuse("git-checkout-other", format!("creating and checking out {b} is refused"));
                }
            }
            if p.has(&["b", "B", "orphan", "c", "C", "create", "force-create"]) && creating.is_empty() {
                return refuse("git-checkout-other", "branch creation without a name");
            }
            if p.has(&["detach"]) {
                return refuse("git-checkout-detach", "detaching HEAD leaves the issue's branch; refused");
            }
            // Before `--`, a positional naming a branch switches to it; anything else is a path
            // (checkout) — switch takes only branches.
            let dashdash = args.iter().position(|a| a == "--");
            let before: Vec<&String> = match dashdash {
                Some(k) => p.positionals.iter().take(p.positionals.len() - (args.len() - k - 1)).collect(),
                None => p.positionals.iter().collect(),
            };
            for b in before {
                let is_branch = cmd == "switch"
                    || b == "-"
                    || b.starts_with("@{")
                    || ctx.branches.contains(b.as_str())
                    || ctx.branches.contains(b.trim_start_matches("refs/heads/"));
                if is_branch && !own(b) {
                    return refuse(
                        "git-checkout-other",
                        format!("`git {cmd} {b}`: only {} may be checked out", ctx.branch),
                    );
                }
            }
            allow("git-checkout-own", "checkout within the own branch")
        }
        "tag" => {
            if p.positionals.is_empty() || p.has(&["l", "list"]) {
                allow("git-read-only", "tag listing")
            } else {
                refuse("git-tag", "creating or deleting tags is refused")
            }
        }
        "remote" => match p.positionals.first().map(String::as_str) {
            None | Some("show") | Some("get-url") => allow("git-read-only", "remote listing"),
            Some(sub) => refuse("git-remote", format!("`git remote {sub}` is refused")),
        },
        "config" => {
            let writes = p.has(&[
                "unset",
                "unset-all",
                "add",
                "replace-all",
                "rename-section",
                "remove-section",
                "edit",
                "e",
                "global",
                "system",
                "file",
                "f",
            ]);
            let reads = p.has(&["get", "get-all", "get-regexp", "list", "l", "show-origin"]);
            if !writes && (reads || p.positionals.len() <= 1) {
                allow("git-read-only", "config read")
            } else {
                refuse("git-config-write", "changing git config is refused")
            }
        }
        "symbolic-ref" if p.positionals.len() <= 1 && !p.has(&["d", "delete"]) => {
            allow("git-read-only", "symbolic-ref read")
        }
        "reflog" if matches!(p.positionals.first().map(String::as_str), None | Some("show")) => {
            allow("git-read-only", "reflog read")
        }
        "submodule" if matches!(p.positionals.first().map(String::as_str), None | Some("status")) => {
            allow("git-read-only", "submodule status")
        }
        c if GIT_SAFE.contains(&c) => allow("git-safe", format!("git {c} within the worktree")),
        other => refuse("git-unknown", format!("`git {other}` is not in loop's git policy; refused")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PolicyContext {
        PolicyContext {
            branch: "loop/m/B".into(),
            stack: vec!["loop/m/A".into()],
            trunk: "main".into(),
            current_branch: Some("loop/m/B".into()),
            branches: ["main", "loop/m/A", "loop/m/B", "loop/m/C"].iter().map(|s| s.to_string()).collect(),
            gt_aliases: default_gt_aliases(),
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn decide(line: &str, c: &PolicyContext) -> Decision {
        let w = words(line);
        let tool = Tool::from_name(&w[0]).unwrap();
        classify(tool, &w[1..], c, &GuardConfig::default())
    }

    /// One row per rule: (command line, allowed, rule).
    const TABLE: &[(&str, bool, &str)] = &[
        ("gt sync --no-restack", true, "gt-sync-no-restack"),
        ("gt --no-interactive sync --no-restack", true, "gt-sync-no-restack"),
        ("gt sync", false, "gt-sync-restack"),
        ("gt sync --restack", false, "gt-sync-restack"),
        ("gt sync --no-restack --force", false, "gt-sync-force"),
        ("gt sync --no-restack -f", false, "gt-sync-force"),
        ("gt sync --no-restack -d", false, "gt-sync-delete"),
        ("gt sync --no-restack --all", false, "gt-sync-all"),
        ("gt create -m msg", true, "gt-create-own"),
        ("gt c -am msg part2", true, "gt-create-own"),
        ("gt create --onto loop/m/C x", false, "gt-create-onto"),
        ("gt create --onto=loop/m/C x", false, "gt-create-onto"),
        ("gt create -o loop/m/A x", true, "gt-create-own"),
        ("gt create --insert x", false, "gt-create-insert"),
        ("gt create -ai x", false, "gt-create-insert"),
        ("gt modify -a -m msg", true, "gt-modify-own"),
        ("gt m -c -a", true, "gt-modify-own"),
        ("gt track -p loop/m/A", true, "gt-track-own"),
        ("gt track loop/m/B --parent main", true, "gt-track-own"),
        ("gt track -p loop/m/C", false, "gt-track-parent"),
        ("gt track --parent=loop/m/C", false, "gt-track-parent"),
        ("gt track loop/m/C -p main", false, "gt-track-other"),
        ("gt log short", true, "gt-read-only"),
        ("gt ls", true, "gt-read-only"),
        ("gt l", true, "gt-read-only"),
        ("gt state", true, "gt-read-only"),
        ("gt info", true, "gt-read-only"),
        ("gt submit --draft", true, "gt-submit-draft"),
        ("gt ss --draft", true, "gt-submit-draft"),
        ("gt ss -d", true, "gt-submit-draft"),
        ("gt submit", false, "gt-submit-draft"),
        ("gt ss", false, "gt-submit-draft"),
        ("gt s --stack", false, "gt-submit-draft"),
        ("gt submit --draft --publish", false, "gt-submit-publish"),
        ("gt ss -dp", false, "gt-submit-publish"),
        ("gt restack", true, "gt-restack-own"),
        ("gt r", true, "gt-restack-own"),
        ("gt move --onto main", false, "gt-move"),
        ("gt get loop/m/C", false, "gt-get"),
        ("gt undo", false, "gt-undo"),
        ("gt rebase main", false, "gt-passthrough"),
        ("gt reset --hard", false, "gt-passthrough"),
        ("gt frobnicate", false, "gt-unknown"),
        ("gt res", false, "gt-unknown"),
        ("gt delete loop/m/C", false, "gt-unknown"),
        ("gt --cwd /elsewhere log", false, "gt-cwd"),
        ("gt checkout loop/m/A", true, "gt-checkout-own"),
        ("gt co loop/m/C", false, "gt-checkout-other"),
        ("git status", true, "git-safe"),
        ("git -C . log --oneline", true, "git-safe"),
        ("git commit -am msg", true, "git-safe"),
        ("git worktree list", true, "git-read-only"),
        ("git worktree add ../x", false, "git-worktree"),
        ("git worktree remove ../x", false, "git-worktree"),
        ("git worktree prune", false, "git-worktree"),
        ("git push origin loop/m/B", true, "git-push"),
        ("git push --force origin loop/m/B", false, "git-push-force"),
        ("git push -f", false, "git-push-force"),
        ("git push -uf origin loop/m/B", false, "git-push-force"),
        ("git push --force-with-lease=loop/m/B", false, "git-push-force"),
        ("git push origin +loop/m/B", false, "git-push-force"),
        ("git push origin loop/m/C", false, "git-push-other"),
        ("git branch", true, "git-read-only"),
        ("git branch --list", true, "git-read-only"),
        ("git branch -D loop/m/C", false, "git-branch-delete"),
        ("git branch --delete loop/m/C", false, "git-branch-delete"),
        ("git branch -vD loop/m/C", false, "git-branch-delete"),
        ("git branch newthing", false, "git-branch-create"),
        ("git checkout loop/m/C", false, "git-checkout-other"),
        ("git checkout main", false, "git-checkout-other"),
        ("git checkout -b other", false, "git-checkout-other"),
        ("git checkout -- src/main.rs", true, "git-checkout-own"),
        ("git checkout src/main.rs", true, "git-checkout-own"),
        ("git checkout loop/m/B", true, "git-checkout-own"),
        ("git checkout -", false, "git-checkout-other"),
        ("git switch main", false, "git-checkout-other"),
        ("git switch -c x", false, "git-checkout-other"),
        ("git checkout --detach", false, "git-checkout-detach"),
        ("git -c alias.x=worktree x add y", false, "git-inline-alias"),
        ("git -calias.x=worktree x", false, "git-inline-alias"),
        ("git update-ref refs/heads/x HEAD", false, "git-unknown"),
        ("git myalias", false, "git-unknown"),
        ("git tag v1", false, "git-tag"),
        ("git config user.name", true, "git-read-only"),
        ("git config user.name x", false, "git-config-write"),
    ];

    #[test]
    fn every_rule_in_the_table() {
        let c = ctx();
        for (line, allowed, rule) in TABLE {
            let d = decide(line, &c);
            assert_eq!((d.allowed, d.rule.as_str()), (*allowed, *rule), "{line}: {}", d.message);
        }
    }

    #[test]
    fn restack_with_trunk_checked_out_or_another_stack_is_refused() {
        let mut c = ctx();
        c.current_branch = Some("main".into());
        assert_eq!(decide("gt restack", &c).rule, "gt-restack-trunk");
        c.current_branch = Some("loop/m/C".into());
        assert_eq!(decide("gt restack", &c).rule, "gt-restack-other");
        assert_eq!(decide("gt modify -a", &c).rule, "gt-modify-other");
        c.current_branch = None;
        assert!(!decide("gt restack", &c).allowed);
    }

    #[test]
    fn user_aliases_resolve_before_classification() {
        let mut c = ctx();
        c.gt_aliases = parse_gt_aliases("# mine\nss submit --stack\nnuke sync --force\nsafe sync --no-restack\n");
        assert_eq!(decide("gt nuke", &c).rule, "gt-sync-force");
        assert!(decide("gt safe", &c).allowed);
        assert!(!decide("gt ss", &c).allowed);
    }

    #[test]
    fn config_patterns_override_the_builtin_policy() {
        let c = ctx();
        let cfg =
            GuardConfig { allow: vec!["gt submit".into()], deny: vec!["git stash drop".into()], ..Default::default() };
        let d = classify(Tool::Gt, &words("ss"), &c, &cfg);
        assert_eq!((d.allowed, d.rule.as_str()), (true, "config-allow"));
        let d = classify(Tool::Git, &words("stash drop"), &c, &cfg);
        assert_eq!((d.allowed, d.rule.as_str()), (false, "config-deny"));
    }

    use proptest::prelude::*;

    /// Refused forms, each as the words that must appear (in order) after the tool.
    const REFUSED: &[(&str, &[&str])] = &[
        ("gt", &["sync", "--force", "--no-restack"]),
        ("gt", &["sync", "-f", "--no-restack"]),
        ("gt", &["sync"]),
        ("gt", &["move", "--onto", "main"]),
        ("gt", &["get"]),
        ("gt", &["undo"]),
        ("gt", &["rebase"]),
        ("gt", &["reset"]),
        ("gt", &["submit", "--draft", "--publish"]),
        ("gt", &["ss", "--publish", "-d"]),
        ("gt", &["create", "--onto", "loop/m/C"]),
        ("gt", &["create", "--insert"]),
        ("gt", &["track", "-p", "loop/m/C"]),
        ("git", &["worktree", "add", "x"]),
        ("git", &["worktree", "remove", "x"]),
        ("git", &["worktree", "prune"]),
        ("git", &["push", "--force"]),
        ("git", &["push", "-f"]),
        ("git", &["branch", "-D", "loop/m/C"]),
        ("git", &["checkout", "loop/m/C"]),
    ];

    /// Rewrites a flag into an equivalent spelling: `--x v` → `--x=v`, `-f` merged with
    /// harmless neighbours, and so on.
    fn respell(words: &[&str], style: u8) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let next = words.get(i + 1).copied();
            let long_with_value = w.starts_with("--") && matches!(w, "--onto" | "--parent") && next.is_some();
            match style % 3 {
                1 if long_with_value => {
                    out.push(format!("{w}={}", next.unwrap()));
                    i += 2;
                    continue;
                }
                2 if w.len() == 2 && w.starts_with('-') && w != "--" && !matches!(w, "-p" | "-m" | "-o") => {
                    // Combined short flags: `-f` → `-qf`.
                    out.push(format!("-q{}", &w[1..]));
                }
                _ => out.push(w.to_string()),
            }
            i += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn no_refused_form_is_ever_allowed(
            idx in 0..REFUSED.len(),
            style in 0u8..3,
            noise in proptest::collection::vec(prop_oneof![
                Just("--no-interactive"), Just("--debug"), Just("-q"), Just("--quiet"),
            ], 0..3),
            extra in proptest::collection::vec(prop_oneof![
                Just("-a"), Just("--verbose"), Just("-m"), Just("msg"), Just("--"), Just("file.txt"),
            ], 0..4),
            rotate in 0usize..4,
        ) {
            let (tool, form) = REFUSED[idx];
            let mut argv: Vec<String> = Vec::new();
            if tool == "gt" {
                argv.extend(noise.iter().map(|s| s.to_string()));
            }
            let spelled = respell(form, style);
            let (head, flags) = spelled.split_first().unwrap();
            argv.push(head.clone());
            // Flag order varies: rotate the flags, extra words go after (never before the
            // refused words, so `--` cannot turn them into paths).
            let mut flags = flags.to_vec();
            if !flags.is_empty() && !form.iter().any(|w| !w.starts_with('-') && w != head) {
                let n = flags.len();
                flags.rotate_left(rotate % n);
            }
            argv.extend(flags);
            let extra_start = extra.iter().position(|e| *e == "--").unwrap_or(extra.len());
            argv.extend(extra[..extra_start].iter().filter(|e| **e != "-m" && **e != "msg").map(|s| s.to_string()));
            let d = classify(Tool::from_name(tool).unwrap(), &argv, &ctx(), &GuardConfig::default());
            prop_assert!(!d.allowed, "{tool} {:?} was allowed by {}", argv, d.rule);
        }
    }
}
