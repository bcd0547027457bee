# The NVIDIA Container Toolkit's Go binaries (nvidia-ctk, nvidia-container-runtime, nvidia-cdi-hook) built
# from the Go module proxy, and a signed apt repository on this machine that serves them as the
# nvidia-container-toolkit package: the gpu_runtime role's install path is tested against it on the real
# node (tests/integration/test_gpu_runtime.py), and tests/gpu/prepare carries the binaries to a GPU machine.
# Sourced after scripts/lib/common.sh and scripts/localcluster/build.sh.
# shellcheck shell=bash disable=SC2034,SC2317  # settings read by the sourcing scripts; _build_* run through build_part

# v1.20.2: the newest release on the proxy (2026-11-05); the role's minimum is 1.17.8 (CVE-2025-23266).
TOOLKIT_VERSION=v1.20.2
TOOLKIT_MODULE=github.com/NVIDIA/nvidia-container-toolkit
TOOLKIT_CMDS=(nvidia-ctk nvidia-container-runtime nvidia-cdi-hook)
TOOLKIT_BIN=$CACHE/bin/nvidia-container-toolkit-$TOOLKIT_VERSION

# containerd 2.x, to check config version 3 for real (`containerd config dump`, what nvidia-ctk and the role write
# for containerd 2.x nodes) where Debian ships containerd 1.6. `go install` refuses its module (exclude directives):
# built from the wrapper module scripts/localcluster/containerd2 (go.mod/go.sum pin it), without cgo.
CONTAINERD2_VERSION=v2.1.4
CONTAINERD2_BIN=$CACHE/bin/containerd-$CONTAINERD2_VERSION

# CGO: nvidia-ctk loads NVML (cdi generate) and the runtime links libc as NVIDIA's packages do. The version
# is set as NVIDIA's Makefile sets it: the role reads it from `nvidia-container-runtime --version` for its minimum.
_build_toolkit() {
  local out=$1 c pkgs=()
  for c in "${TOOLKIT_CMDS[@]}"; do pkgs+=("$TOOLKIT_MODULE/cmd/$c@$TOOLKIT_VERSION"); done
  env GOBIN="$out" CGO_ENABLED=1 go install -trimpath \
    -ldflags "-s -w -X $TOOLKIT_MODULE/internal/info.version=${TOOLKIT_VERSION#v}" "${pkgs[@]}"
}

build_toolkit() {
  command -v go >/dev/null || die "go is not installed (scripts/setup installs it)"
  command -v gcc >/dev/null || die "the toolkit builds with cgo: gcc is missing"
  build_part "NVIDIA Container Toolkit $TOOLKIT_VERSION (${TOOLKIT_CMDS[*]})" "$TOOLKIT_VERSION" "$TOOLKIT_BIN" \
    _build_toolkit
}

_build_containerd2() {
  local dir=$ROOT/scripts/localcluster/containerd2
  grep -q "containerd/containerd/v2 $CONTAINERD2_VERSION" "$dir/go.mod" ||
    { log "$dir/go.mod does not require containerd $CONTAINERD2_VERSION"; return 1; }
  cd "$dir" &&
    CGO_ENABLED=0 go build -trimpath "$LEAN_GCFLAGS" -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD2_VERSION#v}" -o "$1/" \
      github.com/containerd/containerd/v2/cmd/containerd
}

build_containerd2() {
  command -v go >/dev/null || die "go is not installed (scripts/setup installs it)"
  build_part "containerd $CONTAINERD2_VERSION (config version 3 checks)" \
    "$CONTAINERD2_VERSION-$(_key "$ROOT"/scripts/localcluster/containerd2/go.{mod,sum})" "$CONTAINERD2_BIN" \
    _build_containerd2
}

# The nvidia-container-toolkit package as NVIDIA's repository serves it to the role (binaries in /usr/bin, the
# default config as a conffile), in a flat apt repository signed with a key made for it: apt checks the
# InRelease signature against the key the role installed after checking its fingerprint (file `fingerprint`).
# Use: deb [signed-by=KEYRING] file://$TOOLKIT_REPO ./ with key file://$TOOLKIT_REPO/key.asc.
TOOLKIT_REPO=$CACHE/bin/nvidia-toolkit-repo-$TOOLKIT_VERSION

_build_toolkit_repo() {
  local out=$1 version=${TOOLKIT_VERSION#v}-1 arch tmp deb c
  arch=$(dpkg --print-architecture) && tmp=$(mktemp -d) || return 1
  deb=nvidia-container-toolkit_${version}_$arch.deb
  mkdir -p "$tmp/pkg/DEBIAN" "$tmp/pkg/usr/bin" "$tmp/pkg/etc/nvidia-container-runtime" "$tmp/gnupg" &&
    chmod 700 "$tmp/gnupg" || return 1
  for c in "${TOOLKIT_CMDS[@]}"; do install -m 0755 "$TOOLKIT_BIN/$c" "$tmp/pkg/usr/bin/$c" || return 1; done
  "$TOOLKIT_BIN/nvidia-ctk" --quiet config default --output "$tmp/pkg/etc/nvidia-container-runtime/config.toml" ||
    return 1
  echo /etc/nvidia-container-runtime/config.toml > "$tmp/pkg/DEBIAN/conffiles"
  cat > "$tmp/pkg/DEBIAN/control" <<CONTROL
Package: nvidia-container-toolkit
Version: $version
Architecture: $arch
Maintainer: nimguard.k8s tests <noreply@nimguard.invalid>
Depends: libc6
Section: utils
Priority: optional
Description: NVIDIA Container Toolkit $TOOLKIT_VERSION (nimguard test build)
 nvidia-ctk, nvidia-container-runtime and nvidia-cdi-hook built from the Go module proxy for the
 nimguard.k8s tests; no nvidia-container-cli, so CDI mode only.
CONTROL
  dpkg-deb --root-owner-group -Zxz --build "$tmp/pkg" "$out/$deb" >/dev/null || return 1
  # A flat repository: Packages from the control fields (no dpkg-dev needed), Release with its hashes.
  {
    dpkg-deb -f "$out/$deb"
    echo "Filename: ./$deb"
    echo "Size: $(stat -c %s "$out/$deb")"
    echo "SHA256: $(sha256sum "$out/$deb" | cut -d' ' -f1)"
  } > "$out/Packages" && gzip -9nk "$out/Packages" || return 1
  {
    echo "Origin: nimguard-tests"
    echo "Label: nvidia-container-toolkit"
    echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
    echo "Architectures: $arch"
    echo "SHA256:"
    for c in Packages Packages.gz; do echo " $(sha256sum "$out/$c" | cut -d' ' -f1) $(stat -c %s "$out/$c") $c"; done
  } > "$out/Release"
  export GNUPGHOME=$tmp/gnupg
  gpg --batch --quiet --passphrase '' --quick-gen-key "nimguard local toolkit repository" ed25519 sign never &&
    gpg --batch --quiet --armor --export > "$out/key.asc" &&
    gpg --batch --with-colons --list-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }' > "$out/fingerprint" &&
    gpg --batch --quiet --clearsign -o "$out/InRelease" "$out/Release" || return 1
  gpgconf --kill all 2>/dev/null
  rm -rf "$tmp"
}

build_toolkit_repo() {
  build_toolkit
  command -v gpg >/dev/null || die "gpg is missing (scripts/setup installs gnupg): it signs the local toolkit repository"
  # "repo1": the layout of the repository folder.
  build_part "NVIDIA Container Toolkit $TOOLKIT_VERSION apt repository" "$TOOLKIT_VERSION-repo1" "$TOOLKIT_REPO" \
    _build_toolkit_repo
}
