# Builds the local cluster's binaries from the Go module proxy into $CACHE/bin/<part>-<version>/.
# A part is rebuilt only when its key (version + go.mod/go.sum hash) changes.
# shellcheck shell=bash

_key() { cat "$@" 2>/dev/null | sha256sum | cut -c1-12; }

# What build_part does with each part (scripts/cluster build --check | --list):
#   build  build it unless built (the default)
#   check  the cold-cache check: run its recipe as on a new machine, with a module cache and build cache of its
#          own, both empty, and `go -n`: every package is loaded, so every module it builds from is downloaded,
#          and nothing is compiled. The recipe's file steps (CRDs, charts, stages copied out of a module) run for
#          real, into a folder thrown away with the caches. A recipe that reads what it did not download itself
#          (`go list -m` of a module not in the cache, a file of another part) fails here, not on a new machine.
#          Mostly disk work (unpacking modules, 2.7 GB for Trivy alone): NIMGUARD_CHECK_JOBS parts at a time
#          (default 2), then check_done reports.
#   list   print its name
BUILD_MODE=build
# Name prefixes of the parts to act on (scripts/cluster build PART...); empty: every part asked for.
BUILD_ONLY=()

# build_part NAME KEY OUTDIR COMMAND...: skip when OUTDIR/.key matches.
build_part() {
  local name=$1 key=$2 out=$3 lock; shift 3
  _wanted "$name" || return 0
  case $BUILD_MODE in
    list) echo "$name"; return 0 ;;
    check)
      : "${_CHECK_FAILED:=$(mktemp)}"
      _check_part "$name" "$@" || echo "$name" >> "$_CHECK_FAILED" &
      while (($(jobs -rp | wc -l) >= ${NIMGUARD_CHECK_JOBS:-2})); do wait -n || true; done
      return 0 ;;
  esac
  # Sessions sharing $CACHE build a part one at a time: a second one waits, then finds it built.
  mkdir -p "$(dirname "$out")"
  exec {lock}>"$out.lock"
  flock "$lock"
  if [[ -f $out/.key && $(cat "$out/.key") == "$key" ]]; then
    exec {lock}>&-
    return 0
  fi
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  log "building $name (cold: minutes on 2 cores; output below every 30s)"
  local t0=$SECONDS
  ( "$@" "$out.tmp" ) &
  _progress "$!" "building $name" || die "building $name failed"
  echo "$key" > "$out.tmp/.key"
  rm -rf "$out" && mv "$out.tmp" "$out"
  exec {lock}>&-
  log "built $name in $((SECONDS - t0))s"
}

