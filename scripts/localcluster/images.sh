# Test images of the local cluster's real node, built from local files only (nothing is pulled):
#   docker.io/local/pause:1    the sandbox image (cmd/pause)
#   docker.io/local/fakenim:1  the fake NIM (cmd/fakenim, user 1000:2000) with a static busybox for
#                              the collection's /bin/sh wrappers (file delivery, CA init container);
#                              also the client image of the tests (`fakenim get|post|probe`)
# and the stand-in GPU device plugin binary (NO GPU), in $TESTIMAGES_BIN.
#   images_build           build the binaries (cached by the module's content) and the archives
#   images_import ADDRESS [SNAPSHOTTER]  import into containerd's k8s.io namespace unless there
#   images_list            print the image refs
# Sourced after common.sh and build.sh; `bash scripts/localcluster/images.sh build|import ADDRESS|list`
# runs one of them.
# shellcheck shell=bash

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=scripts/lib/common.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
  # shellcheck source=scripts/localcluster/build.sh
  source "$ROOT/scripts/localcluster/build.sh"
fi

TESTIMAGES_SRC=$ROOT/scripts/localcluster/testimages
PAUSE_IMAGE=docker.io/local/pause:1
FAKENIM_IMAGE=docker.io/local/fakenim:1
IMAGES=(pause fakenim)
BUSYBOX=${NIMGUARD_BUSYBOX:-/bin/busybox}  # Debian's busybox-static (scripts/setup installs it)

# The cache folders follow from the content: the module's files (names and bytes), the Go
# toolchain, and the busybox put in the image. Sets TESTIMAGES_KEY, TESTIMAGES_BIN, IMAGES_DIR.
_images_paths() {
  command -v go >/dev/null || die "go is not installed (scripts/setup installs it)"
  [[ -x $BUSYBOX ]] || die "$BUSYBOX missing: install busybox-static (scripts/setup does)"
  local files
  files=$(cd "$TESTIMAGES_SRC" && find . -type f -not -name '*_test.go' | LC_ALL=C sort)
  TESTIMAGES_KEY=$( { echo "$files"; (cd "$TESTIMAGES_SRC" && xargs cat <<<"$files"); go env GOVERSION GOARCH; } |
    sha256sum | cut -c1-12)
  TESTIMAGES_BIN=$CACHE/bin/testimages-$TESTIMAGES_KEY
  IMAGES_DIR=$CACHE/images/testimages-$TESTIMAGES_KEY-$(sha256sum "$BUSYBOX" | cut -c1-8)
}

_build_testimages() {  # static binaries: they run in images without a libc
  cd "$TESTIMAGES_SRC" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$1/" ./cmd/...
}

# _stage_fakenim DIR: the fake NIM's root filesystem. /tmp is left out: the pod mounts an emptyDir
# there, as the collection does under a read-only root filesystem.
_stage_fakenim() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,opt/nvidia,opt/nim}
  install -m 0755 "$TESTIMAGES_BIN/fakenim" "$root/usr/local/bin/fakenim"
  install -m 0755 "$BUSYBOX" "$root/bin/busybox"
  for applet in $("$BUSYBOX" --list-full); do
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
  done
  # The collection's default command (specs.py DEFAULT_NIM_COMMAND) as in NVIDIA's images.
  printf '#!/bin/sh\n# Stand-in for the NIM entrypoint wrapper: runs its arguments.\nexec "$@"\n' \
    > "$root/opt/nvidia/nvidia_entrypoint.sh"
  printf '#!/bin/sh\nexec /usr/local/bin/fakenim serve "$@"\n' > "$root/opt/nim/start_server.sh"
  chmod 0755 "$root/opt/nvidia/nvidia_entrypoint.sh" "$root/opt/nim/start_server.sh"
  printf 'root:x:0:0:root:/root:/bin/sh\nnim:x:1000:2000:fake NIM:/nonexistent:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnim:x:2000:\n' > "$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

# _mkimages OUT: both archives and their manifest digests (OUT/NAME.tar, OUT/NAME.digest).
_mkimages() {
  local stage rc=0
  stage=$(mktemp -d) || return 1
  _mkimages_from "$1" "$stage" || rc=$?
  rm -rf "$stage"
  return "$rc"
}

_mkimages_from() {
  local out=$1 stage=$2 arch path="PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  arch=$(go env GOARCH)
  umask 022
  mkdir -p "$stage/pause" && install -m 0755 "$TESTIMAGES_BIN/pause" "$stage/pause/pause"
  python3 "$TESTIMAGES_SRC/mkimage.py" --rootfs "$stage/pause" --ref "$PAUSE_IMAGE" --out "$out/pause.tar" \
    --arch "$arch" --entrypoint '["/pause"]' --user 65535:65535 --env "$path" \
    --label org.opencontainers.image.description="nimguard local sandbox image" > "$out/pause.digest" || return 1
  _stage_fakenim "$stage/fakenim" || return 1
  python3 "$TESTIMAGES_SRC/mkimage.py" --rootfs "$stage/fakenim" --ref "$FAKENIM_IMAGE" --out "$out/fakenim.tar" \
    --arch "$arch" --entrypoint '["/usr/local/bin/fakenim"]' --cmd '["serve"]' --user 1000:2000 --env "$path" \
    --label org.opencontainers.image.description="nimguard fake NIM: no model, no GPU" > "$out/fakenim.digest"
}

images_build() {
  _images_paths
  build_part "test images' binaries (fakenim, pause, fake-gpu-plugin)" "$TESTIMAGES_KEY" "$TESTIMAGES_BIN" \
    _build_testimages
  local name="test images (pause, fakenim)"
  if [[ $BUILD_MODE == check ]]; then  # its input is the binaries above, which a check does not compile
    _wanted "$name" && log "not checked: $name: made from the binaries above and local files, it reads no module"
    return 0
  fi
  build_part "$name" "$TESTIMAGES_KEY" "$IMAGES_DIR" _mkimages
}

images_list() {
  echo "$PAUSE_IMAGE"
  echo "$FAKENIM_IMAGE"
}

# images_import ADDRESS [SNAPSHOTTER]: containerd's CRI sees images of the k8s.io namespace.
images_import() {
  local address=${1:?images_import ADDRESS [SNAPSHOTTER]} snap=${2:-} name ref want have
  local ctr=(ctr --address "$address" -n k8s.io)
  _images_paths
  [[ -f $IMAGES_DIR/.key ]] || die "test images not built: run images_build first"
  for name in "${IMAGES[@]}"; do
    ref=$(images_list | grep "/$name:")
    want=$(cat "$IMAGES_DIR/$name.digest")
    have=$("${ctr[@]}" images ls "name==$ref" | awk 'NR > 1 { print $3 }')
    if [[ $have == "$want" ]]; then
      log "image $ref already imported ($want)"
      continue
    fi
    timed "importing $ref" "${ctr[@]}" images import --all-platforms ${snap:+--snapshotter "$snap"} \
      "$IMAGES_DIR/$name.tar"
  done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-} in
    build) images_build; _images_paths; echo "TESTIMAGES_BIN=$TESTIMAGES_BIN"; echo "IMAGES_DIR=$IMAGES_DIR" ;;
    import) images_import "${@:2}" ;;
    list) images_list ;;
    *) die "usage: $0 build|import ADDRESS [SNAPSHOTTER]|list" ;;
  esac
fi
