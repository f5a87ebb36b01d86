//! `loop logs RUN ISSUE [PHASE]`: an issue's raw logs under `<state>/logs/<run>/<issue>/` —
//! the agents' streams (`dev-attempt1.jsonl`, `review2-attempt1.stderr`, a retry's
//! `fix1-attempt1-2.jsonl`) and the verification outputs (`dev-check-1.log`, `fix-1-setup-1.log`,
//! `base-<commit>-baseline-1.log`) — listed, or one phase's printed.
//!
//! Phases are named as the journal names them, with the cycle: `dev`, `review1`, `fix1`,
//! `review2`…, `verify-dev`, `verify-fix1`…, `baseline`; `review`, `fix` and `verify` mean the
//! newest of their kind.
//!
//! Invariants: read-only; a symlink in the logs dir is listed but never followed (an agent
//! could have planted it); text printed to a terminal is escaped like every agent's words.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  loop logs 2026 ORB-2            # list ORB-2's logs: phase, attempt, size, path\n  \
loop logs 2026 ORB-2 review     # the newest review's agent log\n  loop logs 2026 ORB-2 fix1 --all # every attempt of \
the first fix"
)]
pub struct LogsArgs {
    /// The run id or a unique prefix.
    pub run_id: String,
    /// The issue id.
    pub issue: String,
    /// Print this phase's log: dev, review1, fix1, verify-dev, verify-fix1, baseline… (review, fix,
    /// verify: the newest of each).
    pub phase: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Every attempt of PHASE, oldest first, not only the newest.
    #[arg(long, requires = "phase")]
    pub all: bool,
    /// The listing as JSON: `{"run_id", "issue", "logs": [{"phase", "attempt", "what", "path", "bytes"}]}`.
    #[arg(long, conflicts_with = "phase")]
    pub json: bool,
}

/// One file of an issue's logs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogFile {
    /// `dev`, `review2`, `fix1`, `verify-fix1`, `baseline`; `other` for a name loop did not write.
    pub phase: String,
    /// The agent's attempt (`1`; `1.2`: its second run after a transient error; `1 retry1`: the
    /// first re-ask after an unusable reply), or the verification command's number.
    pub attempt: String,
    /// `agent output`, `agent stderr`, `check`, `setup`, `baseline`, `symlink (not followed)`, `other`.
    pub what: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// Where this file stands among the issue's logs: phases in the order they run, then attempts.
    #[serde(skip)]
    order: (u32, u32, u32, u32, u32),
}

/// `(cycle, step)` of a phase name: dev, its verification, review 1, fix 1, its verification…
fn phase_order(phase: &str) -> Option<(u32, u32)> {
    let num = |s: &str| s.parse::<u32>().ok().filter(|n| *n > 0);
    Some(match phase {
        "dev" => (0, 0),
        "baseline" => (0, 1),
        "verify-dev" => (0, 2),
        p if p.starts_with("review") => (num(&p[6..])? - 1, 3),
        p if p.starts_with("verify-fix") => (num(&p[10..])?, 2),
        p if p.starts_with("fix") => (num(&p[3..])?, 0),
        _ => return None,
    })
}

/// Reads what a file name says it is; None for a name loop does not write.
fn classify(name: &str) -> Option<(String, String, String, (u32, u32))> {
    // Agent streams: `<phase>-attempt<a>[-retry<r>][-<n>].<jsonl|stderr>`.
    for (ext, what) in [(".jsonl", "agent output"), (".stderr", "agent stderr")] {
        if let Some((phase, rest)) = name.strip_suffix(ext).and_then(|s| s.split_once("-attempt")) {
            // `A`, then `-retryR` (a re-ask after an unusable reply), then `-N` (a re-run after a
            // transient error).
            let (rest, n) = match rest.rsplit_once('-') {
                Some((r, n)) if !n.starts_with("retry") => (r, n.parse::<u32>().ok()?),
                _ => (rest, 1),
            };
            let (attempt, retry) = match rest.split_once("-retry") {
                Some((a, r)) => (a.parse::<u32>().ok()?, r.parse::<u32>().ok()?),
                None => (rest.parse::<u32>().ok()?, 0),
            };
            phase_order(phase).filter(|_| !phase.starts_with("verify") && phase != "baseline")?;
            let mut shown = attempt.to_string();
            if retry > 0 {
                shown.push_str(&format!(" retry{retry}"));
            }
            if n > 1 {
                shown.push_str(&format!(".{n}"));
            }
            return Some((phase.to_string(), shown, what.to_string(), (attempt, retry * 1000 + n)));
        }
    }
    // Verification: `<label>-<setup|check|baseline>-<n>.log`, label `dev`, `fix-<n>`, `base-<commit>`.
    let stem = name.strip_suffix(".log")?;
    let (rest, n) = stem.rsplit_once('-')?;
    let n = n.parse::<u32>().ok()?;
    let (label, kind) = rest.rsplit_once('-')?;
    let phase = match (label, kind) {
        (l, "baseline") if l.starts_with("base-") => "baseline".to_string(),
        ("dev", "check" | "setup") => "verify-dev".to_string(),
        (l, "check" | "setup") => format!("verify-fix{}", l.strip_prefix("fix-")?.parse::<u32>().ok()?),
        _ => return None,
    };
    Some((phase, n.to_string(), kind.to_string(), (u32::from(kind != "setup"), n)))
}

