#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time on top of its checked-in corpus.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
# Stable toolchain: libFuzzer without a sanitizer (`--sanitizer none`) needs no nightly.
# New inputs go to fuzz/artifacts/corpus/TARGET (git-ignored), crashes to fuzz/artifacts/TARGET/;
# keep a crash by copying it into fuzz/corpus/TARGET/ (tests/fuzz_props.rs then replays it).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cargo fuzz build --sanitizer none
# cargo fuzz puts its binaries under CARGO_TARGET_DIR when one is set.
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$(rustc -vV | sed -n 's/^host: //p')/release"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/artifacts/$t" "fuzz/artifacts/corpus/$t"
  echo "scripts/fuzz.sh: $t for ${secs}s" >&2
  # The first corpus dir is where libFuzzer writes new inputs, so the checked-in one stays clean.
  # -timeout turns a hang into a reported crash; -rss_limit_mb an unbounded allocation.
  if ! "$bin_dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" "fuzz/artifacts/corpus/$t" "fuzz/corpus/$t" 2>"fuzz/artifacts/$t.log"; then
    tail -n 40 "fuzz/artifacts/$t.log" >&2
    failed+=("$t")
  else
    grep -E '^stat::number_of_executed_units|^Done' "fuzz/artifacts/$t.log" >&2 || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "scripts/fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "scripts/fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash" >&2
