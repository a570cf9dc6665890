#!/usr/bin/env bash
# Builds the Ferry container image and promotes it with Ferry itself.
#
#   deploy/image.sh                                   # build: target/image/ferry, an OCI layout
#   deploy/image.sh --to registry.example/ferry-dev   # ... and print the promotion plan (dry run)
#   deploy/image.sh --to registry.example/ferry-dev --confirm   # ... and promote
#
# Options:
#   --ferry BIN   package this ferry binary (default: `cargo build --release -p ferry`, then
#                 target/release/ferry); the same binary runs the promotion
#   --out DIR     where the OCI layouts go (default target/image): the image is DIR/NAME, so
#                 the promotion's source registry is oci:DIR
#   --name NAME   image name (default ferry)
#   --tag TAG     tag (default: the binary's version, `ferry --version`)
#   --to REG      destination registry for `ferry promote images` (host[:port][/prefix] or oci:DIR)
#   --confirm     promote (without it Ferry prints the plan and writes nothing)
#   -- ARGS...    passed on to `ferry promote images` (e.g. --plain-http HOST, --output json)
#
# The image is FROM scratch (no base image is downloaded): the stripped binary, the shared
# libraries `ldd` says it needs, the loader, the CA bundle and a passwd naming user 65532. It is
# built by podman (or buildah: IMAGE_BUILDER=buildah) from deploy/Containerfile, in a private,
# throw-away container storage under DIR, with every timestamp set to SOURCE_DATE_EPOCH (default
# 0): the same binary gives the same image digest, so a re-run promotes nothing, and a changed
# binary under the same tag is refused by the promotion as a tag move (tags never move: use --tag
# for a development build). docs/deploy.md has the rest.
set -euo pipefail
umask 022
repo=$(cd "$(dirname "$0")/.." && pwd)

ferry= out=$repo/target/image name=ferry tag= to= confirm=
promote_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --ferry) ferry=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --to) to=$2; shift 2 ;;
    --confirm) confirm=--confirm; shift ;;
    --) shift; promote_args=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$confirm" ] && [ -z "$to" ] && { echo "image.sh: --confirm needs --to REGISTRY" >&2; exit 2; }

if [ -n "${IMAGE_BUILDER:-}" ]; then
  builder=$IMAGE_BUILDER
elif command -v podman >/dev/null; then
  builder=podman
elif command -v buildah >/dev/null; then
  builder=buildah
else
  echo "image.sh: needs podman or buildah (apt-get install podman)" >&2
  exit 1
fi
command -v strip >/dev/null || { echo "image.sh: needs strip (apt-get install binutils)" >&2; exit 1; }

if [ -z "$ferry" ]; then
  echo "== cargo build --release -p ferry"
  (cd "$repo" && cargo build --release --quiet -p ferry)
  ferry=${CARGO_TARGET_DIR:-$repo/target}/release/ferry
fi
[ -x "$ferry" ] || { echo "image.sh: $ferry is not an executable" >&2; exit 1; }
version=$("$ferry" --version | awk '{print $2}')
tag=${tag:-$version}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The build context: rootfs/ is copied whole into the image (deploy/Containerfile).
work=$(mktemp -d "$out/.build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rootfs=$work/context/rootfs
mkdir -p "$rootfs/etc/ssl/certs"
install -m 0755 "$ferry" "$rootfs/ferry"
strip "$rootfs/ferry"
# Every library the loader resolves, and the loader itself, at the paths the binary asks for.
# A static binary (say a musl build) needs none: ldd then says "not a dynamic executable".
libs=$(ldd "$ferry" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' || true)
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "image.sh: needs /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)" >&2; exit 1; }
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
cp "$repo/deploy/Containerfile" "$work/context/Containerfile"

# A private container storage, removed with $work: nothing is left in the machine's own.
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
[ "$builder" = podman ] && storage+=(--tmpdir "$work/tmp" --events-backend none)
local_ref=localhost/$name:$tag
echo "== $builder build $local_ref (FROM scratch: /ferry ${libs//$'\n'/ })"
"$builder" "${storage[@]}" build --quiet --format oci --layers=false \
  --timestamp "${SOURCE_DATE_EPOCH:-0}" --build-arg "VERSION=$version" \
  -f "$work/context/Containerfile" -t "$local_ref" "$work/context" >/dev/null
rm -rf "${out:?}/$name"
"$builder" "${storage[@]}" push --quiet --digestfile "$work/digest" "$local_ref" "oci:$out/$name:$tag"
digest=$(cat "$work/digest")
size=$(du -sk "$out/$name" | awk '{print $1}')
echo "image   $name:$tag $digest (ferry $version, user 65532, entrypoint /ferry serve --config /etc/ferry/ferry.yaml)"
echo "layout  $out/$name ($((size / 1024)) MiB), source registry oci:$out"

# The promotion: a plain manifest (docs/manifests.md) from the layout directory to --to.
manifest=$out/promote-$name.yaml
cat >"$manifest" <<EOF
# Written by deploy/image.sh: promotes $name:$tag from the OCI layout to ${to:-REGISTRY}.
registries:
- name: oci:$out
  src: true
- name: ${to:-registry.example/REPLACE-ME}
images:
- name: $name
  dmap:
    "$digest": ["$tag"]
EOF
echo "manifest $manifest"
if [ -z "$to" ]; then
  echo "(no --to: not promoted; deploy/image.sh --to REGISTRY [--confirm] promotes it with ferry)"
  exit 0
fi
echo "== ferry promote images --manifest $manifest ${confirm:-(dry run)}${promote_args[*]:+ ${promote_args[*]}}"
"$ferry" promote images --manifest "$manifest" $confirm "${promote_args[@]}"
[ -n "$confirm" ] && echo "in place $to/$name:$tag = $digest"
exit 0