/// Every file in the issue's logs dir, in the order the phases ran (unknown names last).
pub fn list(dir: &Path) -> Result<Vec<LogFile>, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|err| CliError::io(dir, err))?;
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|err| CliError::io(&path, err))?;
        if meta.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let known = classify(&name).filter(|_| meta.is_file());
        let (phase, attempt, what, order) = match known {
            Some((phase, attempt, what, (a, b))) => {
                let (cycle, step) = phase_order(&phase).expect("classify names known phases");
                (phase, attempt, what, (cycle, step, a, b, 0))
            }
            None => {
                let what = if meta.is_symlink() { "symlink (not followed)" } else { "other" };
                ("other".to_string(), "-".to_string(), what.to_string(), (u32::MAX, 0, 0, 0, 0))
            }
        };
        let order = (order.0, order.1, order.2, order.3, u32::from(what == "agent stderr"));
        out.push(LogFile { phase, attempt, what, path, bytes: meta.len(), order });
    }
    out.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.path.cmp(&b.path)));
    Ok(out)
}

/// The files PHASE names: its newest attempt (or every attempt with `all`). An unknown name is
/// an error listing the names this issue's logs have.
pub fn select<'a>(logs: &'a [LogFile], phase: &str, all: bool) -> Result<Vec<&'a LogFile>, String> {
    let family = |p: &str| match phase {
        "review" | "fix" => p.starts_with(phase) && !p.starts_with("verify"),
        "verify" => p.starts_with("verify-"),
        _ => p == phase,
    };
    let matching: Vec<&LogFile> = logs.iter().filter(|l| l.phase != "other" && family(&l.phase)).collect();
    let Some(newest) = matching.iter().map(|l| (l.order.0, l.order.1, l.order.2, l.order.3)).max() else {
        let mut names: Vec<&str> = Vec::new();
        for l in logs.iter().filter(|l| l.phase != "other") {
            if !names.contains(&l.phase.as_str()) {
                names.push(&l.phase);
            }
        }
        return Err(if names.is_empty() {
            "no logs to choose from".to_string()
        } else {
            format!("valid phases here: {} (or review, fix, verify: the newest of each)", names.join(", "))
        });
    };
    Ok(if all {
        matching
    } else if newest.1 == 2 {
        // A verification's logs are one per command: all of them together are its log.
        matching.into_iter().filter(|l| (l.order.0, l.order.1) == (newest.0, newest.1)).collect()
    } else {
        matching.into_iter().filter(|l| (l.order.0, l.order.1, l.order.2, l.order.3) == newest).collect()
    })
}

