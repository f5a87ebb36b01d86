//! The fuzz targets' properties on stable `cargo test`: every file of fuzz/corpus/<target>/ (the
//! seeds and every crash ever found) plus a few thousand cheap mutations of them. libFuzzer
//! explores further (scripts/fuzz.sh); this keeps whatever it found fixed.

#[path = "../../fuzz/props/mod.rs"]
mod props;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("read corpus file"))).collect()
}

/// Runs one input, naming the corpus file if the property fails.
fn run(target: &str, what: &str, data: &[u8]) {
    let r = std::panic::catch_unwind(|| props::check(target, data));
    if let Err(e) = r {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{target}: {what}: {}", msg.unwrap_or_default());
    }
}

/// xorshift64*: deterministic, so a failure here reproduces exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte flips, deletions, duplications and splices of interesting tokens: the edits that break
/// parsers (a lost quote, a doubled `---`, a stray `|`, a CR, a NUL, a huge length).
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"---\n",
        b"\r\n",
        b"\t",
        b"|",
        b"\\|",
        b"\"",
        b"'",
        b"[",
        b"{",
        b"}",
        b"]",
        b": ",
        b"- ",
        b"\0",
        b"\xff",
        b"\xef\xbb\xbf",
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x00",
        b"&a ",
        b"*a",
        b"!!binary ",
        b"# Issue Map\n",
        b"```\n",
        b"\xc1\x00",
    ];
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(5) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(d.len());
                d.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                d.splice(at..at, t.iter().copied());
            }
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let chunk: Vec<u8> = d[i..(i + 1 + rng.below(32)).min(d.len())].to_vec();
                d.splice(at..at, chunk);
            }
            _ => d.truncate(at),
        }
    }
    d
}

fn replay(target: &str) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target}/ has no seeds");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for (path, data) in &files {
        run(target, &path.display().to_string(), data);
    }
    for i in 0..2000 {
        let (path, seed) = &files[i % files.len()];
        let m = mutate(&mut rng, seed);
        run(target, &format!("mutation {i} of {}", path.display()), &m);
    }
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in props::TARGETS {
        assert!(!corpus(name).is_empty(), "fuzz/corpus/{name}/ is empty");
    }
}

#[test]
fn issue_doc() {
    replay("issue_doc");
}

#[test]
fn milestone_doc() {
    replay("milestone_doc");
}

#[test]
fn issue_map() {
    replay("issue_map");
}

#[test]
fn plan() {
    replay("plan");
}

#[test]
fn journal_record() {
    replay("journal_record");
}

#[test]
fn journal_export() {
    replay("journal_export");
}

#[test]
fn journal_log() {
    replay("journal_log");
}

/// The issue's promise for journal files, over every byte of every seed journal: any edit fails
/// verification, any cut inside a record fails, and a cut between records is that prefix.
#[test]
fn journal_export_every_byte() {
    for (path, data) in corpus("journal_export") {
        let r = std::panic::catch_unwind(|| props::journal_export_exhaustive(&data));
        assert!(r.is_ok(), "{}", path.display());
    }
}

#[test]
fn agent_output() {
    replay("agent_output");
}

#[test]
fn sim_scenario() {
    replay("sim_scenario");
}

#[test]
fn codex_event() {
    replay("codex_event");
}

#[test]
fn codex_stream() {
    replay("codex_stream");
}

#[test]
fn loop_toml() {
    replay("loop_toml");
}
