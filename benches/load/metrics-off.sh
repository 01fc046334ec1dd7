#!/bin/sh
# The gateway with `[metrics] enabled = false`, for the load bench's
# metrics-on-against-off row in one run:
#   BENCH_BASELINE_BIN=benches/load/metrics-off.sh BENCH_PATHS=direct,gateway,baseline cargo bench --bench load
# The bench starts it as `serve --config FILE --listen ADDR`; this copies FILE
# with the metrics section appended and runs the same release build on it.
set -eu
bin="${TOLLGATE_BIN:-$(dirname "$0")/../../target/release/tollgate}"
out=""
config=""
for arg in "$@"; do
  if [ "$config" = next ]; then
    config="$arg.metrics-off.toml"
    { cat "$arg"; printf '\n[metrics]\nenabled = false\n'; } > "$config"
    out="$out '$config'"
  else
    [ "$arg" = --config ] && config=next
    out="$out '$arg'"
  fi
done
eval exec "\"$bin\"" "$out"
