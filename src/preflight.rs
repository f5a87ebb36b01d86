//! Pre-flight: what must hold before a run writes its first byte (worktree, branch, journal
//! record), checked all at once so a failed start names every problem and leaves nothing behind.
//!
//! Two halves: [`gather`] asks git, codex, gt and the file system for the [`Facts`] (reads only;
//! the one write is a temp file created and removed again inside the state dir, to prove it is
//! writable), and [`check`] turns facts into [`Problem`]s without any I/O, so every rule is
//! unit-tested on plain values.
//!
//! Invariants:
//! - [`check`] reports every problem, in a fixed order, one line each; an empty list means go.
//! - `--allow-dirty` excuses a dirty main checkout, never an issue doc that is not committed:
//!   the agent's worktree is made from a commit, so it could not read that doc.
//! - Every child (git, `codex login status`, gt) runs through [`crate::proc`]: stdin closed, own
//!   process group, a timeout. The writability probe opens with `O_CREAT|O_EXCL`, which never
//!   follows a symlink.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::{self, Cmd};

/// The minimum free disk space when loop.toml does not say (`[run] min_free_disk_mb`).
pub const DEFAULT_MIN_FREE_DISK_MB: u64 = 1024;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Where an issue doc stands in git.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocState {
    /// In HEAD and unchanged in the checkout.
    Committed,
    /// Not in HEAD (untracked, ignored, or only staged as new).
    NotInHead,
    /// In HEAD, changed in the checkout or the index.
    Modified,
}

/// What the agent would be: codex (with what its presence check found) or the simulated one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodexFact {
    /// The simulated agent: nothing to check.
    NotNeeded,
    /// Not installed; the message says how to install it.
    Missing(String),
    /// `codex login status` ran and ended like this (`ok`: exit 0).
    LoginStatus { bin: String, ok: bool, how: String, said: String },
}

/// The free space of the file system the state dir is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskFact {
    /// The directory measured (the state dir, or its nearest existing ancestor).
    pub path: PathBuf,
    /// Bytes available to an unprivileged user, or why statvfs failed.
    pub free: Result<u64, String>,
    pub min_mb: u64,
}

/// Everything pre-flight looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `git status --porcelain` entries of the main checkout (loop's own state dir left out), or
    /// why git could not say.
    pub main_status: Result<Vec<String>, String>,
    pub allow_dirty: bool,
    /// Every planned issue doc (relative to the repo) and where it stands.
    pub docs: Vec<(String, DocState)>,
    pub codex: CodexFact,
    /// With `--stack graphite`: gt's path, or why it cannot be used. None without.
    pub gt: Option<Result<String, String>>,
    /// The state dir (or where it will be created) takes a new file, or why not.
    pub state_dir: (PathBuf, Result<(), String>),
    pub disk: DiskFact,
    /// Each agent backend the run will use: its version, and (claude) whether it can log in.
    pub backends: Vec<BackendFact>,
}

/// An agent backend a run will use, found at `bin` (present: its absence is reported before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// `codex` or `claude`.
    pub kind: String,
    pub bin: PathBuf,
}

/// What the checks of one backend found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendFact {
    pub kind: String,
    pub bin: String,
    /// The version `BIN --version` printed (None: it printed none we could read; then it is not
    /// judged, so a wrapper script is not refused for its output).
    pub version: Option<String>,
    /// claude: an API key, an OAuth token, or a credentials file was found, or where it looked.
    /// None for codex, whose `codex login status` is [`CodexFact`].
    pub login: Option<Result<(), String>>,
}

/// The versions loop drives (flags and stream shapes change between releases): a prefix of
/// `major.minor.`, and the npm package to install.
pub fn supported_version(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "codex" => Some(("0.169.", "@openai/codex@0.169.0")),
        "claude" => Some(("2.1.", "@anthropic-ai/claude-code@2.1")),
        _ => None,
    }
}

/// The first `N.N.N` word of a `--version` output (`codex-cli 0.169.0`, `2.1.3 (Claude Code)`).
pub fn parse_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',').find_map(|w| {
        let w = w.trim_start_matches('v');
        let parts: Vec<&str> = w.split('.').collect();
        (parts.len() >= 3 && parts[..3].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
            .then(|| w.to_string())
    })
}

