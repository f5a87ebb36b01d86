//! Library-level properties, as one test binary: the state machine against a reference model,
//! the fuzz targets' properties over the checked-in corpus, and the crashes the fuzzers found.
//! None of them runs the `loop` binary.

mod fuzz_props;
mod fuzz_regressions;
mod machine_props;
