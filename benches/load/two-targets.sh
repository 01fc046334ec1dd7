#!/bin/sh
# The gateway with the bench agent on two targets (two providers on the same
# mock upstream, balanced), for the load bench's one-against-two-targets row
# in one run:
#   BENCH_BASELINE_BIN=benches/load/two-targets.sh BENCH_PATHS=direct,gateway,baseline cargo bench --bench load
# The bench starts it as `serve --config FILE --listen ADDR`; this rewrites
# FILE's agent onto `targets = [...]` and runs the same release build on it.
set -eu
. "$(dirname "$0")/with-config.sh"
rewrite() {
  awk '
      /^\[providers\.bench\]/ { in_provider = 1 }
      in_provider && /^base_url/ { base = $0 }
      in_provider && /^api_key/ { key = $0 }
      /^\[agents\./ { in_provider = 0 }
      /^provider = "bench"$/ { next }
      /^upstream_model = / && !done {
        model = $3
        print "targets = [{ provider = \"bench\", upstream_model = " model " }, { provider = \"bench2\", upstream_model = " model " }]"
        done = 1
        next
      }
      { print }
      END { print "\n[providers.bench2]\nkind = \"openai\"\n" base "\n" key }
    '
}
with_config two-targets "$@"