_wanted() {  # _wanted NAME: BUILD_ONLY is empty or NAME starts with one of its prefixes
  local p
  ((${#BUILD_ONLY[@]})) || return 0
  for p in "${BUILD_ONLY[@]}"; do [[ $1 == "$p"* ]] && return 0; done
  return 1
}

_progress() {  # _progress PID WHAT: wait for PID, a line every 30 s; its exit status
  local t0=$SECONDS n=0
  while kill -0 "$1" 2>/dev/null; do  # 1 s steps: a short job does not wait out a 30 s sleep
    sleep 1
    ((++n % 30)) || log "  still $2 ($((SECONDS - t0))s)"
  done
  wait "$1"
}

# The modules come from this machine's module downloads when they are there (a file:// proxy: fast, no
# network), else from the configured proxy, as on a new machine.
_check_goproxy() {
  local dl
  dl=$(go env GOMODCACHE)/cache/download
  if [[ -d $dl ]]; then echo "file://$dl,$(go env GOPROXY)"; else go env GOPROXY; fi
}

_check_part() {  # _check_part NAME COMMAND...: see BUILD_MODE
  local name=$1 tmp rc=0 t0=$SECONDS mb; shift
  tmp=$(mktemp -d) && mkdir "$tmp/out" || return 1
  : "${CHECK_GOPROXY:=$(_check_goproxy)}"
  log "checking $name on empty caches"
  # -modcacherw: the module cache can be deleted without `go clean -modcache`. The recipe's output (go -n
  # prints every compile command) goes to a log, shown when it fails.
  ( export GOMODCACHE=$tmp/mod GOCACHE=$tmp/gocache GOFLAGS="$GOFLAGS -n -modcacherw" GOPROXY=$CHECK_GOPROXY
    "$@" "$tmp/out" ) > "$tmp/log" 2>&1 &
  _progress "$!" "checking $name" || rc=$?
  mb=$(du -sm "$tmp/mod" 2>/dev/null | cut -f1)
  if ((rc)); then
    log "$name: its recipe fails on empty caches (exit $rc); its last lines:"
    tail -20 "$tmp/log" >&2
  else
    log "checked $name cold in $((SECONDS - t0))s (${mb:-0} MB of modules)"
  fi
  rm -rf "$tmp"
  return "$rc"
}

check_done() {  # after the build_part calls of a check: wait for them, fail naming the parts that failed
  wait
  [[ -n ${_CHECK_FAILED:-} ]] || return 0
  local failed
  failed=$(paste -sd, "$_CHECK_FAILED")
  rm -f "$_CHECK_FAILED"
  [[ -z $failed ]] || die "the cold-cache check failed for: $failed"
}

_build_k8s() {
  local out=$1 minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  cd "$ROOT/scripts/localcluster/k8s" &&
    go build -trimpath -ldflags "$ld" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
}

_build_etcd() {
  cd "$ROOT/scripts/localcluster/etcd" &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3
}

# Add-ons and test tools compile without inlining, for code that idles or runs briefly in the tests: a
# quarter less CPU alone (crictl from empty caches: 140 s against 187 s; -N saves nothing more), 5 to 13 %
# less wall time in a cold cluster build (they no longer share std and common packages with the k8s
# build). The control plane (k8s, etcd, kube-proxy), which every test waits on, stays fully optimised.
LEAN_GCFLAGS=-gcflags=all=-l

_build_goinstall() {  # _build_goinstall PKG@VERSION [env...] OUT: an add-on or test tool
  local pkg=$1; shift
  local out=${!#}
  env GOBIN="$out" "${@:1:$#-1}" go install -trimpath "$LEAN_GCFLAGS" -ldflags "-s -w" "$pkg"
}

K8S_BIN=$CACHE/bin/k8s-$K8S_VERSION
ETCD_BIN=$CACHE/bin/etcd-$ETCD_VERSION
KUBE_SCORE_BIN=$CACHE/bin/kube-score-$KUBE_SCORE_VERSION
TRIVY_BIN=$CACHE/bin/trivy-$TRIVY_VERSION
REGISTRY_BIN=$CACHE/bin/registry-$REGISTRY_VERSION
HELM_BIN=$CACHE/bin/helm-$HELM_VERSION
CERTMANAGER_CHART=$CACHE/bin/cert-manager-chart-$CERTMANAGER_VERSION/cert-manager
ESO_CHART=$CACHE/bin/eso-chart-$ESO_VERSION/external-secrets
GPU_OPERATOR_CHART=$CACHE/bin/gpu-operator-chart-$GPU_OPERATOR_MODULE_VERSION/gpu-operator

# What the cluster runs (scripts/cluster up builds these and the add-ons' parts).
build_cluster() {
  command -v go >/dev/null || die "go is not installed (scripts/setup installs it)"
  build_part "kubernetes $K8S_VERSION (apiserver, controller-manager, scheduler, kubectl, kubelet)" \
    "$K8S_VERSION-$(_key "$ROOT"/scripts/localcluster/k8s/go.{mod,sum})" "$K8S_BIN" _build_k8s
  build_part "etcd $ETCD_VERSION" "$ETCD_VERSION-$(_key "$ROOT"/scripts/localcluster/etcd/go.{mod,sum})" \
    "$ETCD_BIN" _build_etcd
}

# build_tools helm|kube-score|trivy|registry...: the test tools the tests run beside the cluster. A test calls it
# with the one it uses: it returns at once when built, and waits only for that one when another process
# is building it.
build_tools() {
  command -v go >/dev/null || die "go is not installed (scripts/setup installs it)"
  local t
  for t in "$@"; do
    case $t in
      helm) build_helm ;;
      kube-score) build_part "kube-score $KUBE_SCORE_VERSION" "$KUBE_SCORE_VERSION" "$KUBE_SCORE_BIN" \
        _build_goinstall "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" ;;
      trivy) build_trivy ;;
      # The distribution project's registry: a loopback OCI registry the real node pulls from by digest.
      registry) build_part "registry $REGISTRY_VERSION" "$REGISTRY_VERSION" "$REGISTRY_BIN" \
        _build_goinstall "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" ;;
      *) die "build_tools: unknown tool '$t' (helm, kube-score, trivy, registry)" ;;
    esac
  done
}

