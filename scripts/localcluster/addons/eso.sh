# Local-cluster add-on: External Secrets Operator, the real controller, built from the Go module proxy.
# Sourced by scripts/cluster (which defines start, wait_for, timed, k, $STATE, $LOGS, $PIDS).
# shellcheck shell=bash disable=SC2034  # eso_COMPONENTS is read by scripts/cluster
#
# ESO_VERSION is set in scripts/lib/common.sh. The CRDs come from the same module (deploy/crds/bundle.yaml,
# copied next to the binary so `up` needs no module cache).

ESO_BIN=$CACHE/bin/eso-$ESO_VERSION
ESO_MODULE=$ROOT/scripts/localcluster/eso
eso_COMPONENTS=(external-secrets)

# The module's source is copied into the build folder with our provider and generator lists
# (scripts/localcluster/eso/trim) in place of its own, and built through a replace directive: go build
# cannot overlay files of the module cache. The copy is deleted once built.
_build_eso() {
  local out=$1 dir src=$1/src mod=$1/mod
  dir=$(go_module github.com/external-secrets/external-secrets Dir "$ESO_MODULE") &&
    cp -r "$dir" "$src" && chmod -R u+w "$src" &&
    cp "$ESO_MODULE/trim/providers.go" "$src/pkg/provider/register/register.go" &&
    cp "$ESO_MODULE/trim/generators.go" "$src/pkg/generator/register/register.go" &&
    mkdir "$mod" && cp "$ESO_MODULE/go.mod" "$ESO_MODULE/go.sum" "$mod/" &&
    (cd "$mod" && go mod edit -replace "github.com/external-secrets/external-secrets=$src" &&
      go build -trimpath "$LEAN_GCFLAGS" -ldflags "-s -w" -o "$out/external-secrets" \
        github.com/external-secrets/external-secrets) &&
    cp "$dir/deploy/crds/bundle.yaml" "$out/crds.yaml" &&
    rm -rf "$src" "$mod"
}

eso_build() {
  build_part "external-secrets $ESO_VERSION" "$ESO_VERSION-$(_key "$ESO_MODULE"/go.{mod,sum} "$ESO_MODULE"/trim/*.go)" \
    "$ESO_BIN" _build_eso
}

_eso_crds_established() {  # every CRD of the bundle (20 in v0.16.2) Established
  local want have
  want=$(grep -c '^kind: CustomResourceDefinition' "$ESO_BIN/crds.yaml")
  have=$(k get crd -o jsonpath='{range .items[*]}{.spec.group}={.status.conditions[?(@.type=="Established")].status}{"\n"}{end}' \
    | grep -c 'external-secrets\.io=True$')
  ((have >= want))
}

# Healthy = the controller reconciles: a probe SecretStore on the built-in fake provider becomes Ready.
_eso_probe_ready() {
  [[ $(k get secretstores.external-secrets.io nimguard-eso-probe -n kube-system \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

eso_up() {
  timed "external-secrets CRDs (server-side apply)" \
    k apply --server-side --force-conflicts --field-manager nimguard-cluster -f "$ESO_BIN/crds.yaml" -o name >/dev/null
  timed "external-secrets CRDs Established" wait_for "external-secrets CRDs Established" 60 kube-apiserver \
    _eso_crds_established
  # Its own identity (system:masters stands in for the ClusterRole its Helm chart grants), so the audit
  # log tells the operator's writes from the collection's.
  _cert external-secrets "/O=system:masters/CN=external-secrets"
  _kubeconfig "$STATE/external-secrets.kubeconfig" external-secrets
  local port; port=$(free_port)
  echo "$port" > "$STATE/eso-metrics.port"
  log "starting external-secrets $ESO_VERSION (metrics on 127.0.0.1:$port)"
  # ESO has no --kubeconfig flag: controller-runtime reads KUBECONFIG. The AWS endpoints point at a
  # closed loopback port, so AWS stores fail fast with "connection refused" instead of reaching out.
  start external-secrets env KUBECONFIG="$STATE/external-secrets.kubeconfig" AWS_EC2_METADATA_DISABLED=true \
    AWS_STS_ENDPOINT=http://127.0.0.1:9 AWS_SECRETSMANAGER_ENDPOINT=http://127.0.0.1:9 \
    AWS_SSM_ENDPOINT=http://127.0.0.1:9 \
    "$ESO_BIN/external-secrets" --enable-leader-election=false --metrics-addr "127.0.0.1:$port" \
    --zap-time-encoding iso8601
  timed "external-secrets metrics" wait_for "external-secrets serving metrics" 60 external-secrets \
    curl -sf "http://127.0.0.1:$port/metrics"
  k apply --server-side --field-manager nimguard-cluster -o name -f - >/dev/null <<'EOF'
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: nimguard-eso-probe, namespace: kube-system}
spec:
  provider:
    fake:
      data: []
EOF
  timed "external-secrets reconciling (probe SecretStore Ready)" \
    wait_for "external-secrets reconciling a SecretStore" 60 external-secrets _eso_probe_ready
  k delete secretstores.external-secrets.io nimguard-eso-probe -n kube-system --wait=false >/dev/null
}

eso_down() { rm -f "$STATE/eso-metrics.port"; }

eso_env() {
  echo "export NIMGUARD_ESO_VERSION=$ESO_VERSION"
  echo "export NIMGUARD_ESO_CRDS=$ESO_BIN/crds.yaml"  # the operator's CRD bundle: a real manifest for install tests
  [[ -f $STATE/eso-metrics.port ]] && echo "export NIMGUARD_ESO_METRICS=http://127.0.0.1:$(cat "$STATE/eso-metrics.port")/metrics"
  return 0
}
