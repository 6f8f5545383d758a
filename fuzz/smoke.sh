#!/usr/bin/env bash
# Fuzzing in smoke mode, on stable Rust: builds every cargo-fuzz target with
# libFuzzer's coverage instrumentation (the flags cargo-fuzz passes, minus
# the nightly-only sanitizer) and runs each for a few seconds, starting from
# its committed corpus. New inputs go to a scratch directory, never into the
# repository; a crash, panic, timeout (10 s) or out-of-memory fails the run
# and leaves the input under target/fuzz-smoke/artifacts/.
#
#   fuzz/smoke.sh [target ...]          (default: every target)
#
# Environment: WEFT_FUZZ_SMOKE_SECONDS (default 15) per target.
# The long runs use nightly and cargo-fuzz (AddressSanitizer); see docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${WEFT_FUZZ_SMOKE_SECONDS:-15}
target_dir=$(cd .. && pwd)/target/fuzz-smoke
triple=$(rustc -vV | sed -n 's/^host: //p')
mapfile -t all_targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^weft-fuzz$')
targets=("${@:-${all_targets[@]}}")

# --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  CARGO_TARGET_DIR=$target_dir \
  cargo build --release --locked --target "$triple" --bins

bin_dir=$target_dir/$triple/release
artifacts=$target_dir/artifacts
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$artifacts"

failed=()
for t in "${targets[@]}"; do
  [[ -x $bin_dir/$t ]] || { echo "fuzz smoke: no target named $t" >&2; exit 2; }
  mkdir -p "$scratch/$t"
  log=$scratch/$t.log
  if "$bin_dir/$t" "$scratch/$t" "corpus/$t" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t-" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'DONE *cov: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    echo "fuzz smoke: $t ok (${seconds} s, ${runs:-?} executions, ${cov:-?} edges)"
  else
    echo "fuzz smoke: $t FAILED; last lines of its log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz smoke: failed: ${failed[*]} (inputs in $artifacts)" >&2
  exit 1
fi