/// Whether Claude Code can authenticate: `ANTHROPIC_API_KEY` or `CLAUDE_CODE_OAUTH_TOKEN` set, or
/// a credentials file in `CLAUDE_CONFIG_DIR` (else `~/.claude`). `Err` says where it looked.
pub fn claude_login(get: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let set = |k: &str| get(k).is_some_and(|v| !v.is_empty());
    if set("ANTHROPIC_API_KEY") || set("CLAUDE_CODE_OAUTH_TOKEN") {
        return Ok(());
    }
    let dir = match (get("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()), get("HOME").filter(|v| !v.is_empty())) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(h)) => Path::new(&h).join(".claude"),
        (None, None) => return Err("neither ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN nor HOME is set".into()),
    };
    let file = dir.join(".credentials.json");
    if file.is_file() {
        Ok(())
    } else {
        Err(format!("ANTHROPIC_API_KEY and CLAUDE_CODE_OAUTH_TOKEN are unset and {} does not exist", file.display()))
    }
}

/// One reason a run must not start, shown as one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("main checkout is not clean ({}); commit or stash, or pass --allow-dirty", shown(.changes))]
    Dirty { changes: Vec<String> },
    #[error("main checkout status: {0}")]
    Status(String),
    #[error(
        "issue doc {path} is {} in HEAD: commit it{}; the agent's worktree is made from a commit and its prompt tells it to read that doc",
        match .state { DocState::Modified => "changed since it was committed", _ => "not committed" },
        if *.allow_dirty { " (--allow-dirty does not cover issue docs)" } else { "" }
    )]
    DocNotCommitted { path: String, state: DocState, allow_dirty: bool },
    #[error("{0}")]
    CodexMissing(String),
    #[error(
        "codex is not logged in: `{bin} login status` ended with {how}{}; run `codex login` (or `codex login --with-api-key`)",
        if .said.is_empty() { String::new() } else { format!(" ({})", .said) }
    )]
    CodexNotLoggedIn { bin: String, how: String, said: String },
    #[error("--stack graphite needs gt: {0}")]
    GtMissing(String),
    #[error("state dir {}: not writable: {reason}", path.display())]
    StateDir { path: PathBuf, reason: String },
    #[error(
        "only {free_mb} MiB free on the file system of {}; a run needs at least {min_mb} MiB (loop.toml [run] min_free_disk_mb)",
        path.display()
    )]
    LowDisk { path: PathBuf, free_mb: u64, min_mb: u64 },
    #[error("free disk space of {}: {reason}", path.display())]
    DiskUnknown { path: PathBuf, reason: String },
    #[error(
        "{kind} {found} at {bin} is not a version loop drives ({wanted}x); install it with `npm install -g {package}`"
    )]
    BackendVersion { kind: String, bin: String, found: String, wanted: String, package: String },
    #[error(
        "claude is not logged in ({reason}); set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`), or run `claude` once and log in"
    )]
    ClaudeNotLoggedIn { reason: String },
}

fn shown(changes: &[String]) -> String {
    let mut s: Vec<String> = changes.iter().take(5).cloned().collect();
    if changes.len() > 5 {
        s.push(format!("and {} more", changes.len() - 5));
    }
    s.join(", ")
}

/// Pre-flight failed: every problem, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PreflightError {
    pub problems: Vec<Problem>,
}

