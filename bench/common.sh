# Sourced by the shell benchmarks. bench_train DIR NAME CONFIG [OVERRIDES...] trains CONFIG into
# DIR/NAME (log in DIR/NAME.log) and prints the run's one-line summary with the wall time.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/python -m bench.machine  # the machine line that heads every table

bench_train() {
  local dir=$1 name=$2 config=$3; shift 3
  mkdir -p "$dir"
  local start=$(date +%s)
  .venv/bin/pipeline train "$config" "$@" "output_dir=$dir/$name" --overwrite > "$dir/$name.log" 2>&1
  echo "$(.venv/bin/python bench/run_summary.py "$dir/$name"), wall $(( $(date +%s) - start )) s"
}
