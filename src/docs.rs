//! Loading and validating the team's issue and milestone docs.
//!
//! Layout: `<repo>/docs/projects/<project>/issues/*.md` (one issue per file)
//! and `<repo>/docs/projects/<project>/milestones/*.md`. Every issue doc starts
//! with YAML front matter between a first line `---` and a closing `---` line.
//!
//! Invariants a successfully [`load`]ed [`DocSet`] guarantees, so that the
//! planner never has to re-check them:
//! - every issue id is non-empty, free of control characters and unique across
//!   the whole repo (dependencies name issues by bare id, without a project);
//! - every `blocked_by` / `blocking` entry and every Issue Map row names an
//!   existing issue;
//! - an issue's `milestone` names a milestone doc of its project whenever that
//!   project has milestone docs at all;
//! - `issues` is sorted by id, so an issue's index is also its id rank;
//! - no front-matter key is a near miss of a known one (`blokced_by`: edit distance ≤ 2, ≤ 1
//!   for keys of up to 4 letters), which would silently drop what it meant; other unknown keys
//!   are team metadata and ignored;
//! - an Issue Map "Blocked by" cell, where the table has that column, names exactly the
//!   issue's dependencies in the docs (`blocked_by`, plus other issues' `blocking`).
//!
//! Every error is a single line of the form `path:line: message` with the path
//! relative to the repo, so it can be pasted into an editor or grep.
//!
//! The `parse_*` functions are pure (no I/O) so they can be unit-tested and
//! fuzzed without touching the file system.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One issue doc, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueDoc {
    pub id: String,
    /// Empty when the front matter has no `title`.
    pub title: String,
    pub milestone: Option<String>,
    /// File line of the `milestone` field, when present (for error messages).
    pub milestone_line: Option<usize>,
    /// Issues that must be done before this one, each with the file line of its entry.
    pub blocked_by: Vec<Dep>,
    /// Issues that wait for this one (`A.blocking: [B]` == `B.blocked_by: [A]`).
    pub blocking: Vec<Dep>,
    /// Relative to the repo root.
    pub path: PathBuf,
    pub project: String,
    /// File line of the `id` field (1-based).
    pub line: usize,
    /// `verify: [...]`: command lines loop runs (`sh -c`) to verify the issue's work.
    pub verify: Vec<String>,
}

/// A reference to an issue id together with the file line where it was written,
/// so that errors about the reference can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub id: String,
    /// 1-based file line.
    pub line: usize,
}

/// One milestone doc, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilestoneDoc {
    /// From the front matter `id`, or the file stem when absent.
    pub id: String,
    pub title: String,
    /// Relative to the repo root.
    pub path: PathBuf,
    pub project: String,
    /// Issue ids listed in the body's "Issue Map" table(s), in document order.
    pub issue_map: Vec<Dep>,
    /// For each row of a table with a "Blocked by" column: the row's issue (with the row's line)
    /// and the ids its cell names.
    pub map_blocked_by: Vec<(Dep, Vec<String>)>,
}

/// All docs of a repo. See the module docs for the invariants after [`load`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocSet {
    /// Sorted by id.
    pub issues: Vec<IssueDoc>,
    /// Sorted by (project, id, path).
    pub milestones: Vec<MilestoneDoc>,
}

impl DocSet {
    /// Every milestone id known to the repo, sorted and deduplicated: those of
    /// milestone docs plus those named by issues' `milestone` field (a project
    /// without milestone docs may still group its issues by that field).
    pub fn milestone_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .milestones
            .iter()
            .map(|m| m.id.clone())
            .chain(self.issues.iter().filter_map(|i| i.milestone.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Looks an issue up by id (binary search: `issues` is sorted by id).
    pub fn issue(&self, id: &str) -> Option<&IssueDoc> {
        self.issue_index(id).map(|i| &self.issues[i])
    }

    /// Index of an issue in `issues`, which is also its rank in id order.
    pub fn issue_index(&self, id: &str) -> Option<usize> {
        self.issues.binary_search_by(|i| i.id.as_str().cmp(id)).ok()
    }
}

/// Why the docs could not be loaded. Display is always one line naming the file
/// (relative to the repo) and, where meaningful, the line.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{}: cannot read: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}:{line}: file is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{}:1: no front matter (the file must start with a '---' line)", path.display())]
    NoFrontMatter { path: PathBuf },
    #[error("{}:{line}: malformed front matter: {message}", path.display())]
    MalformedFrontMatter { path: PathBuf, line: usize, message: String },
    #[error("{}:{line}: missing required field '{field}'", path.display())]
    MissingField { path: PathBuf, line: usize, field: &'static str },
    #[error("{}:{line}: invalid {what} {value:?}: {reason}", path.display())]
    InvalidId {
        path: PathBuf,
        line: usize,
        /// e.g. "issue id", "blocked_by entry".
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{}:{line}: duplicate issue id '{id}' (also in {}:{other_line})",
        path.display(),
        other_path.display()
    )]
    DuplicateIssue { path: PathBuf, line: usize, id: String, other_path: PathBuf, other_line: usize },
    #[error(
        "{}:{line}: duplicate milestone id '{id}' in project {project} (also in {})",
        path.display(),
        other_path.display()
    )]
    DuplicateMilestone { path: PathBuf, line: usize, id: String, project: String, other_path: PathBuf },
    #[error("{}:{line}: {field} names unknown issue '{id}'", path.display())]
    UnknownIssue {
        path: PathBuf,
        line: usize,
        /// "blocked_by", "blocking" or "Issue Map".
        field: &'static str,
        id: String,
    },
    #[error(
        "{}:{line}: milestone '{milestone}' is not a milestone of project {project} (known: {})",
        path.display(),
        known.join(", ")
    )]
    UnknownMilestone { path: PathBuf, line: usize, milestone: String, project: String, known: Vec<String> },
    /// An issue put in two milestones would be planned, branched and run in both.
    #[error(
        "{}:{line}: Issue Map of milestone '{milestone}' lists '{id}', {why}; an issue belongs to one milestone",
        path.display()
    )]
    MilestoneConflict {
        /// The milestone doc and the row listing the issue.
        path: PathBuf,
        line: usize,
        milestone: String,
        id: String,
        /// Where the other milestone comes from, with its file and line.
        why: String,
    },
    #[error("no issue docs found under {}/docs/projects/*/issues/", repo.display())]
    NoDocs { repo: PathBuf },
    /// A key one typo away from a known one: the value it holds would be ignored.
    #[error("{}:{line}: unknown front-matter key '{key}': did you mean '{meant}'?", path.display())]
    NearMissKey { path: PathBuf, line: usize, key: String, meant: &'static str },
    /// The Issue Map's "Blocked by" cell and the docs disagree; the plan follows the docs.
    /// Boxed: every command's error type carries this enum.
    #[error("{0}")]
    MapContradicts(Box<MapContradiction>),
}

