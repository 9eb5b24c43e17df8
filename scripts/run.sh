#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the default
# scenario (or the given `isobench run` options), writing reports/<run-id>/.
#
#   scripts/run.sh [isobench run options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/x86_64-unknown-linux-gnu/release/isobench run "$@"
