//! The planner against a brute-force reference, on small dependency graphs decoded from bytes.
//!
//! Input: byte 0 = issue count (1..=12); then one byte per issue (bits 0-1 its milestone,
//! bit 2 "listed in M1's Issue Map"); then triples (a, b, kind): issue a is blocked by b
//! (kind bit 0 clear) or blocks b (set). Ids include path and shell metacharacters on purpose.

use std::collections::BTreeSet;
use std::path::PathBuf;

use devloop::docs::{self, Dep, IssueDoc, MilestoneDoc};
use devloop::plan::{self, PlanError};

use super::one_line;

const IDS: &[&str] = &["A", "B", "C-1", "../up", "a b", "é", "$(rm -rf x)", "007", "Z;echo", "m\u{301}", "`x`", "zz"];

pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let n = 1 + first as usize % IDS.len();
    if rest.len() < n {
        return;
    }
    let (flags, edges) = rest.split_at(n);
    let mut issues: Vec<IssueDoc> = (0..n)
        .map(|i| IssueDoc {
            id: IDS[i].to_owned(),
            title: format!("issue {i}"),
            milestone: match flags[i] & 3 {
                1 => Some("M1".to_owned()),
                2 => Some("M2".to_owned()),
                _ => None,
            },
            milestone_line: Some(3),
            blocked_by: Vec::new(),
            blocking: Vec::new(),
            path: PathBuf::from(format!("docs/projects/p/issues/{i}.md")),
            project: "p".to_owned(),
            line: 2,
            verify: Vec::new(),
        })
        .collect();
    // (dependent, dependency) pairs: what the planner must respect.
    let mut edges_set = BTreeSet::new();
    for (k, t) in edges.chunks_exact(3).enumerate() {
        let (a, b) = (t[0] as usize % n, t[1] as usize % n);
        let dep = |id: usize| Dep { id: IDS[id].to_owned(), line: 4 + k };
        if t[2] & 1 == 0 {
            issues[a].blocked_by.push(dep(b));
            edges_set.insert((a, b));
        } else {
            issues[a].blocking.push(dep(b));
            edges_set.insert((b, a));
        }
    }
    let map: Vec<Dep> =
        (0..n).filter(|&i| flags[i] & 4 != 0).map(|i| Dep { id: IDS[i].to_owned(), line: 10 + i }).collect();
    let milestones = if map.is_empty() {
        Vec::new()
    } else {
        // With a milestone doc, an issue naming M2 is an error: exercised too.
        vec![MilestoneDoc {
            id: "M1".to_owned(),
            title: String::new(),
            path: PathBuf::from("docs/projects/p/milestones/M1.md"),
            project: "p".to_owned(),
            issue_map: map,
            map_blocked_by: Vec::new(),
        }]
    };

    let mut reversed = issues.clone();
    reversed.reverse();
    let set = match docs::validate(issues, milestones.clone()) {
        Ok(s) => s,
        Err(e) => {
            one_line(&e.to_string());
            return;
        }
    };
    let again = docs::validate(reversed, milestones).expect("validation ignores file order");

    let on_cycle = on_cycle(n, &edges_set);
    for m in set.milestone_ids() {
        let r = plan::build(&set, &m);
        let r2 = plan::build(&again, &m);
        assert_eq!(
            r.as_ref().map_err(ToString::to_string),
            r2.as_ref().map_err(ToString::to_string),
            "the plan depends on file order"
        );
        match r {
            Err(PlanError::Cycle { cycle, path, line }) => {
                let idx = |id: &str| IDS.iter().position(|x| *x == id).expect("known id");
                assert!(on_cycle.iter().any(|&c| c), "cycle reported in an acyclic graph: {cycle:?}");
                assert!(cycle.len() >= 2 && cycle.first() == cycle.last(), "not a closed cycle: {cycle:?}");
                for w in cycle.windows(2) {
                    assert!(edges_set.contains(&(idx(&w[0]), idx(&w[1]))), "{} does not depend on {}", w[0], w[1]);
                }
                let smallest = (0..n).filter(|&i| on_cycle[i]).map(|i| IDS[i]).min().expect("some");
                assert_eq!(cycle[0], smallest, "cycle does not start at its smallest id");
                assert!(line >= 4 && path.starts_with("docs/projects/p/issues"), "bad origin {path:?}:{line}");
            }
            Err(e) => panic!("unexpected plan error for known milestone {m}: {e}"),
            Ok(p) => {
                assert!(!on_cycle.iter().any(|&c| c), "a cyclic graph was planned");
                let members: BTreeSet<usize> = (0..n)
                    .filter(|&i| {
                        set.issue(IDS[i]).is_some_and(|d| d.milestone.as_deref() == Some(m.as_str()))
                            || set.milestones.iter().any(|ms| ms.id == m && ms.issue_map.iter().any(|d| d.id == IDS[i]))
                    })
                    .collect();
                let idx = |id: &str| IDS.iter().position(|x| *x == id).expect("known id");
                let order: Vec<usize> = p.order.iter().map(|i| idx(&i.id)).collect();
                assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), members, "order is not the milestone");
                assert_eq!(order.len(), members.len(), "an issue is planned twice");
                let pos = |i: usize| order.iter().position(|&o| o == i).expect("member");
                let mut level = vec![0usize; n];
                for &i in &order {
                    let inside: Vec<usize> =
                        edges_set.iter().filter(|(a, b)| *a == i && members.contains(b)).map(|e| e.1).collect();
                    for &d in &inside {
                        assert!(pos(d) < pos(i), "{} planned before its dependency {}", IDS[i], IDS[d]);
                        level[i] = level[i].max(level[d] + 1);
                    }
                    // In plan order: the first is the one the issue's branch starts from.
                    let mut inside = inside;
                    inside.sort_unstable_by_key(|&d| pos(d));
                    let want: Vec<&str> = inside.iter().map(|&d| IDS[d]).collect();
                    let got = &p.order[pos(i)].blocked_by;
                    assert_eq!(got, &want, "blocked_by of {}", IDS[i]);
                }
                for (k, wave) in p.waves.iter().enumerate() {
                    for id in wave {
                        assert_eq!(level[idx(id)], k, "{id} in the wrong wave");
                    }
                }
                let mut external: Vec<(String, String)> = edges_set
                    .iter()
                    .filter(|(a, b)| members.contains(a) && !members.contains(b))
                    .map(|(a, b)| (IDS[*a].to_owned(), IDS[*b].to_owned()))
                    .collect();
                external.sort();
                assert_eq!(p.external, external, "external dependencies");
                // Every output format renders without panicking.
                let _ = (p.to_text("main@0000000"), p.to_json("main@0000000"), p.to_dot(), p.to_mermaid());
            }
        }
    }
}

/// Which nodes lie on a cycle of "depends on" edges (transitive closure; n <= 12).
fn on_cycle(n: usize, edges: &BTreeSet<(usize, usize)>) -> Vec<bool> {
    let mut reach = vec![vec![false; n]; n];
    for &(a, b) in edges {
        reach[a][b] = true;
    }
    for k in 0..n {
        let via = reach[k].clone();
        for row in reach.iter_mut().filter(|row| row[k]) {
            for (r, &v) in row.iter_mut().zip(&via) {
                *r |= v;
            }
        }
    }
    (0..n).map(|i| reach[i][i]).collect()
}
