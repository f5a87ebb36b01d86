#![no_main]
#[path = "../props/mod.rs"]
mod props;
libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check("claude_stream", data));
