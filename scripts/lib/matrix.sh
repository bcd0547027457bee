# The environments of the ansible-core version matrix: one Python virtual environment per row (one
# ansible-core minor version), for `scripts/test matrix` and `scripts/bench --row`. Sourced, never run;
# needs common.sh and scripts/localcluster/build.sh (build_part, K8S_BIN) sourced first.
# It lives in scripts/lib, not scripts/localcluster: it makes Python environments for the tests and the
# benchmark, and the local cluster neither needs nor knows it.
# shellcheck shell=bash disable=SC2034  # settings: used by the scripts that source this file

MATRIX_DIR=$ROOT/tests/matrix
# Each row is an ansible-core minor version. ansible-core 2.20 and later need Python 3.12 or later on the
# controller; this machine has 3.11, so those rows run on Debian 13 (trixie)'s Python 3.13 in a root made
# with debootstrap from Debian's own packages (the same mirror apt uses here).
MATRIX_ALL_ROWS=(2.16 2.17 2.18 2.19 2.20 2.21)
MATRIX_TRIXIE_ROWS=" 2.20 2.21 "
# What the root holds: Python and venv; the CA bundle for pip; git for the tests that list the tree's files;
# the shellcheck package for ansible-test's shellcheck test; busybox for the unit test of the molecule kind
# scenario's stand-in NIM (as scripts/setup installs it here).
TRIXIE_PACKAGES=python3,python3-venv,ca-certificates,git,shellcheck,busybox-static
TRIXIE=$CACHE/matrix/trixie

row_in_trixie() { [[ $MATRIX_TRIXIE_ROWS == *" $1 "* ]]; }

row_check() {
  [[ " ${MATRIX_ALL_ROWS[*]} " == *" $1 "* ]] || die "unknown matrix row '$1' (rows: ${MATRIX_ALL_ROWS[*]})"
}

# The Debian mirror apt uses on this machine (deb822 .sources or a one-line sources.list entry);
# NIMGUARD_DEBIAN_MIRROR overrides it.
debian_mirror() {
  local url
  url=${NIMGUARD_DEBIAN_MIRROR:-}
  [[ -n $url ]] || url=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v -- '-security' | head -1)
  [[ -n $url ]] || url=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -1)
  echo "${url:-http://deb.debian.org/debian}"
}

