//! `loop`: drives coding agents through milestone → issue → dev → review → fix, durably.
//!
//! Data flows one way: [`docs`] → [`plan`] → [`engine`] ⇄ [`machine`]; the engine writes the
//! [`journal`] and calls out to [`agent`] and [`workspace`]. Read-only commands need only the
//! journal, and render through [`render`] exactly as a live run does.

pub mod agent;
pub mod bench;
pub mod blame;
pub mod cli;
pub mod clock;
pub mod config;
pub mod docs;
pub mod engine;
pub mod guard;
pub mod journal;
pub mod machine;
pub mod out;
pub mod plan;
pub mod preflight;
pub mod proc;
pub mod prompts;
pub mod render;
pub mod reviewdoc;
pub mod runs;
pub mod safefs;
pub mod stack;
pub mod text;
pub mod verify;
pub mod vocab;
pub mod workspace;

#[cfg(test)]
mod layers;
#[cfg(feature = "restate")]
pub mod restate;
