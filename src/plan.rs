//! Turning a milestone's issue docs into an execution plan.
//!
//! The plan is a deterministic topological order of the milestone's issues
//! (ties broken by id, so the same docs always give the same plan), the same
//! issues grouped into "waves" that could run in parallel, and the list of
//! dependencies that point outside the milestone.
//!
//! Invariants:
//! - Cycles are checked over the dependencies of *all* issues in the repo, not
//!   just the milestone's, so a cycle spanning milestones is still reported;
//!   the error names one concrete cycle, starting at its smallest id.
//! - Nothing here recurses on graph depth (Kahn's algorithm, BFS and
//!   petgraph's iterative Kosaraju), so a 10,000-issue chain cannot overflow
//!   the stack; everything is O((V + E) log V).
//! - `A.blocking: [B]` and `B.blocked_by: [A]` are the same edge A → B.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use petgraph::graphmap::DiGraphMap;
use petgraph::Direction;

use crate::docs::{DocError, DocSet};
use crate::vocab::PlannedIssue;
use crate::workspace::sanitize;

/// One issue of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIssue {
    pub id: String,
    pub title: String,
    /// Doc path relative to the repo root.
    pub doc: String,
    /// Dependencies inside this milestone, in plan order (the order of
    /// [`Plan::order`]); merged from this issue's `blocked_by` and other
    /// issues' `blocking`. The first is the one the issue's branch starts
    /// from ([`base_of`]).
    pub blocked_by: Vec<String>,
    /// The issue's own verification commands (front matter `verify`).
    pub verify: Vec<String>,
}

/// The execution plan of one milestone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub milestone: String,
    /// Topological order; among issues that are ready at the same time the
    /// smallest id comes first.
    pub order: Vec<PlanIssue>,
    /// `waves[k]` = issues whose longest in-milestone dependency chain has
    /// length `k` (wave 0 has no in-milestone dependencies); each sorted by id.
    pub waves: Vec<Vec<String>>,
    /// `(issue, dependency)` pairs whose dependency is outside the milestone,
    /// sorted. Such dependencies are assumed to be handled elsewhere.
    pub external: Vec<(String, String)>,
}

/// Why no plan could be made. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Docs(#[from] DocError),
    /// `cycle` starts and ends with the same (smallest) id; `path:line` is the
    /// `blocked_by`/`blocking` entry of the cycle's first edge.
    #[error("dependency cycle: {} ({}:{line})", cycle.join(" → "), path.display())]
    Cycle { cycle: Vec<String>, path: PathBuf, line: usize },
    #[error("unknown milestone '{milestone}' (known: {})", known_list(known))]
    UnknownMilestone { milestone: String, known: Vec<String> },
    #[error("no milestones found: there are no milestone docs and no issue has a 'milestone' field")]
    NoMilestones,
    #[error(
        "several milestones found ({}); pass --milestone <id> to choose one",
        known.join(", ")
    )]
    AmbiguousMilestone { known: Vec<String> },
    /// Two issues of the milestone whose ids [`crate::workspace::sanitize`] maps to one name:
    /// they would share a branch and a worktree. Boxed: it is the largest error here.
    #[error("{0}")]
    NameCollision(Box<NameCollision>),
}

/// Where two ids meet in one branch/worktree name (see [`PlanError::NameCollision`]).
#[derive(Debug)]
pub struct NameCollision {
    pub path: PathBuf,
    pub line: usize,
    pub id: String,
    pub name: String,
    pub other: String,
    pub other_path: PathBuf,
    pub other_line: usize,
}

impl std::fmt::Display for NameCollision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: issue '{}' would get the branch and worktree name '{}', as issue '{}' does ({}:{}); rename one of them",
            self.path.display(),
            self.line,
            self.id,
            self.name,
            self.other,
            self.other_path.display(),
            self.other_line
        )
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}

/// Picks the milestone to plan: the requested one if it exists, else the only
/// one there is. Guessing among several would silently plan the wrong work,
/// so that is an error asking for `--milestone`.
pub fn choose_milestone(docs: &DocSet, requested: Option<&str>) -> Result<String, PlanError> {
    let known = docs.milestone_ids();
    match requested {
        Some(m) if known.iter().any(|k| k == m) => Ok(m.to_owned()),
        Some(m) => Err(PlanError::UnknownMilestone { milestone: m.to_owned(), known }),
        None => match known.len() {
            0 => Err(PlanError::NoMilestones),
            1 => Ok(known.into_iter().next().unwrap_or_default()),
            _ => Err(PlanError::AmbiguousMilestone { known }),
        },
    }
}

