#!/usr/bin/env bash
# Installs what isobench and its tests need on a Debian/Ubuntu host, as root,
# and fetches the guest kernel. Idempotent: quiet when everything is there.
#
#   scripts/setup.sh          # packages + guest kernel
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "run me as root (apt-get and the container environment need it)"
  exit 2
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install a current Rust toolchain (https://rustup.rs), then run me again"
  exit 2
fi

# command -> Debian package that provides it
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v apt-get >/dev/null 2>&1 || { say "apt-get not found: a Debian or Ubuntu host is needed"; exit 2; }
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v git >/dev/null 2>&1 || need+=(git)
# Real programs used by scenarios/apps.toml and the command-workload tests.
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
# The seccomp test compiles a small static C probe.
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
# The shell of the test image for --image (tests/image.rs, scripts/busybox-image.sh).
[ -x /bin/busybox ] || need+=(busybox-static)
# The real runtimes as environments (--env runc,crun,gvisor,docker,podman;
# tests/runtimes.rs starts its own private dockerd), and peers of the
# container benchmark (cargo bench).
command -v crun >/dev/null 2>&1 || need+=(crun)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v runsc >/dev/null 2>&1 || need+=(runsc)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# scenarios/network.toml: Redis inside each environment, redis-benchmark on the host.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
# The minimal guest kernel (isobench kernel build): Debian's kernel source
# and what building it takes.
[ -f /usr/src/linux-source-6.1.tar.xz ] || need+=(linux-source-6.1)
command -v make >/dev/null 2>&1 || need+=(make)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v bison >/dev/null 2>&1 || need+=(bison)
command -v flex >/dev/null 2>&1 || need+=(flex)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
[ -f /usr/include/gelf.h ] || need+=(libelf-dev)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)

if [ "${#need[@]}" -gt 0 ]; then
  say "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages with services (docker.io, containerd, podman, redis-server)
  # must not start them: isobench and its tests never run a daemon of the
  # host's; the tests start private ones. A policy-rc.d of our own denies
  # starts for the length of the install, unless the host has one already.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# isobench setup.sh: no service starts during its install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if grep -q '^# isobench setup.sh' "$policy" 2>/dev/null; then rm -f "$policy"; trap - EXIT; fi
fi

# The guest kernel comes from the distribution's package lists.
if ! cargo run --quiet --release --bin isobench -- kernel path >/dev/null 2>&1; then
  if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 \
     && ! apt-cache show linux-image-kvm >/dev/null 2>&1; then
    say "updating apt package lists (needed to find the guest kernel package)"
    apt-get update -qq
  fi
  say "fetching the guest kernel"
  cargo run --quiet --release --bin isobench -- kernel fetch >/dev/null
fi