# Trivy (image scan gate, `trivy config` static checks): about 6.5 min cold and 340 MB. Its
# v0.74 sources need encoding/json/v2, which Go only offers under GOEXPERIMENT=jsonv2.
build_trivy() {
  build_part "trivy $TRIVY_VERSION" "$TRIVY_VERSION" "$TRIVY_BIN" \
    _build_goinstall "github.com/aquasecurity/trivy/cmd/trivy@$TRIVY_VERSION" GOEXPERIMENT=jsonv2
}

# helm 3 and the cert-manager, External Secrets and GPU Operator charts: the cert_manager, external_secrets
# and gpu_runtime roles' helm installs, tested against a cluster of their own
# (tests/integration/test_helm_install.py). No chart repository is reachable from these machines.
build_helm() {
  build_part "helm $HELM_VERSION" "$HELM_VERSION" "$HELM_BIN" _build_helm
  # "chart1": the layout of the output folder (Chart.yaml and templates/crds.yaml written here).
  build_part "cert-manager chart $CERTMANAGER_VERSION" "$CERTMANAGER_VERSION-chart1" "${CERTMANAGER_CHART%/*}" \
    _build_certmanager_chart
  build_part "external-secrets chart $ESO_VERSION" "$ESO_VERSION-chart1" "${ESO_CHART%/*}" _build_eso_chart
  build_part "gpu-operator chart $GPU_OPERATOR_MODULE_VERSION" "$GPU_OPERATOR_MODULE_VERSION" \
    "${GPU_OPERATOR_CHART%/*}" _build_gpu_operator_chart
}

# go_module MODULE[@VERSION] FIELD [DIR]: fetch MODULE into the module cache and print FIELD of
# `go mod download -json` (Dir, GoMod). Without @VERSION, the version DIR's go.mod requires. Every recipe
# that reads a module's files asks here: `go list -m -f {{.Dir}}` prints nothing for a module that is not
# downloaded yet, so a recipe built on it works only on a warm cache (the cold External Secrets build broke
# that way). `scripts/cluster build --check` runs every recipe on empty caches (tests/packaging/test_localcluster.py).
go_module() {
  local json
  json=$(cd "${3:-/}" && go mod download -json "$1") || { log "go mod download $1 failed: $json"; return 1; }
  python3 -c '
import json, os, sys
m = json.loads(sys.argv[1])
v = m.get(sys.argv[2])
if m.get("Error") or not v or not os.path.exists(v):
    sys.exit("go mod download %s: no %s (%s)" % (sys.argv[3], sys.argv[2], m.get("Error", "not downloaded")))
print(v)' "$json" "$2" "$1"
}

# The version ldflags of helm's Makefile: kubernetes.core.helm parses `helm version`, and `helm template`
# and `helm lint` assume (without a cluster) the Kubernetes minor of helm's client-go.
_build_helm() {
  local m=helm.sh/helm/v3 gomod minor p ld
  gomod=$(go_module "$m@$HELM_VERSION" GoMod) || return 1
  minor=$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$gomod")
  [[ -n $minor ]] || { log "no k8s.io/client-go in $gomod"; return 1; }
  ld="-s -w -X $m/internal/version.version=$HELM_VERSION -X $m/internal/version.gitTreeState=clean"
  for p in pkg/lint/rules pkg/chartutil; do
    ld+=" -X $m/$p.k8sVersionMajor=1 -X $m/$p.k8sVersionMinor=$minor"
  done
  env GOBIN="$1" CGO_ENABLED=0 go install -trimpath "$LEAN_GCFLAGS" -ldflags "$ld" "$m/cmd/helm@$HELM_VERSION"
}