/// The dependency graph over all issues. Nodes are id ranks (0 = smallest
/// id), so "smallest node" means "smallest id" everywhere below.
struct Deps<'a> {
    docs: &'a DocSet,
    /// rank → index into `docs.issues`.
    by_rank: Vec<usize>,
    /// Edge `dep → dependent`: dep must be done first.
    graph: DiGraphMap<usize, (), std::hash::RandomState>,
    /// `(dependent, dep)` → where that edge was declared (first declaration wins).
    origin: HashMap<(usize, usize), (PathBuf, usize)>,
}

impl<'a> Deps<'a> {
    fn new(docs: &'a DocSet) -> Self {
        // `load` sorts issues by id, but a hand-built DocSet may not be.
        let mut by_rank: Vec<usize> = (0..docs.issues.len()).collect();
        by_rank.sort_by(|&a, &b| docs.issues[a].id.cmp(&docs.issues[b].id));
        let rank: HashMap<&str, usize> =
            by_rank.iter().enumerate().map(|(r, &i)| (docs.issues[i].id.as_str(), r)).collect();
        let mut graph =
            DiGraphMap::with_capacity_and_hasher(by_rank.len(), by_rank.len(), std::hash::RandomState::new());
        for r in 0..by_rank.len() {
            graph.add_node(r);
        }
        let mut origin = HashMap::new();
        for (r, &i) in by_rank.iter().enumerate() {
            let issue = &docs.issues[i];
            // Unknown ids cannot be in the graph; `load` rejects them anyway.
            for dep in &issue.blocked_by {
                if let Some(&d) = rank.get(dep.id.as_str()) {
                    graph.add_edge(d, r, ());
                    origin.entry((r, d)).or_insert_with(|| (issue.path.clone(), dep.line));
                }
            }
            for blocked in &issue.blocking {
                if let Some(&b) = rank.get(blocked.id.as_str()) {
                    graph.add_edge(r, b, ());
                    origin.entry((b, r)).or_insert_with(|| (issue.path.clone(), blocked.line));
                }
            }
        }
        Deps { docs, by_rank, graph, origin }
    }

    fn id(&self, rank: usize) -> &'a str {
        &self.docs.issues[self.by_rank[rank]].id
    }

    /// Kahn's algorithm over the nodes in `members` (all nodes when `None`),
    /// always taking the smallest ready id. Returns the order found; it is
    /// shorter than the node count exactly when there is a cycle.
    fn kahn(&self, members: Option<&BTreeSet<usize>>) -> Vec<usize> {
        let inside = |n: usize| members.is_none_or(|m| m.contains(&n));
        let nodes: Vec<usize> = match members {
            Some(m) => m.iter().copied().collect(),
            None => (0..self.by_rank.len()).collect(),
        };
        let mut indegree: HashMap<usize, usize> = HashMap::with_capacity(nodes.len());
        let mut ready = BinaryHeap::new();
        for &n in &nodes {
            let d = self.graph.neighbors_directed(n, Direction::Incoming).filter(|&p| inside(p)).count();
            indegree.insert(n, d);
            if d == 0 {
                ready.push(Reverse(n));
            }
        }
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for next in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&next) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(Reverse(next));
                    }
                }
            }
        }
        order
    }

    /// Finds one concrete cycle, to be called only when one exists: the
    /// strongly connected component holding the smallest id that lies on any
    /// cycle, then the shortest "depends on" path from that id back to itself
    /// (BFS, neighbours in id order, so the answer is deterministic).
    fn cycle_error(&self) -> PlanError {
        let start = petgraph::algo::kosaraju_scc(&self.graph)
            .into_iter()
            .filter(|c| c.len() > 1 || c.first().is_some_and(|&n| self.graph.contains_edge(n, n)))
            .filter_map(|c| {
                let min = c.iter().copied().min()?;
                Some((min, c))
            })
            .min_by_key(|(min, _)| *min);
        let Some((start, component)) = start else {
            // Unreachable when called after a failed Kahn; stay total anyway.
            return PlanError::Cycle { cycle: Vec::new(), path: PathBuf::new(), line: 0 };
        };
        let component: BTreeSet<usize> = component.into_iter().collect();
        // BFS over "depends on" edges (dependent → dep = Incoming in `graph`).
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = start;
        'bfs: while let Some(u) = queue.pop_front() {
            let mut next: Vec<usize> =
                self.graph.neighbors_directed(u, Direction::Incoming).filter(|v| component.contains(v)).collect();
            next.sort_unstable();
            for v in next {
                if v == start {
                    last = u;
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(v) {
                    e.insert(u);
                    queue.push_back(v);
                }
            }
        }
        let mut ranks = vec![start];
        let mut n = last;
        while n != start {
            ranks.push(n);
            n = parent.get(&n).copied().unwrap_or(start);
        }
        ranks[1..].reverse();
        ranks.push(start);
        let second = ranks.get(1).copied().unwrap_or(start);
        let (path, line) = self.origin.get(&(start, second)).cloned().unwrap_or_default();
        PlanError::Cycle { cycle: ranks.iter().map(|&r| self.id(r).to_owned()).collect(), path, line }
    }
}