/// An Issue Map row whose "Blocked by" cell is not what the issue docs say.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}:{line}: Issue Map says '{id}' is blocked by {}, but {}:{issue_line} says {}; make them agree",
    path.display(),
    listed(map),
    issue_path.display(),
    listed(docs)
)]
pub struct MapContradiction {
    /// The milestone doc and the row.
    pub path: PathBuf,
    pub line: usize,
    pub id: String,
    pub map: Vec<String>,
    /// The issue doc and its `blocked_by` line (its `id` line when it has none).
    pub issue_path: PathBuf,
    pub issue_line: usize,
    /// Its dependencies by the docs: `blocked_by` and other issues' `blocking`.
    pub docs: Vec<String>,
}

fn listed(ids: &[String]) -> String {
    if ids.is_empty() {
        "nothing".to_owned()
    } else {
        ids.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Reads every issue and milestone doc under `repo/docs/projects/*/` in sorted
/// path order (so results and the first reported error are deterministic) and
/// validates them as described in the module docs.
pub fn load(repo: &Path) -> Result<DocSet, DocError> {
    let projects_dir = repo.join("docs").join("projects");
    let mut issues = Vec::new();
    let mut milestones = Vec::new();
    for project_dir in sorted_entries(repo, &projects_dir, true)? {
        let Some(project) = project_dir.file_name().and_then(|n| n.to_str()) else {
            continue; // not a name we could print or match against; not ours
        };
        let project = project.to_owned();
        for path in sorted_md_files(repo, &project_dir.join("issues"))? {
            let (text, rel) = read_doc(repo, &path)?;
            issues.push(parse_issue(&text, &rel, &project)?);
        }
        for path in sorted_md_files(repo, &project_dir.join("milestones"))? {
            let (text, rel) = read_doc(repo, &path)?;
            milestones.push(parse_milestone(&text, &rel, &project)?);
        }
    }
    if issues.is_empty() {
        return Err(DocError::NoDocs { repo: repo.to_path_buf() });
    }
    validate(issues, milestones)
}

/// Cross-file checks; split from [`load`] so it can be tested without files.
/// Files were read in path order, so the "first" of two duplicates is the one
/// with the smaller path, and it is the later one that gets reported.
pub fn validate(mut issues: Vec<IssueDoc>, mut milestones: Vec<MilestoneDoc>) -> Result<DocSet, DocError> {
    // Stable sort keeps path order among equal ids, so duplicates are adjacent
    // and the first one is the earlier path.
    issues.sort_by(|a, b| a.id.cmp(&b.id));
    for pair in issues.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(DocError::DuplicateIssue {
                path: pair[1].path.clone(),
                line: pair[1].line,
                id: pair[1].id.clone(),
                other_path: pair[0].path.clone(),
                other_line: pair[0].line,
            });
        }
    }

    milestones.sort_by(|a, b| (&a.project, &a.id, &a.path).cmp(&(&b.project, &b.id, &b.path)));
    let mut by_project: HashMap<&str, Vec<String>> = HashMap::new();
    for pair in milestones.windows(2) {
        if pair[0].project == pair[1].project && pair[0].id == pair[1].id {
            return Err(DocError::DuplicateMilestone {
                path: pair[1].path.clone(),
                line: 1,
                id: pair[1].id.clone(),
                project: pair[1].project.clone(),
                other_path: pair[0].path.clone(),
            });
        }
    }
    for m in &milestones {
        by_project.entry(&m.project).or_default().push(m.id.clone());
    }

    let mut set = DocSet { issues, milestones: Vec::new() };

    // Problems are reported in path order, like the parse errors.
    let mut order: Vec<usize> = (0..set.issues.len()).collect();
    order.sort_by(|&a, &b| set.issues[a].path.cmp(&set.issues[b].path));
    for &i in &order {
        let issue = &set.issues[i];
        for (field, deps) in [("blocked_by", &issue.blocked_by), ("blocking", &issue.blocking)] {
            if let Some(dep) = deps.iter().find(|d| set.issue_index(&d.id).is_none()) {
                return Err(DocError::UnknownIssue {
                    path: issue.path.clone(),
                    line: dep.line,
                    field,
                    id: dep.id.clone(),
                });
            }
        }
        if let (Some(ms), Some(known)) = (&issue.milestone, by_project.get(issue.project.as_str())) {
            if !known.contains(ms) {
                return Err(DocError::UnknownMilestone {
                    path: issue.path.clone(),
                    line: issue.milestone_line.unwrap_or(issue.line),
                    milestone: ms.clone(),
                    project: issue.project.clone(),
                    known: known.clone(),
                });
            }
        }
    }
    for m in &milestones {
        if let Some(dep) = m.issue_map.iter().find(|d| set.issue_index(&d.id).is_none()) {
            return Err(DocError::UnknownIssue {
                path: m.path.clone(),
                line: dep.line,
                field: "Issue Map",
                id: dep.id.clone(),
            });
        }
    }
    for m in &milestones {
        check_map_blocked_by(&set, m)?;
    }
    // Membership is the union of front matter and Issue Maps, so a disagreement would
    // silently plan the issue in both milestones.
    let mut listed: HashMap<&str, (&MilestoneDoc, usize)> = HashMap::new();
    for m in &milestones {
        for dep in &m.issue_map {
            let conflict = |why: String| DocError::MilestoneConflict {
                path: m.path.clone(),
                line: dep.line,
                milestone: m.id.clone(),
                id: dep.id.clone(),
                why,
            };
            if let Some(issue) = set.issue(&dep.id) {
                if let Some(other) = issue.milestone.as_ref().filter(|ms| **ms != m.id) {
                    let at = issue.milestone_line.unwrap_or(issue.line);
                    return Err(conflict(format!(
                        "but its front matter names milestone '{other}' ({}:{at})",
                        issue.path.display()
                    )));
                }
            }
            match listed.get(dep.id.as_str()) {
                Some((first, row)) if first.id != m.id => {
                    return Err(conflict(format!(
                        "but the Issue Map of milestone '{}' lists it too ({}:{row})",
                        first.id,
                        first.path.display()
                    )));
                }
                Some(_) => {}
                None => {
                    listed.insert(&dep.id, (m, dep.line));
                }
            }
        }
    }
    set.milestones = milestones;
    Ok(set)
}

