# Sourced by the load bench's baseline wrappers (metrics-off.sh,
# two-targets.sh): `with_config SUFFIX "$@"` runs the release build with the
# `--config FILE` argument replaced by FILE.SUFFIX.toml, written by the
# caller's `rewrite` function (FILE on stdin, the new config on stdout).
with_config() {
  suffix="$1"
  shift
  bin="${TOLLGATE_BIN:-$(dirname "$0")/../../target/release/tollgate}"
  out=""
  config=""
  for arg in "$@"; do
    if [ "$config" = next ]; then
      config="$arg.$suffix.toml"
      rewrite < "$arg" > "$config"
      out="$out '$config'"
    else
      [ "$arg" = --config ] && config=next
      out="$out '$arg'"
    fi
  done
  eval exec "\"$bin\"" "$out"
}