/// Plans `milestone`: its members are the issues whose `milestone` field names
/// it plus those listed in an Issue Map of a milestone doc with that id (in any
/// project). Fails on an unknown milestone or any dependency cycle in the repo.
pub fn build(docs: &DocSet, milestone: &str) -> Result<Plan, PlanError> {
    let known = docs.milestone_ids();
    if !known.iter().any(|k| k == milestone) {
        return Err(PlanError::UnknownMilestone { milestone: milestone.to_owned(), known });
    }
    let deps = Deps::new(docs);
    if deps.kahn(None).len() != deps.by_rank.len() {
        return Err(deps.cycle_error());
    }

    let rank_of: HashMap<&str, usize> =
        deps.by_rank.iter().enumerate().map(|(r, &i)| (docs.issues[i].id.as_str(), r)).collect();
    let mut members: BTreeSet<usize> = deps
        .by_rank
        .iter()
        .enumerate()
        .filter(|(_, &i)| docs.issues[i].milestone.as_deref() == Some(milestone))
        .map(|(r, _)| r)
        .collect();
    for m in docs.milestones.iter().filter(|m| m.id == milestone) {
        members.extend(m.issue_map.iter().filter_map(|d| rank_of.get(d.id.as_str())));
    }

    // Safe ids keep their names (journals already name those branches), so a safe id that
    // looks like a tamed one (`a-b-c95e5a48` beside `a b`) can collide: refuse it here.
    let mut names: HashMap<String, usize> = HashMap::with_capacity(members.len());
    for &r in &members {
        let name = crate::workspace::sanitize(deps.id(r));
        if let Some(&first) = names.get(&name) {
            let (a, b) = (&docs.issues[deps.by_rank[first]], &docs.issues[deps.by_rank[r]]);
            return Err(PlanError::NameCollision(Box::new(NameCollision {
                path: b.path.clone(),
                line: b.line,
                id: b.id.clone(),
                name,
                other: a.id.clone(),
                other_path: a.path.clone(),
                other_line: a.line,
            })));
        }
        names.insert(name, r);
    }

    let topo = deps.kahn(Some(&members));
    let position: HashMap<usize, usize> = topo.iter().enumerate().map(|(n, &r)| (r, n)).collect();
    let mut level: HashMap<usize, usize> = HashMap::with_capacity(topo.len());
    let mut order = Vec::with_capacity(topo.len());
    let mut external = Vec::new();
    for &r in &topo {
        let issue = &docs.issues[deps.by_rank[r]];
        let mut inside = Vec::new();
        let mut lvl = 0;
        for d in deps.graph.neighbors_directed(r, Direction::Incoming) {
            if members.contains(&d) {
                lvl = lvl.max(level.get(&d).map_or(0, |l| l + 1));
                inside.push(d);
            } else {
                external.push((issue.id.clone(), deps.id(d).to_owned()));
            }
        }
        level.insert(r, lvl);
        inside.sort_unstable_by_key(|d| position.get(d).copied().unwrap_or(usize::MAX));
        order.push(PlanIssue {
            id: issue.id.clone(),
            title: issue.title.clone(),
            doc: issue.path.to_string_lossy().into_owned(),
            blocked_by: inside.iter().map(|&d| deps.id(d).to_owned()).collect(),
            verify: issue.verify.clone(),
        });
    }
    external.sort();
    let mut waves: Vec<Vec<String>> = Vec::new();
    // `members` iterates in id order, so each wave comes out sorted by id.
    for &r in &members {
        let l = level.get(&r).copied().unwrap_or(0);
        if waves.len() <= l {
            waves.resize_with(l + 1, Vec::new);
        }
        waves[l].push(deps.id(r).to_owned());
    }
    Ok(Plan { milestone: milestone.to_owned(), order, waves, external })
}

