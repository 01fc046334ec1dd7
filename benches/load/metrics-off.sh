#!/bin/sh
# The gateway with `[metrics] enabled = false`, for the load bench's
# metrics-on-against-off row in one run:
#   BENCH_BASELINE_BIN=benches/load/metrics-off.sh BENCH_PATHS=direct,gateway,baseline cargo bench --bench load
# The bench starts it as `serve --config FILE --listen ADDR`; this copies FILE
# with the metrics section appended and runs the same release build on it.
set -eu
. "$(dirname "$0")/with-config.sh"
rewrite() {
  cat
  printf '\n[metrics]\nenabled = false\n'
}
with_config metrics-off "$@"
