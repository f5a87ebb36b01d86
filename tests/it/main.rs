//! The integration tests that run the real `loop` binary, as one test binary (one link, one
//! process per `cargo test` run instead of one per file). Each module is a former
//! `tests/<name>.rs`; every command they run is built by `support::TestEnvironment`.
//!
//! `tests/power_cut.rs` (needs FUSE) and `tests/props/` (library properties and the fuzz
//! corpus) are binaries of their own.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod bases;
mod claude_e2e;
mod codex_e2e;
mod codex_guard;
mod codex_resil;
mod core;
mod env_faults;
mod environment;
mod guard;
mod inputs;
mod inspect;
mod journal_damage;
mod land;
mod money;
mod parallel;
mod preflight;
mod report;
mod rerun;
#[cfg(feature = "restate")]
mod restate;
mod restate_harness;
mod safefs;
mod signals;
mod snapshots;
mod start;
mod terminal;
mod verify;
mod worktree_repair;