/// Quotes a string for DOT (`"` and `\` escaped, newlines as `\n`).
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Mermaid label text: quotes and angle brackets as entities, no newlines.
fn mermaid_label(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => "#quot;".to_owned(),
            '<' => "#lt;".to_owned(),
            '>' => "#gt;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

impl Plan {
    fn titled(issue: &PlanIssue) -> String {
        if issue.title.is_empty() {
            issue.id.clone()
        } else {
            format!("{}: {}", issue.id, issue.title)
        }
    }

    /// Human-readable plan: the order (with in-milestone deps), then the waves
    /// (numbered from 1 for humans; `waves[0]` is "wave 1"), then external deps.
    /// Each issue's base is shown under it; `run_base` names the run's base commit
    /// (`main@abc1234`).
    pub fn to_text(&self, run_base: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Milestone {}: {} issue(s) in {} wave(s)",
            self.milestone,
            self.order.len(),
            self.waves.len()
        );
        out.push_str("\nOrder:\n");
        let width = self.order.len().to_string().len();
        let base = bases(self, run_base);
        for (n, issue) in self.order.iter().enumerate() {
            // Titles and file names come from the docs; a terminal must not act on them.
            let titled = Self::titled(issue);
            let _ = write!(out, "  {:>width$}. {}", n + 1, crate::text::escape(&titled));
            if !issue.blocked_by.is_empty() {
                let _ = write!(out, "  (after {})", issue.blocked_by.join(", "));
            }
            let _ = writeln!(out, "  [{}]", crate::text::escape(&issue.doc));
            let _ = writeln!(out, "  {:>width$}  base {}", "", crate::text::escape(&base[n].1));
        }
        out.push_str("\nWaves:\n");
        for (k, wave) in self.waves.iter().enumerate() {
            let _ = writeln!(out, "  wave {}: {}", k + 1, wave.join(", "));
        }
        if !self.external.is_empty() {
            out.push_str("\nExternal dependencies (outside this milestone):\n");
            for (issue, dep) in &self.external {
                let _ = writeln!(out, "  {issue} after {dep}");
            }
        }
        out
    }

    /// Machine-readable plan: `{"milestone", "order": [ids], "waves": [[ids]],
    /// "issues": [{id, title, doc, blocked_by, base}], "external": [{issue, dep}]}`.
    /// `issues` is in plan order; `base` is in words, as [`Base::describe`] puts it.
    pub fn to_json(&self, run_base: &str) -> serde_json::Value {
        let base = bases(self, run_base);
        serde_json::json!({
            "milestone": self.milestone,
            "order": self.order.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            "waves": self.waves,
            "issues": self.order.iter().zip(base).map(|(i, (_, base))| serde_json::json!({
                "id": i.id,
                "title": i.title,
                "doc": i.doc,
                "blocked_by": i.blocked_by,
                "base": base,
            })).collect::<Vec<_>>(),
            "external": self.external.iter().map(|(issue, dep)| serde_json::json!({
                "issue": issue,
                "dep": dep,
            })).collect::<Vec<_>>(),
        })
    }

    /// Graphviz DOT; edges point from a dependency to the issue it unblocks.
    /// External dependencies are dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph {} {{", dot_quote(&self.milestone));
        out.push_str("  rankdir=LR;\n  node [shape=box];\n");
        for issue in &self.order {
            let _ = writeln!(out, "  {} [label={}];", dot_quote(&issue.id), dot_quote(&Self::titled(issue)));
        }
        let mut ext_nodes: Vec<&str> = self.external.iter().map(|(_, d)| d.as_str()).collect();
        ext_nodes.sort_unstable();
        ext_nodes.dedup();
        for dep in ext_nodes {
            let _ = writeln!(out, "  {} [style=dashed];", dot_quote(dep));
        }
        for issue in &self.order {
            for dep in &issue.blocked_by {
                let _ = writeln!(out, "  {} -> {};", dot_quote(dep), dot_quote(&issue.id));
            }
        }
        for (issue, dep) in &self.external {
            let _ = writeln!(out, "  {} -> {} [style=dashed];", dot_quote(dep), dot_quote(issue));
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart. Node names are generated (`i0`, `x0`) because ids
    /// may contain characters Mermaid does not accept in identifiers; the id
    /// is in the label. External dependencies use dotted edges.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let mut names: HashMap<&str, String> = HashMap::new();
        for (n, issue) in self.order.iter().enumerate() {
            let name = format!("i{n}");
            let _ = writeln!(out, "  {name}[\"{}\"]", mermaid_label(&Self::titled(issue)));
            names.insert(&issue.id, name);
        }
        let mut ext: Vec<&str> = self.external.iter().map(|(_, d)| d.as_str()).collect();
        ext.sort_unstable();
        ext.dedup();
        for (n, dep) in ext.into_iter().enumerate() {
            let name = format!("x{n}");
            let _ = writeln!(out, "  {name}[\"{} (external)\"]", mermaid_label(dep));
            names.insert(dep, name);
        }
        let name = |id: &str| names.get(id).cloned().unwrap_or_default();
        for issue in &self.order {
            for dep in &issue.blocked_by {
                let _ = writeln!(out, "  {} --> {}", name(dep), name(&issue.id));
            }
        }
        for (issue, dep) in &self.external {
            let _ = writeln!(out, "  {} -.-> {}", name(dep), name(issue));
        }
        out
    }
}