pub fn run(args: LogsArgs) -> Result<ExitCode, CliError> {
    use std::io::{IsTerminal, Write};
    let state = args.repo.state()?;
    let view = super::diff::run_issue(&state, &args.run_id, &args.issue)?;
    let dir = state.logs_dir(&view.run_id).join(crate::workspace::sanitize(&args.issue));
    let logs = list(&dir)?;
    let Some(phase) = &args.phase else {
        if args.json {
            crate::outln!(
                "{}",
                serde_json::json!({"run_id": view.run_id, "issue": args.issue, "dir": dir, "logs": logs})
            );
        } else {
            let rows: Vec<crate::render::logs::Row<'_>> = logs
                .iter()
                .map(|l| crate::render::logs::Row {
                    phase: &l.phase,
                    attempt: &l.attempt,
                    what: &l.what,
                    bytes: l.bytes,
                    path: &l.path,
                })
                .collect();
            crate::out!("{}", crate::render::logs::text(&view.run_id, &args.issue, &dir, &rows));
        }
        return Ok(ExitCode::Ok);
    };
    let chosen = select(&logs, phase, args.all).map_err(|why| {
        CliError::Usage(format!("no {phase} log for issue {} in run {}: {why}", args.issue, view.run_id))
    })?;
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let headers = chosen.len() > 1;
    for l in chosen {
        // Symlinks are never chosen (their phase is `other`); the open refuses one put in place since.
        let bytes = read_no_follow(&l.path).map_err(|e| CliError::io(&l.path, e))?;
        let mut text = Vec::new();
        if headers {
            text.extend_from_slice(format!("==> {} <==\n", l.path.display()).as_bytes());
        }
        if terminal {
            text.extend_from_slice(crate::text::escape_lines(&String::from_utf8_lossy(&bytes)).as_bytes());
        } else {
            text.extend_from_slice(&bytes);
        }
        out.write_all(&text).map_err(|e| CliError::io(Path::new("<stdout>"), e))?;
    }
    out.flush().map_err(|e| CliError::io(Path::new("<stdout>"), e))?;
    Ok(ExitCode::Ok)
}

fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_loop_writes_are_read_back_as_phases() {
        let c = |n: &str| classify(n).map(|(p, a, w, _)| (p, a, w));
        let t = |p: &str, a: &str, w: &str| Some((p.to_string(), a.to_string(), w.to_string()));
        assert_eq!(c("dev-attempt1.jsonl"), t("dev", "1", "agent output"));
        assert_eq!(c("review2-attempt1.stderr"), t("review2", "1", "agent stderr"));
        assert_eq!(c("fix1-attempt2-3.jsonl"), t("fix1", "2.3", "agent output"));
        assert_eq!(c("dev-attempt1-retry1.jsonl"), t("dev", "1 retry1", "agent output"));
        assert_eq!(c("dev-attempt1-retry2-2.stderr"), t("dev", "1 retry2.2", "agent stderr"));
        assert_eq!(c("dev-check-2.log"), t("verify-dev", "2", "check"));
        assert_eq!(c("fix-1-setup-1.log"), t("verify-fix1", "1", "setup"));
        assert_eq!(c("base-f28810c01a56-baseline-1.log"), t("baseline", "1", "baseline"));
        assert_eq!(c("notes.txt"), None);
        assert_eq!(c("review0-attempt1.jsonl"), None);
        assert_eq!(c("verify-dev-attempt1.jsonl"), None);
    }

    #[test]
    fn a_phase_picks_its_newest_attempt_and_a_family_its_newest_phase() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "dev-attempt1.jsonl",
            "dev-attempt2.jsonl",
            "dev-attempt2.stderr",
            "review1-attempt1.jsonl",
            "fix1-attempt1.jsonl",
            "review2-attempt1.jsonl",
            "review2-attempt1-2.jsonl",
            "review2-attempt1-retry1.jsonl",
            "dev-check-1.log",
            "dev-check-2.log",
        ] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        let logs = list(dir.path()).unwrap();
        let names = |v: Vec<&LogFile>| -> Vec<String> {
            v.iter().map(|l| l.path.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(select(&logs, "dev", false).unwrap()), ["dev-attempt2.jsonl", "dev-attempt2.stderr"]);
        assert_eq!(names(select(&logs, "review", false).unwrap()), ["review2-attempt1-retry1.jsonl"]);
        assert_eq!(names(select(&logs, "review1", false).unwrap()), ["review1-attempt1.jsonl"]);
        assert_eq!(names(select(&logs, "verify", false).unwrap()), ["dev-check-1.log", "dev-check-2.log"]);
        assert_eq!(names(select(&logs, "dev", true).unwrap()).len(), 3);
        let err = select(&logs, "fix2", false).unwrap_err();
        assert!(err.contains("dev, verify-dev, review1, fix1, review2"), "{err}");
    }
}