_build_trixie() {
  debootstrap --variant=minbase --include="$TRIXIE_PACKAGES" trixie "$1" "$(debian_mirror)" >"$1.log" 2>&1 || {
    tail -20 "$1.log" >&2
    return 1
  }
  rm -f "$1.log" "$1"/var/cache/apt/archives/*.deb
}

# The Debian 13 root, built once (about a minute) and kept under $CACHE/matrix; rebuilt when its packages change.
trixie_root() {
  ((EUID == 0)) || die "the ansible-core ${MATRIX_TRIXIE_ROWS# } rows run in a Debian 13 root: debootstrap and chroot need root"
  command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/setup installs it)"
  build_part "Debian 13 root for Python 3.13 ($TRIXIE_PACKAGES)" "trixie-minbase-$TRIXIE_PACKAGES" "$TRIXIE" _build_trixie
}

# in_trixie CMD...: run CMD in the Debian 13 root, in the current directory, as root. The checkout (and its
# git folder), $CACHE (venvs, cluster binaries), the cluster's state folder and /tmp appear at the same
# paths, and the host's DNS, CA bundle and pip settings are used: the local cluster is reached on loopback
# and PyPI as on the host. The mounts live in a mount namespace of their own and go when CMD ends.
in_trixie() {
  local git_dir
  git_dir=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null) || git_dir=
  # shellcheck disable=SC2016  # expanded by the inner shell
  unshare --mount --propagation private -- bash -euc '
    r=$1 cwd=$2; shift 2
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount --bind /tmp "$r/tmp"
    while [[ $1 != -- ]]; do
      if [[ -d $1 ]]; then mkdir -p "$r$1"; mount --bind "$1" "$r$1"
      elif [[ -f $1 ]]; then mkdir -p "$(dirname "$r$1")"; touch "$r$1"; mount --bind "$1" "$r$1"; fi
      shift
    done
    shift
    exec chroot "$r" /bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
  ' bash "$TRIXIE" "$PWD" "$ROOT" ${git_dir:+"$git_dir"} "$CACHE" "$STATE" \
    /etc/resolv.conf /etc/hosts /etc/ssl/certs/ca-certificates.crt /etc/pip.conf ${PIP_FIND_LINKS:+"$PIP_FIND_LINKS"} -- \
    env HOME=/root LANG=C.UTF-8 NIMGUARD_CACHE="$CACHE" NIMGUARD_STATE="$STATE" "$@"
}

# The Python a row runs on: this machine's, or Debian 13's in the root.
# shellcheck disable=SC2153  # PYTHON: common.sh
_row_python() { if row_in_trixie "$1"; then echo /usr/bin/python3; else command -v "$PYTHON"; fi; }

# _row_exec ROW CMD...: CMD on the row's side of the machine (here, or in the Debian 13 root).
_row_exec() {
  local row=$1; shift
  if row_in_trixie "$row"; then in_trixie "$@"; else "$@"; fi
}

_row_requirements() { echo "$MATRIX_DIR/requirements.txt"; }
_row_constraints() { echo "$MATRIX_DIR/constraints-$1.txt"; }

# row_venv ROW: make (once) and print the row's virtual environment, $CACHE/matrix/venv-ROW-<hash of the
# requirements, the row's constraints and the Python>; it is made where it runs (in the root for the
# trixie rows, whose Python only exists there) and found at the same path on both sides.
row_venv() {
  local row=$1 python key dir lock
  row_check "$row"
  ! row_in_trixie "$row" || trixie_root
  local constraints
  constraints=$(_row_constraints "$row")
  [[ -f $constraints ]] || die "no $constraints: make it with \`scripts/setup lock-matrix $row\`"
  python=$(_row_python "$row")
  key=$( { cat "$ROOT/requirements.txt" "$(_row_requirements)" "$constraints"
    _row_exec "$row" "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)
  dir=$CACHE/matrix/venv-$row-$key
  mkdir -p "$CACHE/matrix"
  exec {lock}>"$dir.lock"
  flock "$lock"
  if [[ ! -f $dir/.complete ]]; then
    log "  creating $dir (ansible-core $row, $(_row_exec "$row" "$python" -V 2>&1))"
    rm -rf "$dir"
    if ! _row_exec "$row" "$python" -m venv "$dir" || ! _row_exec "$row" "$dir/bin/python" -m pip install -q \
      --disable-pip-version-check -r "$(_row_requirements)" -c "$constraints"; then
      die "installing the ansible-core $row venv failed"
    fi
    touch "$dir/.complete"
  fi
  exec {lock}>&-
  echo "$dir"
}

# row_run ROW CMD...: CMD with the row's venv first on PATH (as after `activate`), in the root for the
# trixie rows, where PATH is the venv's, the cluster binaries' and Debian's.
row_run() {
  local row=$1 venv; shift
  venv=$(row_venv "$row") || return 1
  if row_in_trixie "$row"; then
    in_trixie env VIRTUAL_ENV="$venv" PATH="$venv/bin:$K8S_BIN:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin" "$@"
  else
    env VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$@"
  fi
}

# matrix_lock ROW: resolve the matrix requirements with the newest ansible-core ROW.x on the row's Python
# and write tests/matrix/constraints-ROW.txt (`scripts/setup lock-matrix ROW...`).
matrix_lock() {
  local row=$1 python tmp out
  row_check "$row"
  ! row_in_trixie "$row" || trixie_root
  python=$(_row_python "$row")
  tmp=$(mktemp -d)
  out=$(_row_constraints "$row")
  if ! _row_exec "$row" "$python" -m venv "$tmp/venv" || ! _row_exec "$row" "$tmp/venv/bin/python" -m pip install -q \
    --disable-pip-version-check -r "$(_row_requirements)" "ansible-core==$row.*"; then
    rm -rf "$tmp"
    die "resolving the ansible-core $row row failed"
  fi
  {
    echo "# The ansible-core $row row of scripts/test matrix: tests/matrix/requirements.txt resolved on"
    echo "# $(_row_exec "$row" "$python" -V 2>&1). Generated by \`scripts/setup lock-matrix $row\`; do not edit by hand."
    _row_exec "$row" "$tmp/venv/bin/python" -m pip freeze --disable-pip-version-check
  } > "$out"
  rm -rf "$tmp"
  log "  wrote $out ($(grep '^ansible-core==' "$out"))"
}
