//! `loop demo`: a throwaway git repo with sample issue docs, driven end to end by the simulated
//! agent, then replayed from its journal to prove the record is complete.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::inputs::RunInputs;
use super::run::start;
use super::{CliError, ExitCode};
use crate::clock::Clock;
use crate::journal::AgentSpec;
use crate::machine::Rules;
use crate::proc::{self, Cmd};
use crate::render;
use crate::render::progress::Progress;
use crate::runs::StateDir;

/// The sample repository: `(path, text)` of every doc. Tests build their repos from it too.
pub const DOCS: &[(&str, &str)] = &[
    ("docs/projects/orbit/milestones/M1-core.md", include_str!("demo_docs/milestone.md")),
    ("docs/projects/orbit/issues/ORB-1.md", include_str!("demo_docs/ORB-1.md")),
    ("docs/projects/orbit/issues/ORB-2.md", include_str!("demo_docs/ORB-2.md")),
    ("docs/projects/orbit/issues/ORB-3.md", include_str!("demo_docs/ORB-3.md")),
    ("docs/projects/orbit/issues/ORB-4.md", include_str!("demo_docs/ORB-4.md")),
    ("docs/projects/orbit/issues/ORB-5.md", include_str!("demo_docs/ORB-5.md")),
    ("docs/projects/orbit/issues/ORB-6.md", include_str!("demo_docs/ORB-6.md")),
];
/// The simulated agent's script for the demo.
pub const SCENARIO: &str = include_str!("demo_docs/scenario.json");

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Build the demo repo here (must not exist yet) and keep it, instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary demo repo and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Also export the run's journal to FILE.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// How many issues may run at once.
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Writes the sample repo: docs committed on `main`.
pub fn write_sample_repo(dir: &Path) -> Result<(), CliError> {
    for (rel, text) in DOCS {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
        }
        std::fs::write(&p, text).map_err(|e| CliError::io(&p, e))?;
    }
    std::fs::write(dir.join("README.md"), "# orbit\n\nSample repository for `loop demo`.\n")
        .map_err(|e| CliError::io(dir, e))?;
    let date = Clock::from_env().now().format("%Y-%m-%dT%H:%M:%S+0000").to_string();
    let git = |args: &[&str]| -> Result<(), CliError> {
        let cmd = Cmd::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=loop demo", "-c", "user.email=demo@loop.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .timeout(Duration::from_secs(60));
        let out = proc::run(&cmd).map_err(|e| CliError::Usage(format!("git is needed for the demo: {e}")))?;
        if !out.success() {
            return Err(CliError::Usage(format!("git {}: {}", args.join(" "), out.stderr_text().trim())));
        }
        Ok(())
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "orbit: sample issue docs"])?;
    Ok(())
}

pub fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let (repo, _guard) = match &args.dir {
        Some(d) => {
            if d.exists() {
                return Err(CliError::Usage(format!("--dir {}: already exists; give a new path", d.display())));
            }
            std::fs::create_dir_all(d).map_err(|e| CliError::io(d, e))?;
            (std::path::absolute(d).map_err(|e| CliError::io(d, e))?, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("loop-demo-")
                .tempdir()
                .map_err(|e| CliError::io(Path::new("/tmp"), e))?;
            let path = t.path().to_path_buf();
            if args.keep {
                (t.keep(), None)
            } else {
                (path, Some(t))
            }
        }
    };
    let repo = std::fs::canonicalize(&repo).map_err(|e| CliError::io(&repo, e))?;
    write_sample_repo(&repo)?;
    let state = StateDir::new(repo.join(".loop"));
    if !args.quiet && !args.json {
        crate::eoutln!("loop demo: sample repo at {}", repo.display());
    }
    let mut progress = Progress::new(args.quiet || args.json, false);
    let inputs = RunInputs {
        repo: repo.clone(),
        state: state.clone(),
        milestone: Some("M1-core".into()),
        agent: AgentSpec { kind: "sim".into(), scenario: Some(SCENARIO.to_string()), settings: None },
        scenario_source: "the demo scenario".into(),
        rules: Rules::default(),
        phase_timeout_secs: 60,
        max_tokens_per_issue: None,
        review_doc: false,
        issues: Vec::new(),
        jobs: args.jobs,
        verify: Default::default(),
        skip_setup: false,
        guard: Some(Default::default()),
        fresh: false,
        resilience: crate::vocab::Resilience::defaults(),
        spend: None,
    };
    let (code, view) = start(inputs, &mut progress)?;
    let run_secs = started.elapsed().as_secs_f64();
    if code.is_interrupted() {
        return Ok(code);
    }

    // Replay from the journal alone and check it agrees with what the run decided.
    let snapshot = state.snapshot(&view.run_id)?;
    let verdict = crate::journal::replay::replay(&snapshot, |_, _| {});
    let replay_ok = match (&verdict.error, &verdict.view) {
        (None, Some(v)) => v.issues.iter().zip(&view.issues).all(|(a, b)| a.state == b.state),
        _ => false,
    };
    let journal_bytes = std::fs::metadata(state.journal_path(&view.run_id)).map(|m| m.len()).unwrap_or(0);
    if let Some(out) = &args.export {
        let mut f = std::fs::File::create(out).map_err(|e| CliError::io(out, e))?;
        crate::journal::export(&snapshot, &mut f)?;
    }
    // A kept demo comes with its report, so the first thing to open is the picture of the run.
    let report = if args.keep || args.dir.is_some() {
        let records = crate::journal::read_all(&snapshot)?;
        let h = render::history::history(&records).map_err(|e| CliError::Check(e.to_string()))?;
        let path = state.run_dir(&view.run_id).join("report.html");
        super::report::write_page(&path, render::report::html(&h).as_bytes())?;
        Some(path)
    } else {
        None
    };
    if args.json {
        let mut v = render::status_json(&view, Some(&repo));
        if let Some(r) = &report {
            v["report"] = json!(r.display().to_string());
        }
        v["demo"] = json!({
            "replay_verified": replay_ok,
            "seconds": run_secs,
            "journal_records": verdict.records,
            "journal_bytes_on_disk": journal_bytes,
        });
        crate::outln!("{v}");
    } else if !args.quiet {
        let style = render::style::Style::stderr();
        crate::eout!("\n{}", render::status_text(&view, false, render::style::Style::stderr()));
        crate::eoutln!(
            "replay: {} ({} records re-derived from the journal alone, chain verified)",
            if replay_ok { style.good("ok") } else { style.bad("FAILED") },
            verdict.records
        );
        crate::eoutln!("took {run_secs:.2}s; journal {} records, {journal_bytes} bytes on disk", verdict.records);
        if args.keep || args.dir.is_some() {
            crate::eoutln!("kept: {} (try `loop status --repo {}`)", repo.display(), repo.display());
        }
        match &report {
            Some(r) => crate::eoutln!(
                "report: {} (open it in a browser; again any time: `loop report --repo {} --out report.html`)",
                r.display(),
                repo.display()
            ),
            None => {
                crate::eoutln!("see it drawn: `loop demo --keep` also writes the run's HTML report (`loop report`)")
            }
        }
    }
    if !replay_ok {
        let why = verdict.error.map(|e| e.to_string()).unwrap_or_else(|| "replayed states differ from the run".into());
        crate::eoutln!("loop demo: replay check failed: {why}");
        return Err(CliError::Check(why).reported());
    }
    Ok(ExitCode::Ok)
}