/// An Issue Map "Blocked by" cell must name exactly what the docs say the issue waits for.
fn check_map_blocked_by(set: &DocSet, m: &MilestoneDoc) -> Result<(), DocError> {
    for (row, cell) in &m.map_blocked_by {
        let Some(issue) = set.issue(&row.id) else { continue };
        let mut docs: Vec<String> = issue.blocked_by.iter().map(|d| d.id.clone()).collect();
        docs.extend(set.issues.iter().filter(|o| o.blocking.iter().any(|b| b.id == issue.id)).map(|o| o.id.clone()));
        docs.sort();
        docs.dedup();
        let mut map = cell.clone();
        map.sort();
        map.dedup();
        if map != docs {
            return Err(DocError::MapContradicts(Box::new(MapContradiction {
                path: m.path.clone(),
                line: row.line,
                id: row.id.clone(),
                map: cell.clone(),
                issue_path: issue.path.clone(),
                issue_line: issue.blocked_by.first().map_or(issue.line, |d| d.line),
                docs,
            })));
        }
    }
    Ok(())
}

/// Directory entries of `dir` sorted by path; a missing `dir` is empty, since
/// projects need not have milestones (or issues).
fn sorted_entries(repo: &Path, dir: &Path, dirs: bool) -> Result<Vec<PathBuf>, DocError> {
    let io_err = |e: std::io::Error| DocError::Io { path: rel(repo, dir), message: e.to_string() };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        // `metadata` follows symlinks, so a symlinked project dir still counts.
        let is_dir = std::fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        if is_dir == dirs {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn sorted_md_files(repo: &Path, dir: &Path) -> Result<Vec<PathBuf>, DocError> {
    let mut files = sorted_entries(repo, dir, false)?;
    files.retain(|p| p.extension().is_some_and(|e| e == "md"));
    Ok(files)
}

fn rel(repo: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(repo).unwrap_or(path).to_path_buf()
}

/// Reads a doc as UTF-8; invalid UTF-8 is reported with the line of the first bad byte.
fn read_doc(repo: &Path, path: &Path) -> Result<(String, PathBuf), DocError> {
    let rel_path = rel(repo, path);
    let bytes = std::fs::read(path).map_err(|e| DocError::Io { path: rel_path.clone(), message: e.to_string() })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok((text, rel_path)),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            Err(DocError::NotUtf8 { path: rel_path, line })
        }
    }
}

// ---------------------------------------------------------------------------
// Front matter
// ---------------------------------------------------------------------------

/// A doc split at its front matter. `yaml` starts on file line 2.
struct Split<'a> {
    yaml: &'a str,
    body: &'a str,
    /// File line of the first body line.
    body_line: usize,
}

fn is_fence(line: &str) -> bool {
    line.trim_end() == "---"
}

/// Splits `---\n<yaml>\n---\n<body>`. Tolerates a BOM, CRLF and trailing spaces
/// on the fence lines. `Ok(None)` = the file does not start with `---`.
fn split_front_matter<'a>(text: &'a str, path: &Path) -> Result<Option<Split<'a>>, DocError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if !is_fence(first) {
        return Ok(None);
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    for (i, line) in lines.enumerate() {
        if is_fence(line) {
            let yaml = &text[yaml_start..offset];
            // YAML ends a line at a lone CR, editors and these line numbers do not: refuse it
            // rather than report lines that do not exist (fuzz: `issue_doc`).
            if let Some(at) = yaml.match_indices('\r').map(|(i, _)| i).find(|&i| !yaml[i + 1..].starts_with('\n')) {
                return Err(DocError::MalformedFrontMatter {
                    path: path.to_path_buf(),
                    line: 2 + yaml[..at].matches('\n').count(),
                    message: "carriage return (CR) without a line feed; use LF or CRLF line ends".to_owned(),
                });
            }
            return Ok(Some(Split { yaml, body: &text[offset + line.len()..], body_line: i + 3 }));
        }
        offset += line.len();
    }
    Err(DocError::MalformedFrontMatter {
        path: path.to_path_buf(),
        line: 1,
        message: "unterminated front matter (no closing '---' line)".to_owned(),
    })
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    }
}