# The chart as cert-manager's release tooling makes it from deploy/charts/cert-manager of the module: a
# Chart.yaml in place of Chart.template.yaml (whose version fields the release tool fills), and
# templates/crds.yaml from deploy/crds (Helm templates already), rendered when installCRDs is true. Files
# are copied, nothing is built.
_build_certmanager_chart() {
  local dir chart=$1/cert-manager f
  dir=$(go_module "github.com/cert-manager/cert-manager@$CERTMANAGER_VERSION" Dir) || return 1
  cp -r "$dir/deploy/charts/cert-manager" "$chart" && chmod -R u+w "$chart" || return 1
  rm -f "$chart"/Chart.template.yaml "$chart"/README.template.md "$chart"/signkey_annotation.txt
  # The templates read .Chart.Name (names, the helm.sh/chart label), .Chart.Version (that label) and
  # .Chart.AppVersion (app.kubernetes.io/version, the default image tags).
  cat > "$chart/Chart.yaml" <<EOF
apiVersion: v2
name: cert-manager
version: $CERTMANAGER_VERSION
appVersion: $CERTMANAGER_VERSION
kubeVersion: ">= 1.21.0-0"
description: cert-manager $CERTMANAGER_VERSION, from deploy/charts/cert-manager of its Go module (nimguard tests)
home: https://github.com/cert-manager/cert-manager
sources:
  - https://github.com/cert-manager/cert-manager
EOF
  {
    echo '{{- if .Values.installCRDs }}'
    for f in "$dir"/deploy/crds/crd-*.yaml; do
      echo "---"
      cat "$f"
    done
    echo '{{- end }}'
  } > "$chart/templates/crds.yaml"
}

# The chart as ESO's release tooling makes it from deploy/charts/external-secrets of the module: the module's
# Chart.yaml names a version behind the tag and a bitwarden-sdk-server dependency from an OCI registry (off
# by default, but helm refuses a chart whose dependencies are not vendored), so ours has the tag's versions
# and no dependency; templates/crds.yaml holds deploy/crds/bundle.yaml (no conversion webhooks since
# v0.16) behind installCRDs, as hack/helm.generate.sh does. Files are copied, nothing is built.
_build_eso_chart() {
  local dir chart=$1/external-secrets
  dir=$(go_module "github.com/external-secrets/external-secrets@$ESO_VERSION" Dir) || return 1
  cp -r "$dir/deploy/charts/external-secrets" "$chart" && chmod -R u+w "$chart" || return 1
  rm -rf "$chart"/Chart.lock "$chart"/templates/crds "$chart"/tests "$chart"/ci
  cat > "$chart/Chart.yaml" <<EOF
apiVersion: v2
name: external-secrets
type: application
version: "${ESO_VERSION#v}"
appVersion: "$ESO_VERSION"
kubeVersion: ">= 1.19.0-0"
description: External Secrets Operator $ESO_VERSION, from deploy/charts/external-secrets of its Go module (nimguard tests)
home: https://github.com/external-secrets/external-secrets
EOF
  {
    echo '{{- if .Values.installCRDs }}'
    cat "$dir/deploy/crds/bundle.yaml"
    echo '{{- end }}'
  } > "$chart/templates/crds.yaml"
}

# The GPU Operator's chart is complete in its module (Chart.yaml, CRDs, node-feature-discovery vendored in
# charts/): copied as it is.
_build_gpu_operator_chart() {
  local dir
  dir=$(go_module "github.com/NVIDIA/gpu-operator@$GPU_OPERATOR_MODULE_VERSION" Dir) || return 1
  cp -r "$dir/deployments/gpu-operator" "$1/gpu-operator" && chmod -R u+w "$1/gpu-operator"
}