/// Where an issue's branch starts, decided from its dependencies alone (in plan order), so
/// `plan`, `run --dry-run` and the engine agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base<T> {
    /// No dependency: the run's base commit (HEAD of the main checkout).
    Run,
    /// The first dependency's branch tip, with the others' tips merged into it (in order) as
    /// one merge commit on the issue's branch, so the branch holds every dependency's work.
    Deps { first: T, merge: Vec<T> },
}

/// The base of an issue whose dependencies, in plan order, are `deps`.
pub fn base_of<T: Clone>(deps: &[T]) -> Base<T> {
    match deps.split_first() {
        None => Base::Run,
        Some((first, rest)) => Base::Deps { first: first.clone(), merge: rest.to_vec() },
    }
}

impl<T: AsRef<str>> Base<T> {
    /// In words: `run_base` (say `main@abc1234`), the dependency's branch, or
    /// `merge of A + B + C`.
    pub fn describe(&self, run_base: &str) -> String {
        match self {
            Base::Run => run_base.to_string(),
            Base::Deps { first, merge } if merge.is_empty() => first.as_ref().to_string(),
            Base::Deps { first, merge } => {
                let all: Vec<&str> = std::iter::once(first.as_ref()).chain(merge.iter().map(AsRef::as_ref)).collect();
                format!("merge of {}", all.join(" + "))
            }
        }
    }
}

/// The base each issue of the plan starts from, in words (`run_base` for those without a
/// dependency); in plan order.
pub fn bases(plan: &Plan, run_base: &str) -> Vec<(String, String)> {
    plan.order
        .iter()
        .map(|p| {
            let branches: Vec<String> = p.blocked_by.iter().map(|d| branch_name(&plan.milestone, d)).collect();
            (p.id.clone(), base_of(&branches).describe(run_base))
        })
        .collect()
}

/// The branch loop gives an issue of a milestone: `loop/<milestone>/<issue>`, both sanitized.
pub fn branch_name(milestone: &str, issue: &str) -> String {
    format!("loop/{}/{}", sanitize(milestone), sanitize(issue))
}