/// The problems in `facts`, in a fixed order (checkout, docs, agent, gt, state dir, disk).
pub fn check(facts: &Facts) -> Vec<Problem> {
    let mut out = Vec::new();
    match &facts.main_status {
        Ok(changes) if !changes.is_empty() && !facts.allow_dirty => {
            out.push(Problem::Dirty { changes: changes.clone() })
        }
        Ok(_) => {}
        Err(e) => out.push(Problem::Status(e.clone())),
    }
    for (path, state) in &facts.docs {
        if *state != DocState::Committed {
            out.push(Problem::DocNotCommitted {
                path: path.clone(),
                state: state.clone(),
                allow_dirty: facts.allow_dirty,
            });
        }
    }
    match &facts.codex {
        CodexFact::NotNeeded | CodexFact::LoginStatus { ok: true, .. } => {}
        CodexFact::Missing(m) => out.push(Problem::CodexMissing(m.clone())),
        CodexFact::LoginStatus { bin, how, said, .. } => {
            out.push(Problem::CodexNotLoggedIn { bin: bin.clone(), how: how.clone(), said: said.clone() })
        }
    }
    if let Some(Err(e)) = &facts.gt {
        out.push(Problem::GtMissing(e.clone()));
    }
    if let (path, Err(reason)) = &facts.state_dir {
        out.push(Problem::StateDir { path: path.clone(), reason: reason.clone() });
    }
    let d = &facts.disk;
    match &d.free {
        Ok(free) if *free / (1024 * 1024) < d.min_mb => {
            out.push(Problem::LowDisk { path: d.path.clone(), free_mb: free / (1024 * 1024), min_mb: d.min_mb })
        }
        Ok(_) => {}
        Err(reason) => out.push(Problem::DiskUnknown { path: d.path.clone(), reason: reason.clone() }),
    }
    for b in &facts.backends {
        if let (Some(found), Some((wanted, package))) = (&b.version, supported_version(&b.kind)) {
            if !found.starts_with(wanted) {
                out.push(Problem::BackendVersion {
                    kind: b.kind.clone(),
                    bin: b.bin.clone(),
                    found: found.clone(),
                    wanted: wanted.to_string(),
                    package: package.to_string(),
                });
            }
        }
        if let Some(Err(reason)) = &b.login {
            out.push(Problem::ClaudeNotLoggedIn { reason: reason.clone() });
        }
    }
    out
}

/// What [`gather`] is asked to look at.
pub struct Request<'a> {
    /// The repository root.
    pub repo: &'a Path,
    /// loop's state dir (it may not exist yet).
    pub state_dir: &'a Path,
    pub allow_dirty: bool,
    /// Check the main checkout at all (off when the guard's checks are off).
    pub check_checkout: bool,
    /// The planned issue docs, relative to the repo.
    pub docs: Vec<String>,
    /// None: the simulated agent. Some: where codex was found, or why it was not.
    pub codex: Option<Result<PathBuf, String>>,
    /// With `--stack graphite`: the gt binary to look for.
    pub gt: Option<PathBuf>,
    /// The agent backends the run will use (found on disk), for their version and login.
    pub backends: Vec<Backend>,
    pub min_free_disk_mb: u64,
}

/// Gathers the facts and checks them: `Ok` means the run may start.
pub fn run(req: &Request) -> Result<(), PreflightError> {
    let problems = check(&gather(req));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PreflightError { problems })
    }
}

/// Looks at the repository, the tools and the state dir (see the module doc for what it writes).
pub fn gather(req: &Request) -> Facts {
    let status = if req.check_checkout || !req.docs.is_empty() {
        // Without the checkout's check only the docs' own status is needed.
        let only = (!req.check_checkout).then_some(req.docs.as_slice());
        git_status(req.repo, only).map(|entries| without_state_dir(entries, req.repo, req.state_dir))
    } else {
        Ok(Vec::new())
    };
    let docs = match &status {
        Ok(entries) => doc_states(req.repo, &req.docs, entries),
        // git could not say; the status problem is reported once, not once per doc.
        Err(_) => req.docs.iter().map(|d| (d.clone(), DocState::Committed)).collect(),
    };
    let main_status = if req.check_checkout {
        status.map(|entries| entries.into_iter().map(|(xy, path)| format!("{xy} {path}")).collect())
    } else {
        Ok(Vec::new())
    };
    let codex = match &req.codex {
        None => CodexFact::NotNeeded,
        Some(Err(m)) => CodexFact::Missing(m.clone()),
        Some(Ok(bin)) => login_status(bin),
    };
    let gt = req.gt.as_ref().map(|bin| find_bin(bin).map(|p| p.display().to_string()));
    let existing = nearest_existing(req.state_dir);
    let state_dir = (existing.clone(), probe_writable(&existing));
    let disk = DiskFact { free: free_bytes(&existing), path: existing, min_mb: req.min_free_disk_mb };
    let backends = req.backends.iter().map(backend_fact).collect();
    Facts { main_status, allow_dirty: req.allow_dirty, docs, codex, gt, state_dir, disk, backends }
}

