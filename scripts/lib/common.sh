# Shared settings for the local-cluster scripts. Sourced, never run.
# shellcheck shell=bash disable=SC2034  # settings: used by the scripts that source this file
# Versions are the cache keys: bump one and the next `scripts/cluster build` rebuilds only that part.
K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.6
KUBE_SCORE_VERSION=v1.20.0
TRIVY_VERSION=v0.74.0
# The local OCI registry that proves deploy-by-digest end to end (github.com/distribution/distribution/v3).
REGISTRY_VERSION=v3.1.2
# The certmanager add-on's controller and the chart that tests the cert_manager role's helm install
# (scripts/localcluster/build.sh, both from the module github.com/cert-manager/cert-manager at this version).
CERTMANAGER_VERSION=v1.11.5
# The eso add-on's controller and the chart that tests the external_secrets role's helm install (the module
# github.com/external-secrets/external-secrets): v0.16.2 is the newest release that is one Go module (later
# ones are split into submodules the proxy refuses); it serves external-secrets.io/v1 like current releases.
ESO_VERSION=v0.16.2
HELM_VERSION=v3.19.5
# The GPU Operator chart that tests the gpu_runtime role's helm install: deployments/gpu-operator of the
# module github.com/NVIDIA/gpu-operator. The proxy refuses its release tags (v25.x, not Go module versions)
# and serves main's commits: this one is of 2025-09-17, between v25.3 and v25.10.
GPU_OPERATOR_MODULE_VERSION=v0.0.0-20250917190837-d73a0086a6ba
# checkov (PyPI) pins packaging and other libraries against our venv's: it gets a venv of its own.
CHECKOV_VERSION=3.3.30

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${NIMGUARD_CACHE:-$HOME/.cache/nimguard}
CHECKOV_VENV=$CACHE/checkov-$CHECKOV_VERSION
STATE=${NIMGUARD_STATE:-$CACHE/run}          # certificates, etcd data, logs, pids of the running cluster
export GOFLAGS=${GOFLAGS:--buildvcs=false}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# A loopback port nobody listens on now (parallel clusters share the machine).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Run a step and print how long it took (to 0.1 s: most cluster phases take under a second);
# CI logs read like a profile.
_now_ds() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 100000)); }  # tenths of a second
timed() {
  local what=$1; shift
  local t0; t0=$(_now_ds)
  log "$what ..."
  "$@" || die "$what failed"
  local dt=$(($(_now_ds) - t0))
  log "$what done in $((dt / 10)).$((dt % 10))s"
}

# Python side: one virtual environment per requirements set, outside git (scripts/setup makes it).
VENV=$CACHE/venv
# Ansible finds this checkout as nimguard.k8s through a per-checkout collections path outside git.
COLLECTIONS_DIR=$CACHE/collections/$(printf %s "$ROOT" | sha256sum | cut -c1-8)

link_collection() {
  mkdir -p "$COLLECTIONS_DIR/ansible_collections/nimguard"
  ln -sfn "$ROOT" "$COLLECTIONS_DIR/ansible_collections/nimguard/k8s"
  export ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS_DIR
}

# Debian packages scripts/setup installs (apt-get) when missing; extend this one list, e.g.
# APT_PACKAGES+=(jq). openssl: certificates. rsync: copies of the tree for ansible-test. git: file
# lists for sanity and shellcheck. shellcheck: used by `scripts/test shellcheck` and ansible-test.
APT_PACKAGES=(openssl rsync shellcheck git ca-certificates)
# The real node and its test images (scripts/localcluster/images.sh): containerd, runc, and a static busybox
# for the fake NIM image's shell.
APT_PACKAGES+=(containerd runc busybox-static)
# The real node's pod network (scripts/localcluster/addons/node.sh): CNI bridge, host-local and loopback
# plugins; iptables and ipset for kube-proxy and kube-router's NetworkPolicy firewall.
APT_PACKAGES+=(containernetworking-plugins iptables ipset)
# `scripts/test matrix`: the Debian 13 root whose Python 3.13 runs ansible-core 2.20 and later (scripts/lib/matrix.sh).
APT_PACKAGES+=(debootstrap)
# gpg signs the local NVIDIA Container Toolkit apt repository (scripts/localcluster/toolkit.sh).
APT_PACKAGES+=(gnupg)

# The interpreter the venv is made from (ansible-core 2.19 wants 3.11 to 3.13 on the controller).
PYTHON=${NIMGUARD_PYTHON:-python3}

# What scripts/site runs: ansible-core and the collection's requirements alone (`scripts/setup site`), and the
# local cluster with the real node, where its demo runs for real. The other add-ons are the tests' (KWOK's fake
# nodes, cert-manager, External Secrets: minutes of Go builds each on a new machine);
# tests/packaging/test_localcluster.py keeps them out of the site run. NIMGUARD_ADDONS overrides this.
SITE_VENV=$CACHE/venv-site
SITE_ADDONS=node

# Put the venv's tools (ansible-*, pytest, ...) first on PATH (scripts/site sets VENV=$SITE_VENV first).
use_venv() {
  [[ -x $VENV/bin/python ]] || die "no virtual environment at $VENV: run scripts/setup (site: scripts/setup site)"
  export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
}