/// The plan's issues with the branch and worktree names loop gives them; worktrees go to
/// `<worktrees_dir>/<milestone>/<issue>`.
pub fn planned_issues(plan: &Plan, worktrees_dir: &Path, milestone: &str) -> Vec<PlannedIssue> {
    let wt_root = worktrees_dir.join(sanitize(milestone));
    plan.order
        .iter()
        .map(|p| PlannedIssue {
            id: p.id.clone().into(),
            title: p.title.clone(),
            doc: p.doc.clone(),
            blocked_by: p.blocked_by.iter().map(|d| d.as_str().into()).collect(),
            branch: branch_name(milestone, &p.id).into(),
            worktree: wt_root.join(sanitize(&p.id)).display().to_string(),
            verify: p.verify.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::{parse_issue, parse_milestone, validate, Dep, IssueDoc};
    use std::path::Path;

    /// Builds an issue doc through the real parser, so lines are realistic:
    /// `id` on line 2, `milestone` on 3, `title` on 4, `blocked_by` entries
    /// from line 6, then a `blocking:` line and its entries.
    fn doc(id: &str, milestone: &str, blocked_by: &[&str], blocking: &[&str]) -> IssueDoc {
        let mut text = format!("---\nid: {id}\nmilestone: {milestone}\ntitle: Title {id}\nblocked_by:\n");
        for b in blocked_by {
            text.push_str(&format!("  - {b}\n"));
        }
        text.push_str("blocking:\n");
        for b in blocking {
            text.push_str(&format!("  - {b}\n"));
        }
        text.push_str("---\n");
        let path = format!("docs/projects/p/issues/{}.md", id.to_lowercase());
        parse_issue(&text, Path::new(&path), "p").expect("valid issue")
    }

    fn docs(issues: Vec<IssueDoc>) -> DocSet {
        validate(issues, Vec::new()).expect("valid docs")
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.order.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn topo_order_breaks_ties_by_id() {
        let set = docs(vec![
            doc("D", "M1", &[], &[]),
            doc("C", "M1", &["B"], &[]),
            doc("B", "M1", &[], &[]),
            doc("A", "M1", &["D"], &[]),
        ]);
        let plan = build(&set, "M1").expect("plan");
        assert_eq!(ids(&plan), ["B", "C", "D", "A"]);
        assert_eq!(plan.waves, vec![vec!["B", "D"], vec!["A", "C"]]);
    }

    #[test]
    fn dependencies_are_in_plan_order_and_give_the_base() {
        // W's dependencies come in plan order (Z, Y, A), not in id order.
        let set = docs(vec![
            doc("Z", "M1", &[], &[]),
            doc("Y", "M1", &["Z"], &[]),
            doc("A", "M1", &["Y"], &[]),
            doc("W", "M1", &["A", "Z", "Y"], &[]),
            doc("B", "M1", &["Z"], &[]),
        ]);
        let plan = build(&set, "M1").expect("plan");
        assert_eq!(ids(&plan), ["Z", "B", "Y", "A", "W"]);
        let w = &plan.order[4];
        assert_eq!(w.blocked_by, ["Z", "Y", "A"]);
        assert_eq!(base_of(&w.blocked_by), Base::Deps { first: "Z".to_string(), merge: vec!["Y".into(), "A".into()] });
        assert_eq!(base_of::<String>(&[]), Base::Run);
        let shown = bases(&plan, "main@abc1234");
        assert_eq!(shown[0], ("Z".to_string(), "main@abc1234".to_string()));
        assert_eq!(shown[1].1, "loop/M1/Z");
        assert_eq!(shown[4].1, "merge of loop/M1/Z + loop/M1/Y + loop/M1/A");
        assert!(plan.to_text("main@abc1234").contains("     base merge of loop/M1/Z + loop/M1/Y + loop/M1/A\n"));
        assert_eq!(plan.to_json("main@abc1234")["issues"][2]["base"], "loop/M1/Z");
    }

    #[test]
    fn blocking_is_normalised_into_blocked_by() {
        let set = docs(vec![
            doc("A", "M1", &[], &["C"]),
            doc("B", "M1", &[], &[]),
            doc("C", "M1", &["B"], &[]),
            doc("X", "M2", &[], &["C"]),
        ]);
        let plan = build(&set, "M1").expect("plan");
        assert_eq!(ids(&plan), ["A", "B", "C"]);
        assert_eq!(plan.order[2].blocked_by, ["A", "B"]);
        assert_eq!(plan.external, vec![("C".to_owned(), "X".to_owned())]);
        assert_eq!(plan.waves, vec![vec!["A", "B"], vec!["C"]]);
    }

    #[test]
    fn waves_use_the_longest_chain() {
        // A → B → C and A → C: C is in wave 2, not 1.
        let set = docs(vec![
            doc("A", "M1", &[], &[]),
            doc("B", "M1", &["A"], &[]),
            doc("C", "M1", &["A", "B"], &[]),
            doc("Z", "M1", &[], &[]),
        ]);
        let plan = build(&set, "M1").expect("plan");
        assert_eq!(plan.waves, vec![vec!["A", "Z"], vec!["B"], vec!["C"]]);
    }

    #[test]
    fn issue_map_adds_members() {
        let mut b = doc("B", "M2", &["A"], &[]);
        b.milestone = None;
        let issues = vec![doc("A", "M1", &[], &[]), b];
        let map = |m: &str| {
            parse_milestone(
                "# Issue Map\n| id |\n|--|\n| B |\n",
                Path::new(&format!("docs/projects/p/milestones/{m}.md")),
                "p",
            )
            .expect("valid")
        };
        let empty = |m: &str| {
            parse_milestone("x\n", Path::new(&format!("docs/projects/p/milestones/{m}.md")), "p").expect("valid")
        };
        let set = validate(issues.clone(), vec![empty("M1"), map("M2")]).expect("valid");
        assert_eq!(ids(&build(&set, "M1").expect("plan")), ["A"]);
        // B is in M2 by its Issue Map alone; there its dependency A is external.
        let m2 = build(&set, "M2").expect("plan");
        assert_eq!(ids(&m2), ["B"]);
        assert_eq!(m2.external, vec![("B".to_owned(), "A".to_owned())]);
        // Listed by M1's map while its front matter says M2, B would be planned in both.
        let issues = vec![doc("A", "M1", &[], &[]), doc("B", "M2", &["A"], &[])];
        let e = validate(issues, vec![map("M1"), empty("M2")]).expect_err("two milestones").to_string();
        assert!(e.starts_with("docs/projects/p/milestones/M1.md:4: Issue Map of milestone 'M1' lists 'B', but its front matter names milestone 'M2'"), "{e}");
    }

    #[test]
    fn cycle_message_names_the_cycle_and_first_edge() {
        // A depends on B (a.md:6), B on C (C.blocking), C on A; D hangs off C.
        let set = docs(vec![
            doc("C", "M1", &["A"], &["B"]),
            doc("A", "M1", &["B"], &[]),
            doc("B", "M2", &[], &[]),
            doc("D", "M1", &["C"], &[]),
        ]);
        let e = build(&set, "M1").expect_err("cycle").to_string();
        assert_eq!(e, "dependency cycle: A → B → C → A (docs/projects/p/issues/a.md:6)");
    }

    #[test]
    fn cycle_through_blocking_uses_blocking_line() {
        // B.blocking: [A] means A depends on B; B depends on A.
        let set = docs(vec![doc("A", "M1", &[], &[]), doc("B", "M1", &["A"], &["A"])]);
        let e = build(&set, "M1").expect_err("cycle").to_string();
        assert_eq!(e, "dependency cycle: A → B → A (docs/projects/p/issues/b.md:8)");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let set = docs(vec![doc("A", "M1", &[], &[]), doc("S", "M2", &["A", "S"], &[])]);
        let e = build(&set, "M1").expect_err("cycle spanning milestones").to_string();
        assert_eq!(e, "dependency cycle: S → S (docs/projects/p/issues/s.md:7)");
    }

    #[test]
    fn long_chain_and_long_cycle_are_fast_and_stack_safe() {
        let n = 10_000;
        let id = |i: usize| format!("I{i:05}");
        let make = |cyclic: bool| {
            let issues: Vec<IssueDoc> = (0..n)
                .map(|i| IssueDoc {
                    id: id(i),
                    title: String::new(),
                    milestone: Some("M".into()),
                    milestone_line: None,
                    blocked_by: if i > 0 || cyclic {
                        vec![Dep { id: id((i + n - 1) % n), line: 3 }]
                    } else {
                        Vec::new()
                    },
                    blocking: Vec::new(),
                    path: PathBuf::from(format!("{}.md", id(i))),
                    project: "p".into(),
                    line: 2,
                    verify: Vec::new(),
                })
                .collect();
            validate(issues, Vec::new()).expect("valid")
        };
        let start = std::time::Instant::now();
        let plan = build(&make(false), "M").expect("plan");
        assert_eq!(plan.order.len(), n);
        assert_eq!(plan.waves.len(), n);
        assert_eq!(plan.order[n - 1].id, id(n - 1));
        let e = build(&make(true), "M").expect_err("cycle");
        match e {
            PlanError::Cycle { cycle, path, line } => {
                assert_eq!(cycle.len(), n + 1);
                assert_eq!(cycle[0], id(0));
                assert_eq!(cycle[1], id(n - 1));
                assert_eq!(cycle[n], id(0));
                assert_eq!((path, line), (PathBuf::from("I00000.md"), 3));
            }
            other => panic!("unexpected {other}"),
        }
        // Generous bound for debug builds on slow CI; release is far faster.
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }

    #[test]
    fn choosing_a_milestone() {
        let one = docs(vec![doc("A", "M1", &[], &[])]);
        assert_eq!(choose_milestone(&one, None).expect("only one"), "M1");
        assert_eq!(
            choose_milestone(&one, Some("X")).expect_err("unknown").to_string(),
            "unknown milestone 'X' (known: M1)"
        );
        let two = docs(vec![doc("A", "M1", &[], &[]), doc("B", "M2", &[], &[])]);
        assert_eq!(choose_milestone(&two, Some("M2")).expect("exists"), "M2");
        assert_eq!(
            choose_milestone(&two, None).expect_err("ambiguous").to_string(),
            "several milestones found (M1, M2); pass --milestone <id> to choose one"
        );
        assert_eq!(build(&two, "M9").expect_err("unknown").to_string(), "unknown milestone 'M9' (known: M1, M2)");
    }

    #[test]
    fn renderings_contain_the_edges() {
        let set = docs(vec![doc("A", "M1", &[], &[]), doc("B", "M1", &["A", "X"], &[]), doc("X", "M2", &[], &[])]);
        let plan = build(&set, "M1").expect("plan");
        let dot = plan.to_dot();
        assert!(dot.starts_with("digraph \"M1\" {"), "{dot}");
        assert!(dot.contains("  \"A\" -> \"B\";\n"), "{dot}");
        assert!(dot.contains("  \"X\" -> \"B\" [style=dashed];\n"), "{dot}");
        let mermaid = plan.to_mermaid();
        assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
        assert!(mermaid.contains("  i0[\"A: Title A\"]\n"), "{mermaid}");
        assert!(mermaid.contains("  i0 --> i1\n"), "{mermaid}");
        assert!(mermaid.contains("  x0 -.-> i1\n"), "{mermaid}");
        let json = plan.to_json("main@0000000");
        assert_eq!(json["milestone"], "M1");
        assert_eq!(json["order"], serde_json::json!(["A", "B"]));
        assert_eq!(json["waves"], serde_json::json!([["A"], ["B"]]));
        assert_eq!(json["issues"][1]["blocked_by"], serde_json::json!(["A"]));
        assert_eq!(json["issues"][1]["doc"], "docs/projects/p/issues/b.md");
        assert_eq!(json["external"], serde_json::json!([{"issue": "B", "dep": "X"}]));
        let text = plan.to_text("main@0000000");
        assert!(text.contains("2. B: Title B  (after A)"), "{text}");
        assert!(text.contains("  wave 2: B\n"), "{text}");
        assert!(text.contains("  B after X\n"), "{text}");
    }

    #[test]
    fn labels_are_escaped() {
        let plan = Plan {
            milestone: "M\"1".into(),
            order: vec![PlanIssue {
                id: "A".into(),
                title: "say \"hi\" <b>".into(),
                doc: "a.md".into(),
                blocked_by: Vec::new(),
                verify: Vec::new(),
            }],
            waves: vec![vec!["A".into()]],
            external: Vec::new(),
        };
        assert!(plan.to_dot().contains("digraph \"M\\\"1\""));
        assert!(plan.to_dot().contains("label=\"A: say \\\"hi\\\" <b>\""));
        assert!(plan.to_mermaid().contains("i0[\"A: say #quot;hi#quot; #lt;b#gt;\"]"));
    }
}