/// `BIN --version` (a child like every other: stdin closed, own group, a short timeout), and for
/// claude where its login would come from.
fn backend_fact(b: &Backend) -> BackendFact {
    let cmd = Cmd::new(&b.bin).arg("--version").timeout(Duration::from_secs(15)).not_cancellable();
    let version = proc::run(&cmd).ok().filter(|o| o.success()).and_then(|o| parse_version(&o.stdout_text()));
    let login = (b.kind == "claude").then(|| claude_login(&|k| std::env::var(k).ok()));
    BackendFact { kind: b.kind.clone(), bin: b.bin.display().to_string(), version, login }
}

fn git(repo: &Path, args: &[&str]) -> Result<proc::Output, String> {
    let cmd = Cmd::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .timeout(TIMEOUT)
        .not_cancellable();
    proc::run(&cmd).map_err(|e| e.to_string())
}

/// `git status --porcelain -z`: (XY, path) per entry, untracked files one by one; only of
/// `paths` when given (a whole checkout's status costs a scan of every file: on a large
/// repository far more than the docs a run reads).
fn git_status(repo: &Path, paths: Option<&[String]>) -> Result<Vec<(String, String)>, String> {
    // Literal pathspecs: a doc's name is data, never a pattern.
    let mut args = vec!["--literal-pathspecs", "status", "--porcelain", "-z", "--untracked-files=all"];
    if let Some(paths) = paths {
        args.push("--");
        args.extend(paths.iter().map(String::as_str));
    }
    let out = git(repo, &args)?;
    if !out.success() {
        return Err(format!("git status: {} ({})", out.stderr_text().trim(), out.describe()));
    }
    Ok(parse_status_z(&out.stdout))
}

/// Parses `git status --porcelain -z`; a rename's second (source) path is skipped.
fn parse_status_z(raw: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parts = raw.split(|b| *b == 0).filter(|p| !p.is_empty());
    while let Some(p) = parts.next() {
        if p.len() < 4 {
            continue;
        }
        let xy = String::from_utf8_lossy(&p[..2]).into_owned();
        out.push((xy.clone(), String::from_utf8_lossy(&p[3..]).into_owned()));
        if xy.contains('R') || xy.contains('C') {
            parts.next();
        }
    }
    out
}

/// loop's own state dir inside the repository is loop's, not a change of the user's (a run
/// excludes it in `.git/info/exclude`; before the first run it may not be excluded yet).
fn without_state_dir(entries: Vec<(String, String)>, repo: &Path, state: &Path) -> Vec<(String, String)> {
    let Ok(rel) = state.strip_prefix(repo) else { return entries };
    let rel = rel.display().to_string();
    if rel.is_empty() {
        return entries;
    }
    entries.into_iter().filter(|(_, p)| !(p == &rel || p.starts_with(&format!("{rel}/")))).collect()
}

/// Each doc's state: not in HEAD unless `git ls-tree HEAD` lists it; modified if status does.
fn doc_states(repo: &Path, docs: &[String], status: &[(String, String)]) -> Vec<(String, DocState)> {
    if docs.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["ls-tree", "-r", "-z", "--name-only", "--full-tree", "HEAD", "--"];
    args.extend(docs.iter().map(String::as_str));
    let in_head: Vec<String> = match git(repo, &args) {
        Ok(out) if out.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        // No HEAD yet (or git failed): nothing is committed.
        _ => Vec::new(),
    };
    docs.iter()
        .map(|d| {
            let state = if !in_head.contains(d) {
                DocState::NotInHead
            } else if status.iter().any(|(_, p)| p == d) {
                DocState::Modified
            } else {
                DocState::Committed
            };
            (d.clone(), state)
        })
        .collect()
}

