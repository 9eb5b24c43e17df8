#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs unit and
# integration tests (which start real containers and boot real VMs).
# ISOBENCH_REQUIRE_ALL=1 turns every "skipped: prerequisite missing" into a
# failure; CI sets it.
#
#   scripts/test.sh [cargo test options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --release "$@"