/// Front matter line (1-based) → file line: the YAML starts on file line 2.
fn file_line(yaml_line: u64) -> usize {
    usize::try_from(yaml_line).unwrap_or(usize::MAX).saturating_add(1)
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(yaml: &str, path: &Path) -> Result<Option<T>, DocError> {
    // An empty / comment-only front matter is an empty mapping, not an error.
    serde_saphyr::from_str_with_options::<Option<T>>(yaml, yaml_options()).map_err(|e| {
        let loc = e.location().filter(|l| l.line() > 0);
        let mut message = e.without_snippet().to_string();
        if let Some(l) = loc {
            // The plain rendering appends the YAML-relative position; we show
            // the file line ourselves, so drop it rather than confuse.
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        // A hint for the library's users, not for doc authors.
        if let Some(stripped) = message.strip_suffix(", set DuplicateKeyPolicy in Options if acceptable") {
            message = stripped.to_owned();
        }
        DocError::MalformedFrontMatter {
            path: path.to_path_buf(),
            line: loc.map_or(2, |l| file_line(l.line())),
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })
}

/// A YAML scalar read as text: strings as-is, numbers and booleans formatted.
/// `plain` records that it was not a string, so the caller may prefer the raw
/// source text (`007` stays `007`, not `7`).
#[derive(Debug)]
struct Text {
    value: Option<String>,
    plain: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or other scalar")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text { value: Some(v.to_owned()), plain: false })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text::number(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text { value: None, plain: false })
    }
    fn visit_none<E: de::Error>(self) -> Result<Text, E> {
        self.visit_unit()
    }
}

impl Text {
    fn number(s: String) -> Self {
        Text { value: Some(s), plain: true }
    }
}

/// Resolves a spanned scalar to its text, preferring the verbatim source for
/// non-string scalars so ids like `007` or `1.10` survive unchanged.
fn scalar_text(s: &Spanned<Text>, yaml: &str) -> Option<String> {
    let value = s.value.value.clone()?;
    if !s.value.plain {
        return Some(value);
    }
    let span = s.referenced.span();
    let raw = span
        .byte_offset()
        .zip(span.byte_len())
        .and_then(|(o, l)| {
            let o = usize::try_from(o).ok()?;
            let l = usize::try_from(l).ok()?;
            yaml.get(o..o.checked_add(l)?)
        })
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.starts_with(['"', '\'', '&', '*', '!', '|', '>']));
    Some(raw.map_or(value, str::to_owned))
}

/// `blocked_by` / `blocking`: a list of scalars or a single scalar.
#[derive(Debug)]
enum IdList {
    One(Text),
    Many(Vec<Spanned<Text>>),
}

impl<'de> Deserialize<'de> for IdList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of issue ids or a single issue id")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IdList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Text>>()? {
                    out.push(item);
                }
                Ok(IdList::Many(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdList, E> {
                TextVisitor.visit_str(v).map(IdList::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdList, E> {
                TextVisitor.visit_i64(v).map(IdList::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdList, E> {
                TextVisitor.visit_u64(v).map(IdList::One)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdList, E> {
                TextVisitor.visit_f64(v).map(IdList::One)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<IdList, E> {
                TextVisitor.visit_bool(v).map(IdList::One)
            }
            fn visit_unit<E: de::Error>(self) -> Result<IdList, E> {
                Ok(IdList::Many(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<IdList, E> {
                self.visit_unit()
            }
        }
        d.deserialize_any(V)
    }
}

/// Raw issue front matter. Unknown fields are ignored on purpose: the docs
/// carry team metadata (status, owner, ...) this tool does not care about.
#[derive(Debug, Deserialize)]
struct IssueFront {
    id: Option<Spanned<Text>>,
    title: Option<Spanned<Text>>,
    milestone: Option<Spanned<Text>>,
    blocked_by: Option<Spanned<IdList>>,
    blocking: Option<Spanned<IdList>>,
    /// Command lines, one or a list (the same shape as `blocked_by`).
    verify: Option<Spanned<IdList>>,
}

#[derive(Debug, Deserialize)]
struct MilestoneFront {
    id: Option<Spanned<Text>>,
    title: Option<Spanned<Text>>,
}

/// The issue front-matter keys loop reads (`verify`: the issue's verification commands).
pub const ISSUE_KEYS: &[&str] = &["id", "title", "milestone", "blocked_by", "blocking", "verify"];
/// The milestone front-matter keys loop reads.
pub const MILESTONE_KEYS: &[&str] = &["id", "title"];

/// Optimal string alignment distance: edits, with a swap of neighbours counting as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The known key an unknown `key` most likely meant: within distance 2 (1 for known keys of up
/// to 4 letters, so a team's `pr` is not taken for `id`), compared case- and dash-blind.
pub fn near_miss(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&key) {
        return None;
    }
    let norm = key.to_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (edit_distance(&norm, k), *k))
        .filter(|(d, k)| *d <= if k.chars().count() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Top-level keys of a front matter, with their file lines: block-mapping keys written at
/// column 0 (`key:`), plain or quoted. Indented lines belong to values.
fn top_level_keys(yaml: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, line) in yaml.lines().enumerate() {
        if line.starts_with([' ', '\t', '#', '-']) || line.trim().is_empty() {
            continue;
        }
        let (key, rest) = match line.chars().next() {
            Some(q @ ('"' | '\'')) => match line[1..].find(q) {
                Some(end) => (&line[1..1 + end], &line[2 + end..]),
                None => continue,
            },
            _ => match line.find(':') {
                Some(at) => (line[..at].trim_end(), &line[at..]),
                None => continue,
            },
        };
        if rest.trim_start().starts_with(':') && !key.is_empty() {
            out.push((key.to_owned(), i + 2));
        }
    }
    out
}

/// A front-matter key that is a near miss of a known one is an error (see the module doc).
fn check_keys(yaml: &str, known: &[&'static str], path: &Path) -> Result<(), DocError> {
    for (key, line) in top_level_keys(yaml) {
        if let Some(meant) = near_miss(&key, known) {
            let key = if key.chars().count() > 100 { key.chars().take(100).chain(['…']).collect() } else { key };
            return Err(DocError::NearMissKey { path: path.to_path_buf(), line, key, meant });
        }
    }
    Ok(())
}

/// Checks an id-like value; ids end up in error messages, DOT/Mermaid output
/// and JSON, so emptiness and control characters are rejected early.
fn check_id(value: String, what: &'static str, path: &Path, line: usize) -> Result<String, DocError> {
    let trimmed = value.trim();
    let reason = if trimmed.is_empty() {
        Some("must not be empty")
    } else if trimmed.chars().any(char::is_control) {
        Some("must not contain newlines or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DocError::InvalidId {
            path: path.to_path_buf(),
            line,
            what,
            // Enough to recognise it; a multi-megabyte id must not become a multi-megabyte error.
            value: if value.chars().count() > 100 { value.chars().take(100).chain(['…']).collect() } else { value },
            reason,
        }),
        None => Ok(trimmed.to_owned()),
    }
}

fn spanned_line(s: &Spanned<impl Sized>, fallback: usize) -> usize {
    let l = s.referenced.line();
    if l == 0 {
        fallback
    } else {
        file_line(l)
    }
}

fn deps(list: Option<Spanned<IdList>>, what: &'static str, yaml: &str, path: &Path) -> Result<Vec<Dep>, DocError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let outer = spanned_line(&list, 2);
    let items: Vec<(Option<String>, usize)> = match list.value {
        IdList::One(t) => vec![(t.value, outer)],
        IdList::Many(items) => items.iter().map(|s| (scalar_text(s, yaml), spanned_line(s, outer))).collect(),
    };
    items
        .into_iter()
        .map(|(value, line)| {
            let id = check_id(value.unwrap_or_default(), what, path, line)?;
            Ok(Dep { id, line })
        })
        .collect()
}

/// Parses one issue doc. Pure; `rel_path` is only used in errors and stored.
pub fn parse_issue(text: &str, rel_path: &Path, project: &str) -> Result<IssueDoc, DocError> {
    let Some(split) = split_front_matter(text, rel_path)? else {
        return Err(DocError::NoFrontMatter { path: rel_path.to_path_buf() });
    };
    let yaml = split.yaml;
    let front: Option<IssueFront> = parse_yaml(yaml, rel_path)?;
    check_keys(yaml, ISSUE_KEYS, rel_path)?;
    let missing_id = || DocError::MissingField { path: rel_path.to_path_buf(), line: 2, field: "id" };
    let front = front.ok_or_else(missing_id)?;
    let id_field = front.id.ok_or_else(missing_id)?;
    let line = spanned_line(&id_field, 2);
    let id = check_id(scalar_text(&id_field, yaml).unwrap_or_default(), "issue id", rel_path, line)?;
    let title = front.title.and_then(|t| scalar_text(&t, yaml)).unwrap_or_default();
    let (milestone, milestone_line) = match front.milestone {
        Some(m) => {
            let mline = spanned_line(&m, line);
            match scalar_text(&m, yaml) {
                // `milestone:` with no value means "not assigned".
                None => (None, None),
                Some(v) => (Some(check_id(v, "milestone", rel_path, mline)?), Some(mline)),
            }
        }
        None => (None, None),
    };
    let blocked_by = deps(front.blocked_by, "blocked_by entry", yaml, rel_path)?;
    let blocking = deps(front.blocking, "blocking entry", yaml, rel_path)?;
    let verify = deps(front.verify, "verify command", yaml, rel_path)?.into_iter().map(|d| d.id).collect();
    let doc = IssueDoc {
        id,
        title,
        milestone,
        milestone_line,
        blocked_by,
        blocking,
        path: rel_path.to_path_buf(),
        project: project.to_owned(),
        line,
        verify,
    };
    Ok(doc)
}

/// Parses one milestone doc. Pure. Front matter is optional here (every field
/// has a default), so a plain markdown file with an Issue Map is accepted; the
/// id then defaults to the file stem.
pub fn parse_milestone(text: &str, rel_path: &Path, project: &str) -> Result<MilestoneDoc, DocError> {
    let stem = rel_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (id, title, body, body_line) = match split_front_matter(text, rel_path)? {
        Some(split) => {
            let front: Option<MilestoneFront> = parse_yaml(split.yaml, rel_path)?;
            check_keys(split.yaml, MILESTONE_KEYS, rel_path)?;
            let (id, title) = match front {
                Some(f) => {
                    let id = match f.id {
                        Some(s) => {
                            let line = spanned_line(&s, 2);
                            match scalar_text(&s, split.yaml) {
                                Some(v) => check_id(v, "milestone id", rel_path, line)?,
                                None => check_id(stem.clone(), "milestone id", rel_path, line)?,
                            }
                        }
                        None => check_id(stem.clone(), "milestone id", rel_path, 1)?,
                    };
                    let title = f.title.and_then(|t| scalar_text(&t, split.yaml)).unwrap_or_default();
                    (id, title)
                }
                None => (check_id(stem.clone(), "milestone id", rel_path, 1)?, String::new()),
            };
            (id, title, split.body, split.body_line)
        }
        None => {
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            (check_id(stem, "milestone id", rel_path, 1)?, String::new(), body, 1)
        }
    };
    // Table cells are raw text: hold them to the same rules as `blocked_by`, so an unknown-issue
    // error never prints a control character (fuzz: `milestone_doc`).
    let rows = parse_issue_map_rows(body, body_line);
    let mut issue_map = Vec::new();
    let mut map_blocked_by = Vec::new();
    for row in rows {
        let id = check_id(row.id.id, "Issue Map entry", rel_path, row.id.line)?;
        let dep = Dep { id, line: row.id.line };
        if let Some(cell) = row.blocked_by {
            let ids = cell
                .into_iter()
                .map(|c| check_id(c, "Issue Map \"Blocked by\" entry", rel_path, row.id.line))
                .collect::<Result<Vec<_>, _>>()?;
            map_blocked_by.push((dep.clone(), ids));
        }
        issue_map.push(dep);
    }
    Ok(MilestoneDoc { id, title, path: rel_path.to_path_buf(), project: project.to_owned(), issue_map, map_blocked_by })
}

/// ATX heading text (`## Issue Map` → `Issue Map`), or `None` for other lines.
fn heading_text(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None; // indented code, not a heading
    }
    let hashes = t.len() - t.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &t[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim())
}

/// Splits a table row into trimmed cells, honouring `\|` escapes.
fn table_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") { &t[..t.len() - 1] } else { t };
    let mut cells = vec![String::new()];
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(s) = cells.last_mut() {
                    s.push('|');
                }
            }
            '|' => cells.push(String::new()),
            _ => {
                if let Some(s) = cells.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    cells.iter().map(|c| c.trim().to_owned()).collect()
}

fn is_separator_row(cells: &[String]) -> bool {
    !cells.is_empty()
        && cells.iter().all(|c| {
            let c = c.trim_start_matches(':').trim_end_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
}

/// `[ORB-3](../issues/ORB-3.md)` → `ORB-3`; strips backticks and whitespace.
fn cell_id(cell: &str) -> String {
    let mut s = cell.trim();
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find("](") {
            s = &rest[..end];
        }
    }
    s.replace('`', "").trim().to_owned()
}

/// Extracts the issue ids of every "Issue Map" table in a milestone body.
///
/// A section starts at a heading containing "Issue Map" (any case) and ends at
/// the next heading; its first GFM table (header + `---` separator row) is read.
/// The id column is the one headed `id`, `issue` or `issue id` (any case),
/// otherwise the first. `first_line` is the file line of the body's first line,
/// so each [`Dep`] carries a file line. Rows with an empty id cell are skipped.
/// Headings inside fenced code blocks are ignored. Pure; never fails.
pub fn parse_issue_map(body: &str, first_line: usize) -> Vec<Dep> {
    parse_issue_map_rows(body, first_line).into_iter().map(|r| r.id).collect()
}

/// One Issue Map row: its issue (and line), and when the table has a "Blocked by" column, the
/// ids of that cell (`—`, `-`, `none` or empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRow {
    pub id: Dep,
    pub blocked_by: Option<Vec<String>>,
}

/// The ids of a "Blocked by" cell: comma- or semicolon-separated, links and backticks allowed.
fn blocked_by_cell(cell: &str) -> Vec<String> {
    cell.split([',', ';'])
        .map(cell_id)
        .filter(|id| !id.is_empty() && !["—", "–", "-", "none", "n/a"].contains(&id.to_lowercase().as_str()))
        .collect()
}

/// [`parse_issue_map`] with each row's "Blocked by" cell. Pure; never fails.
pub fn parse_issue_map_rows(body: &str, first_line: usize) -> Vec<MapRow> {
    let lines: Vec<&str> = body.lines().collect();
    let mut out = Vec::new();
    let mut in_fence = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            i += 1;
            continue;
        }
        let is_map = !in_fence && heading_text(line).is_some_and(|h| h.to_lowercase().contains("issue map"));
        i += 1;
        if !is_map {
            continue;
        }
        // Find the table header in this section.
        while i + 1 < lines.len() && heading_text(lines[i]).is_none() {
            let header = table_cells(lines[i]);
            if lines[i].contains('|') && is_separator_row(&table_cells(lines[i + 1])) {
                let col = header
                    .iter()
                    .position(|h| {
                        let h = h.replace(['`', '*'], "").trim().to_lowercase();
                        h == "id" || h == "issue" || h == "issue id"
                    })
                    .unwrap_or(0);
                let blocked_col = header.iter().position(|h| {
                    h.replace(['`', '*'], "").trim().to_lowercase().replace(['_', '-'], " ") == "blocked by"
                });
                i += 2;
                while i < lines.len() && lines[i].contains('|') {
                    let cells = table_cells(lines[i]);
                    let id = cells.get(col).map(|c| cell_id(c)).unwrap_or_default();
                    if !id.is_empty() {
                        let blocked_by =
                            blocked_col.map(|c| cells.get(c).map(|c| blocked_by_cell(c)).unwrap_or_default());
                        out.push(MapRow { id: Dep { id, line: first_line + i }, blocked_by });
                    }
                    i += 1;
                }
                break;
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "docs/projects/p/issues";

    fn path(name: &str) -> PathBuf {
        PathBuf::from(format!("{P}/{name}"))
    }

    fn issue(name: &str, text: &str) -> Result<IssueDoc, DocError> {
        parse_issue(text, &path(name), "p")
    }

    fn err(r: Result<impl fmt::Debug, DocError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_a_full_issue() {
        let doc = issue(
            "a.md",
            "---\nid: ORB-1\ntitle: First\nmilestone: M1\nblocked_by:\n  - ORB-2\n  - 3\nblocking: ORB-4\nstatus: no\n---\n# Body\n",
        )
        .expect("valid");
        assert_eq!(doc.id, "ORB-1");
        assert_eq!(doc.line, 2);
        assert_eq!(doc.title, "First");
        assert_eq!(doc.milestone.as_deref(), Some("M1"));
        assert_eq!(doc.milestone_line, Some(4));
        assert_eq!(doc.blocked_by, vec![Dep { id: "ORB-2".into(), line: 6 }, Dep { id: "3".into(), line: 7 }]);
        assert_eq!(doc.blocking, vec![Dep { id: "ORB-4".into(), line: 8 }]);
        assert_eq!(doc.path, path("a.md"));
        assert_eq!(doc.project, "p");
    }

    #[test]
    fn verify_commands_are_one_or_a_list() {
        let doc = issue("a.md", "---\nid: A\nverify:\n  - cargo test -q\n  - \"grep -q ok status.txt\"\n---\n");
        assert_eq!(doc.expect("valid").verify, ["cargo test -q", "grep -q ok status.txt"]);
        let doc = issue("a.md", "---\nid: A\nverify: make check\n---\n").expect("valid");
        assert_eq!(doc.verify, ["make check"]);
        assert!(issue("a.md", "---\nid: A\n---\n").expect("valid").verify.is_empty());
    }

    #[test]
    fn scalar_ids_become_strings_verbatim() {
        let doc = issue("a.md", "---\nid: 007\nblocked_by: [1.10, yes, no]\n---\n").expect("valid");
        assert_eq!(doc.id, "007");
        let ids: Vec<&str> = doc.blocked_by.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["1.10", "yes", "no"]);
        assert!(doc.blocked_by.iter().all(|d| d.line == 3));
        let doc = issue("a.md", "---\nid: 42   # trailing comment\n---\n").expect("valid");
        assert_eq!(doc.id, "42");
    }

    #[test]
    fn unknown_fields_with_no_are_ignored() {
        // With strict booleans `no` is a string; either way it must not break parsing.
        let doc = issue("a.md", "---\nid: A\nowner: no\nextra: {deep: [1, 2]}\n---\n").expect("valid");
        assert_eq!(doc.id, "A");
        assert_eq!(doc.title, "");
        assert!(doc.milestone.is_none());
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let doc = issue("a.md", "\u{feff}---\r\nid: A\r\nblocked_by:\r\n  - B\r\n---\r\nbody\r\n").expect("valid");
        assert_eq!(doc.id, "A");
        assert_eq!(doc.blocked_by, vec![Dep { id: "B".into(), line: 4 }]);
    }

    #[test]
    fn missing_front_matter() {
        assert_eq!(
            err(issue("a.md", "# no front matter\n")),
            "docs/projects/p/issues/a.md:1: no front matter (the file must start with a '---' line)"
        );
        assert_eq!(
            err(issue("a.md", "")),
            "docs/projects/p/issues/a.md:1: no front matter (the file must start with a '---' line)"
        );
    }

    #[test]
    fn malformed_front_matter_points_at_file_line() {
        let e = err(issue("a.md", "---\nid: A\ntitle: [unclosed\n---\n"));
        assert!(e.starts_with("docs/projects/p/issues/a.md:3: malformed front matter: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err(issue("a.md", "---\nid: A\nid: B\n---\n"));
        assert!(e.starts_with("docs/projects/p/issues/a.md:3: malformed front matter: "), "{e}");
        assert!(e.contains("duplicate"), "{e}");
        assert!(!e.contains("DuplicateKeyPolicy"), "{e}");
        let e = err(issue("a.md", "---\n- a list\n---\n"));
        assert!(e.starts_with("docs/projects/p/issues/a.md:2: malformed front matter: "), "{e}");
    }

    #[test]
    fn unterminated_front_matter() {
        assert_eq!(
            err(issue("a.md", "---\nid: A\n")),
            "docs/projects/p/issues/a.md:1: malformed front matter: unterminated front matter (no closing '---' line)"
        );
    }

    #[test]
    fn missing_id() {
        let want = "docs/projects/p/issues/a.md:2: missing required field 'id'";
        assert_eq!(err(issue("a.md", "---\ntitle: T\n---\n")), want);
        assert_eq!(err(issue("a.md", "---\n---\n")), want);
        assert_eq!(err(issue("a.md", "---\n# only a comment\n---\n")), want);
    }

    #[test]
    fn empty_or_control_ids() {
        assert_eq!(
            err(issue("a.md", "---\ntitle: T\nid: ''\n---\n")),
            "docs/projects/p/issues/a.md:3: invalid issue id \"\": must not be empty"
        );
        // A null id counts as absent.
        assert_eq!(err(issue("a.md", "---\nid:\n---\n")), "docs/projects/p/issues/a.md:2: missing required field 'id'");
        assert_eq!(
            err(issue("a.md", "---\nid: \"A\\nB\"\n---\n")),
            "docs/projects/p/issues/a.md:2: invalid issue id \"A\\nB\": must not contain newlines or control characters"
        );
        assert_eq!(
            err(issue("a.md", "---\nid: A\nblocked_by:\n  - B\n  - \"\"\n---\n")),
            "docs/projects/p/issues/a.md:5: invalid blocked_by entry \"\": must not be empty"
        );
    }

    #[test]
    fn issue_map_with_links_and_id_column() {
        let body = "intro\n\n## Issue map\n\nSome text.\n\n| Title | Issue ID |\n|---|:---:|\n| one | [ORB-3](../issues/ORB-3.md) |\n| two | `ORB-4` |\n| none | |\n\nafter\n## Other\n| id |\n|--|\n| NOT-1 |\n";
        let deps = parse_issue_map(body, 10);
        assert_eq!(deps, vec![Dep { id: "ORB-3".into(), line: 18 }, Dep { id: "ORB-4".into(), line: 19 }]);
    }

    #[test]
    fn issue_map_defaults_to_first_column_and_skips_code() {
        let body =
            "```\n# Issue Map\n| x |\n|-|\n| NO |\n```\n# ISSUE MAP\n| Key | Title |\n| --- | --- |\n| A-1 | x |\n";
        assert_eq!(parse_issue_map(body, 1), vec![Dep { id: "A-1".into(), line: 10 }]);
        assert!(parse_issue_map("# Issue Map\nno table\n", 1).is_empty());
    }

    #[test]
    fn milestone_doc() {
        let text = "---\ntitle: First\n---\n# Issue Map\n| id |\n|---|\n| ORB-1 |\n";
        let m = parse_milestone(text, Path::new("docs/projects/p/milestones/M1.md"), "p").expect("valid");
        assert_eq!(m.id, "M1");
        assert_eq!(m.title, "First");
        assert_eq!(m.issue_map, vec![Dep { id: "ORB-1".into(), line: 7 }]);
        let m = parse_milestone("---\nid: 2\n---\n", Path::new("x/M1.md"), "p").expect("valid");
        assert_eq!(m.id, "2");
        let m = parse_milestone("# Issue Map\n|id|\n|-|\n|A|\n", Path::new("x/M3.md"), "p").expect("valid");
        assert_eq!((m.id.as_str(), m.issue_map.len()), ("M3", 1));
    }

    fn set(docs: &[(&str, &str)], milestones: &[(&str, &str)]) -> Result<DocSet, DocError> {
        let issues = docs.iter().map(|(name, text)| issue(name, text).expect("valid issue")).collect();
        let ms = milestones
            .iter()
            .map(|(name, text)| {
                parse_milestone(text, Path::new(&format!("docs/projects/p/milestones/{name}")), "p")
                    .expect("valid milestone")
            })
            .collect();
        validate(issues, ms)
    }

    #[test]
    fn duplicate_ids() {
        assert_eq!(
            err(set(&[("a.md", "---\nid: ORB-1\n---\n"), ("b.md", "---\nid: ORB-1\n---\n")], &[])),
            "docs/projects/p/issues/b.md:2: duplicate issue id 'ORB-1' (also in docs/projects/p/issues/a.md:2)"
        );
    }

    #[test]
    fn unknown_references() {
        assert_eq!(
            err(set(&[("a.md", "---\nid: A\ntitle: t\nmilestone: M1\nblocked_by: [ORB-99]\n---\n")], &[])),
            "docs/projects/p/issues/a.md:5: blocked_by names unknown issue 'ORB-99'"
        );
        assert_eq!(
            err(set(&[("a.md", "---\nid: A\nblocking:\n  - A\n  - Z\n---\n")], &[])),
            "docs/projects/p/issues/a.md:5: blocking names unknown issue 'Z'"
        );
        assert_eq!(
            err(set(
                &[("a.md", "---\nid: A\n---\n")],
                &[("M1.md", "# Issue Map\n| id |\n|--|\n| A |\n| [B](b.md) |\n")]
            )),
            "docs/projects/p/milestones/M1.md:5: Issue Map names unknown issue 'B'"
        );
    }

    #[test]
    fn unknown_milestone_only_when_project_has_milestones() {
        let a = ("a.md", "---\nid: A\ntitle: t\nmilestone: M9\n---\n");
        assert!(set(&[a], &[]).is_ok());
        assert_eq!(
            err(set(&[a], &[("M1.md", "x\n"), ("M2.md", "y\n")])),
            "docs/projects/p/issues/a.md:4: milestone 'M9' is not a milestone of project p (known: M1, M2)"
        );
    }

    #[test]
    fn docset_queries() {
        let s = set(
            &[("b.md", "---\nid: B\nmilestone: M2\n---\n"), ("a.md", "---\nid: A\nmilestone: M1\n---\n")],
            &[("M1.md", "x\n"), ("M2.md", "x\n"), ("M3.md", "x\n")],
        )
        .expect("valid");
        assert_eq!(s.issues[0].id, "A");
        assert_eq!(s.milestone_ids(), ["M1", "M2", "M3"]);
        assert_eq!(s.issue("B").map(|i| i.path.clone()), Some(path("b.md")));
        assert!(s.issue("C").is_none());
    }

    #[test]
    fn load_reads_files_in_order_and_reports_bad_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        assert_eq!(err(load(repo)), format!("no issue docs found under {}/docs/projects/*/issues/", repo.display()));
        let issues = repo.join("docs/projects/p/issues");
        let ms = repo.join("docs/projects/p/milestones");
        std::fs::create_dir_all(&issues).expect("mkdir");
        std::fs::create_dir_all(&ms).expect("mkdir");
        std::fs::write(issues.join("b.md"), "---\nid: B\nblocked_by: A\n---\n").expect("write");
        std::fs::write(issues.join("a.md"), "---\nid: A\nmilestone: M1\n---\n").expect("write");
        std::fs::write(issues.join("notes.txt"), "ignored").expect("write");
        std::fs::write(ms.join("M1.md"), "---\ntitle: One\n---\n## Issue Map\n|id|\n|-|\n|B|\n").expect("write");
        let s = load(repo).expect("valid");
        assert_eq!(s.issues.len(), 2);
        assert_eq!(s.issues[1].blocked_by, vec![Dep { id: "A".into(), line: 3 }]);
        assert_eq!(s.milestones[0].issue_map, vec![Dep { id: "B".into(), line: 7 }]);

        std::fs::write(issues.join("c.md"), b"---\nid: C\ntitle: \xff\n---\n").expect("write");
        assert_eq!(err(load(repo)), "docs/projects/p/issues/c.md:3: file is not valid UTF-8");
    }

    #[test]
    fn a_near_miss_of_a_known_key_is_an_error_naming_the_key_meant() {
        assert_eq!(
            err(issue("a.md", "---\nid: A\ntitle: t\nblokced_by: [B]\n---\n")),
            "docs/projects/p/issues/a.md:4: unknown front-matter key 'blokced_by': did you mean 'blocked_by'?"
        );
        for (key, meant) in [
            ("blocked-by", "blocked_by"),
            ("Blocked_By", "blocked_by"),
            ("blockedby", "blocked_by"),
            ("blockng", "blocking"),
            ("milestones", "milestone"),
            ("titel", "title"),
            ("verfy", "verify"),
            ("ids", "id"),
            ("\"blokced_by\"", "blocked_by"),
        ] {
            let e = err(issue("a.md", &format!("---\nid: A\n{key}: x\n---\n")));
            assert!(e.ends_with(&format!("did you mean '{meant}'?")) && e.contains(":3: "), "{key}: {e}");
        }
        // Known keys, team metadata and keys far from any known one stay accepted; so do
        // indented keys (values) and list items.
        for text in [
            "---\nid: A\nverify: [\"cargo test\"]\nblocking: []\n---\n",
            "---\nid: A\nstatus: open\nowner: x\npr: 12\ntype: bug\nblocks: [C]\nlabels: [a]\n---\n",
            "---\nid: A\nextra:\n  titel: x\n  blokced_by: y\n---\n",
        ] {
            issue("a.md", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
        let e = err(parse_milestone("---\nid: M1\ntilte: x\n---\n", Path::new("x/M1.md"), "p"));
        assert_eq!(e, "x/M1.md:3: unknown front-matter key 'tilte': did you mean 'title'?");
        assert_eq!(near_miss("id", ISSUE_KEYS), None);
        assert_eq!(near_miss("pr", ISSUE_KEYS), None);
        assert_eq!(edit_distance("blokced_by", "blocked_by"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn an_issue_map_blocked_by_cell_must_agree_with_the_docs() {
        let issues = [
            ("a.md", "---\nid: A\n---\n"),
            ("b.md", "---\nid: B\nblocked_by: [A]\n---\n"),
            ("c.md", "---\nid: C\nblocking: [D]\n---\n"),
            ("d.md", "---\nid: D\nblocked_by:\n  - B\n---\n"),
        ];
        let map = |rows: &str| format!("# M1\n\n## Issue Map\n\n| ID | Title | Blocked by |\n|---|---|---|\n{rows}");
        // Agreeing: links, backticks, either order, `—` for none; `blocking` counts as a dependency.
        let ok = map("| A | a | — |\n| [B](b.md) | b | [A](a.md) |\n| C | c | |\n| D | d | `C`, B |\n");
        let s = set(&issues, &[("M1.md", &ok)]).expect("agreeing docs");
        assert_eq!(s.milestones[0].map_blocked_by.len(), 4);
        // The map says more than the docs.
        let bad = map("| A | a | — |\n| B | b | A, C |\n");
        assert_eq!(
            err(set(&issues, &[("M1.md", &bad)])),
            "docs/projects/p/milestones/M1.md:8: Issue Map says 'B' is blocked by A, C, but \
             docs/projects/p/issues/b.md:3 says A; make them agree"
        );
        // The map says less (a dependency that only `blocking` gives counts too).
        let bad = map("| D | d | B |\n");
        assert_eq!(
            err(set(&issues, &[("M1.md", &bad)])),
            "docs/projects/p/milestones/M1.md:7: Issue Map says 'D' is blocked by B, but \
             docs/projects/p/issues/d.md:4 says B, C; make them agree"
        );
        let bad = map("| B | b | none |\n");
        assert!(err(set(&issues, &[("M1.md", &bad)]))
            .contains("is blocked by nothing, but docs/projects/p/issues/b.md:3 says A"));
        // Without a "Blocked by" column there is nothing to compare.
        set(&issues, &[("M1.md", "# Issue Map\n| id | title |\n|--|--|\n| B | b |\n")]).expect("no column");
    }
}