/// `codex login status`: exit 0 means logged in (an API key counts).
fn login_status(bin: &Path) -> CodexFact {
    let mut cmd = Cmd::new(bin).args(["login", "status"]).timeout(Duration::from_secs(30)).not_cancellable();
    // The CODEX_HOME the run's codex gets (see guard::shim::prepare: the agent's HOME is loop's
    // own, so its codex is pointed at the user's): $CODEX_HOME, else ~/.codex.
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    if let Some(codex_home) =
        std::env::var_os("CODEX_HOME").or_else(|| home.map(|h| Path::new(&h).join(".codex").into()))
    {
        cmd = cmd.env("CODEX_HOME", codex_home);
    }
    let shown = bin.display().to_string();
    match proc::run(&cmd) {
        Ok(out) => {
            // Its verdict is the last line it printed (warnings come first).
            let text = format!("{}\n{}", out.stderr_text(), out.stdout_text());
            let said = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").chars().take(200).collect();
            CodexFact::LoginStatus { bin: shown, ok: out.success(), how: out.describe(), said }
        }
        Err(e) => CodexFact::LoginStatus { bin: shown, ok: false, how: e.to_string(), said: String::new() },
    }
}

/// A binary named with a `/` must be a file there; a bare name is looked up on PATH.
fn find_bin(bin: &Path) -> Result<PathBuf, String> {
    let found = if bin.components().count() > 1 {
        Some(bin.to_path_buf()).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(bin)).find(|p| p.is_file()))
    };
    found.ok_or_else(|| {
        format!(
            "{} was not found (install it with `npm install -g @withgraphite/graphite-cli`, or point LOOP_GT_BIN at it)",
            bin.display()
        )
    })
}

/// The directory itself if it exists, else its nearest existing ancestor (where it would be made).
fn nearest_existing(dir: &Path) -> PathBuf {
    let mut p = dir;
    loop {
        if std::fs::symlink_metadata(p).is_ok() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return p.to_path_buf(),
        }
    }
}

