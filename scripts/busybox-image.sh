#!/usr/bin/env bash
# Writes a small image with a shell as a `docker save` tarball, without
# Docker: one layer holding Debian's busybox-static (/bin/busybox, with
# /bin/sh and the usual applets as links to it). For trying `--image`:
#
#   scripts/busybox-image.sh /tmp/busybox.tar
#   isobench exec --image /tmp/busybox.tar -- /bin/sh -c 'ls /bin | wc -l'
set -euo pipefail
out=${1:?usage: scripts/busybox-image.sh OUT.tar}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-image: $bb missing: apt-get install busybox-static" >&2; exit 2; }
out=$(realpath -m "$out")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp"
cp "$bb" "$work/root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/root/etc/passwd"
# Reproducible: fixed owner and times, sorted names.
tar -C "$work/root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" > "$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mkdir -p "$work/save/$diff_id"
mv "$work/layer.tar" "$work/save/$diff_id/layer.tar"
mv "$work/config.json" "$work/save/$config.json"
printf '[{"Config":"%s.json","RepoTags":["busybox-static:local"],"Layers":["%s/layer.tar"]}]' \
  "$config" "$diff_id" > "$work/save/manifest.json"
tar -C "$work/save" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out" .
echo "$out: busybox-static:local, config sha256:$config"
