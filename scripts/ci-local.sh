#!/usr/bin/env bash
# The steps of .github/workflows/isobench.yml, run locally with two
# simulated hosts: each "runner" runs isobench with its own host label
# (ISOBENCH_HOST_LABEL, recorded as host.label in meta.json), its run
# directory is copied as the job's artifact, then the final job merges the
# artifacts, checks each run against the bounds, and writes the job summary.
#
#   scripts/ci-local.sh WORKDIR [isobench run options...]
#
# Default run options: the default scenario's noop and cpu, native and
# container, 3 repetitions (about 20 s per host here). ISOBENCH names the
# binary (default: target/.../release/isobench, built when missing);
# BOUNDS a bounds file (default: a small one written into WORKDIR).
# Everything is written under WORKDIR; the summary is WORKDIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: scripts/ci-local.sh WORKDIR [isobench run options...]}
shift
opts=("$@")
[ ${#opts[@]} -gt 0 ] || opts=(--env native,container --workload noop,cpu --reps 3)
bin=${ISOBENCH:-target/x86_64-unknown-linux-gnu/release/isobench}
[ -x "$bin" ] || cargo build --release --quiet
mkdir -p "$work/artifacts"

# Job "run" (the matrix): one per host.
for host in ci-host-a ci-host-b; do
  out="$work/runner-$host"
  ISOBENCH_HOST_LABEL=$host "$bin" run "${opts[@]}" --quiet --no-history --out "$out" >"$work/run-$host.log" 2>&1
  # actions/upload-artifact of the run directory.
  cp -rL "$out/latest" "$work/artifacts/$host"
done

# Job "merge": download the artifacts, merge, check each host, summarize.
bounds=${BOUNDS:-$work/bounds.toml}
if [ -z "${BOUNDS:-}" ]; then
  cat >"$bounds" <<'TOML'
description = "ci-local: containers start within 50x native's startup, and a CPU score near native"
[[bound]]
workload = "noop"
environment = "container"
metric = "startup_ms"
unit = "ms"
ratio_max = 50.0
[[bound]]
workload = "cpu"
environment = "container"
metric = "score"
unit = "rounds/s"
ratio_min = 0.5
TOML
fi
"$bin" merge "$work"/artifacts/* --out "$work/merged" >"$work/merge.log"
summary="$work/summary.md"  # $GITHUB_STEP_SUMMARY in the workflow
status=0
{
  echo "# isobench over $(ls "$work/artifacts" | wc -l) hosts"
  echo
  for run in "$work"/artifacts/*; do
    echo "## $(basename "$run")"
    "$bin" check --bounds "$bounds" "$run" --format md || status=1
    echo
  done
  cat "$work/merged/fleet.md"
  echo
  cat "$work/merged/report.md"
} >"$summary"
echo "summary: $summary (bounds $( [ $status = 0 ] && echo held || echo NOT met))"
exit $status