/// Creates and removes a file in `dir`. `create_new` (O_EXCL) refuses an existing name, a
/// symlink included, so the probe never writes through one.
fn probe_writable(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            // The state dir itself may be a symlink the user made; its target is what is checked.
            if !std::fs::metadata(dir).map(|m| m.is_dir()).unwrap_or(false) {
                return Err("a symlink to something that is not a directory".into());
            }
        }
        Ok(m) if !m.is_dir() => return Err("not a directory".into()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let probe = dir.join(format!(".loop-preflight-{}", std::process::id()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(|e| e.to_string())?;
    drop(file);
    std::fs::remove_file(&probe).map_err(|e| format!("{}: {e}", probe.display()))
}

/// Bytes available to an unprivileged user on the file system of `dir`.
fn free_bytes(dir: &Path) -> Result<u64, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    #[expect(clippy::useless_conversion, reason = "the field widths differ between targets")]
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            main_status: Ok(Vec::new()),
            allow_dirty: false,
            docs: vec![("docs/projects/p/issues/A.md".into(), DocState::Committed)],
            codex: CodexFact::NotNeeded,
            gt: None,
            state_dir: (PathBuf::from("/r/.loop"), Ok(())),
            disk: DiskFact { path: PathBuf::from("/r/.loop"), free: Ok(10 << 30), min_mb: 1024 },
            backends: Vec::new(),
        }
    }

    #[test]
    fn backend_versions_and_claude_login_are_checked() {
        assert_eq!(parse_version("codex-cli 0.169.0\n").as_deref(), Some("0.169.0"));
        assert_eq!(parse_version("2.1.12 (Claude Code)\n").as_deref(), Some("2.1.12"));
        assert_eq!(parse_version("the agent must not run"), None);
        let fact = |kind: &str, version: Option<&str>, login| BackendFact {
            kind: kind.into(),
            bin: format!("/bin/{kind}"),
            version: version.map(String::from),
            login,
        };
        let mut f = facts();
        f.backends = vec![fact("codex", Some("0.169.3"), None), fact("claude", Some("2.1.0"), Some(Ok(())))];
        assert!(check(&f).is_empty(), "{:?}", check(&f));
        f.backends = vec![
            fact("codex", Some("0.170.0"), None),
            fact("codex", None, None),
            fact("claude", Some("2.0.9"), Some(Err("no key".into()))),
        ];
        assert_eq!(
            lines(&f),
            [
                "codex 0.170.0 at /bin/codex is not a version loop drives (0.169.x); install it with `npm install -g \
                 @openai/codex@0.169.0`",
                "claude 2.0.9 at /bin/claude is not a version loop drives (2.1.x); install it with `npm install -g \
                 @anthropic-ai/claude-code@2.1`",
                "claude is not logged in (no key); set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude \
                 setup-token`), or run `claude` once and log in",
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let env = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        assert!(claude_login(&env(vec![("ANTHROPIC_API_KEY", "k".into())])).is_ok());
        assert!(claude_login(&env(vec![("CLAUDE_CODE_OAUTH_TOKEN", "t".into())])).is_ok());
        let err = claude_login(&env(vec![("HOME", home.clone())])).unwrap_err();
        assert!(err.ends_with(&format!("{home}/.claude/.credentials.json does not exist")), "{err}");
        std::fs::create_dir_all(dir.path().join("cfg")).unwrap();
        std::fs::write(dir.path().join("cfg/.credentials.json"), "{}").unwrap();
        let cfg = format!("{home}/cfg");
        assert!(claude_login(&env(vec![("HOME", home.clone()), ("CLAUDE_CONFIG_DIR", cfg)])).is_ok());
    }

    fn lines(f: &Facts) -> Vec<String> {
        check(f).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn all_good_is_no_problem() {
        assert!(check(&facts()).is_empty());
        let mut f = facts();
        f.codex = CodexFact::LoginStatus { bin: "codex".into(), ok: true, how: "exit code 0".into(), said: "".into() };
        f.gt = Some(Ok("/usr/bin/gt".into()));
        assert!(check(&f).is_empty());
    }

    #[test]
    fn every_problem_is_reported_one_line_each_in_order() {
        let f = Facts {
            main_status: Ok(vec![" M src/a.rs".into(), "?? notes.txt".into()]),
            allow_dirty: false,
            docs: vec![
                ("docs/projects/p/issues/A.md".into(), DocState::Committed),
                ("docs/projects/p/issues/B.md".into(), DocState::NotInHead),
                ("docs/projects/p/issues/C.md".into(), DocState::Modified),
            ],
            codex: CodexFact::LoginStatus {
                bin: "/opt/codex".into(),
                ok: false,
                how: "exit code 1".into(),
                said: "Not logged in".into(),
            },
            gt: Some(Err("gt was not found".into())),
            state_dir: (PathBuf::from("/ro"), Err("Permission denied (os error 13)".into())),
            disk: DiskFact { path: PathBuf::from("/ro"), free: Ok(100 << 20), min_mb: 1024 },
            backends: Vec::new(),
        };
        let got = lines(&f);
        assert_eq!(
            got,
            [
                "main checkout is not clean ( M src/a.rs, ?? notes.txt); commit or stash, or pass --allow-dirty",
                "issue doc docs/projects/p/issues/B.md is not committed in HEAD: commit it; the agent's worktree is made \
                 from a commit and its prompt tells it to read that doc",
                "issue doc docs/projects/p/issues/C.md is changed since it was committed in HEAD: commit it; the agent's \
                 worktree is made from a commit and its prompt tells it to read that doc",
                "codex is not logged in: `/opt/codex login status` ended with exit code 1 (Not logged in); run `codex \
                 login` (or `codex login --with-api-key`)",
                "--stack graphite needs gt: gt was not found",
                "state dir /ro: not writable: Permission denied (os error 13)",
                "only 100 MiB free on the file system of /ro; a run needs at least 1024 MiB (loop.toml [run] \
                 min_free_disk_mb)",
            ]
        );
        assert!(got.iter().all(|l| !l.contains('\n')));
        let err = PreflightError { problems: check(&f) };
        assert_eq!(err.to_string().lines().count(), 7);
    }

    #[test]
    fn allow_dirty_excuses_the_checkout_but_not_an_uncommitted_issue_doc() {
        let mut f = facts();
        f.main_status = Ok(vec!["?? docs/projects/p/issues/B.md".into()]);
        f.docs.push(("docs/projects/p/issues/B.md".into(), DocState::NotInHead));
        f.allow_dirty = true;
        let got = lines(&f);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("issue doc docs/projects/p/issues/B.md is not committed in HEAD: commit it (--allow-dirty does not cover issue docs)"), "{got:?}");
    }

    #[test]
    fn codex_missing_disk_unknown_and_status_errors_are_problems() {
        let mut f = facts();
        f.codex = CodexFact::Missing("codex is not installed (`codex` is not on PATH)".into());
        f.main_status = Err("git status: not a git repository".into());
        f.disk.free = Err("No such file".into());
        assert_eq!(
            lines(&f),
            [
                "main checkout status: git status: not a git repository",
                "codex is not installed (`codex` is not on PATH)",
                "free disk space of /r/.loop: No such file",
            ]
        );
        // Exactly the minimum is enough.
        let mut f = facts();
        f.disk.free = Ok(1024 << 20);
        assert!(check(&f).is_empty());
        f.disk.free = Ok((1024 << 20) - 1);
        assert_eq!(lines(&f).len(), 1);
    }

    #[test]
    fn status_z_parses_renames_and_odd_names() {
        let raw = b" M a b.txt\0R  new.md\0old.md\0?? \xe2\x9c\x93.md\0";
        assert_eq!(
            parse_status_z(raw),
            [(" M".into(), "a b.txt".into()), ("R ".into(), "new.md".into()), ("??".into(), "✓.md".into())]
        );
        let entries = vec![("??".to_string(), ".loop/x".to_string()), ("??".into(), ".loopy".into())];
        assert_eq!(
            without_state_dir(entries, Path::new("/r"), Path::new("/r/.loop")),
            [("??".into(), ".loopy".into())]
        );
    }

    /// The facts of a real repository: committed, modified, untracked and ignored docs; a state
    /// dir that does not exist yet is probed at its nearest ancestor and left as it was.
    #[test]
    fn gather_reads_a_real_repository() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path();
        let g = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        g(&["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(repo.join("i")).unwrap();
        for n in ["A", "B"] {
            std::fs::write(repo.join(format!("i/{n}.md")), n).unwrap();
        }
        std::fs::write(repo.join(".gitignore"), "i/D.md\n").unwrap();
        g(&["add", "-A"]);
        g(&["commit", "-q", "-m", "init"]);
        std::fs::write(repo.join("i/B.md"), "changed").unwrap();
        std::fs::write(repo.join("i/C.md"), "new").unwrap();
        std::fs::write(repo.join("i/D.md"), "ignored").unwrap();
        let state = repo.join(".loop/state");
        let req = Request {
            repo,
            state_dir: &state,
            allow_dirty: false,
            check_checkout: true,
            docs: ["i/A.md", "i/B.md", "i/C.md", "i/D.md"].map(String::from).to_vec(),
            codex: None,
            gt: Some(PathBuf::from("/nonexistent/gt")),
            min_free_disk_mb: 0,
            backends: Vec::new(),
        };
        let before: Vec<_> = std::fs::read_dir(repo).unwrap().map(|e| e.unwrap().file_name()).collect();
        let f = gather(&req);
        let after: Vec<_> = std::fs::read_dir(repo).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "the probe leaves nothing behind");
        assert_eq!(
            f.docs.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
            [DocState::Committed, DocState::Modified, DocState::NotInHead, DocState::NotInHead]
        );
        assert_eq!(f.main_status, Ok(vec![" M i/B.md".to_string(), "?? i/C.md".to_string()]));
        assert_eq!(f.state_dir, (repo.to_path_buf(), Ok(())));
        assert!(f.disk.free.as_ref().is_ok_and(|b| *b > 0));
        assert!(matches!(&f.gt, Some(Err(m)) if m.contains("/nonexistent/gt was not found")));
        assert_eq!(check(&f).len(), 5, "{:?}", check(&f));
    }

    #[test]
    fn the_probe_refuses_a_file_and_never_writes_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(probe_writable(&file), Err("not a directory".into()));
        let dir = d.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        let target = d.path().join("target");
        std::os::unix::fs::symlink(&target, dir.join(format!(".loop-preflight-{}", std::process::id()))).unwrap();
        assert!(probe_writable(&dir).is_err());
        assert!(!target.exists(), "nothing was written through the symlink");
    }
}
