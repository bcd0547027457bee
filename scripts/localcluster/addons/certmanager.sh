# Local-cluster add-on: cert-manager's controller and pebble, a real ACME server (tests only).
# Sourced by scripts/cluster, which provides start, wait_for, timed, log, die, k, _cert, _kubeconfig.
# shellcheck shell=bash disable=SC2034  # CERTMANAGER_* and certmanager_COMPONENTS are read by scripts/cluster
#
# cert-manager v1.11.5 is the last release whose controller is a package of the root module (later
# ones live in submodules the Go module proxy refuses); its API, cert-manager.io/v1, is what current
# releases serve. The webhook and cainjector are not run: nothing here depends on them.
# pebble validates nothing (PEBBLE_VA_ALWAYS_VALID=1); cert-manager's own http01 self-check goes
# through http01-proxy.py (HTTP_PROXY), a stand-in for the ingress controller this cluster lacks.

# CERTMANAGER_VERSION is in scripts/lib/common.sh: the helm-install tests' chart comes from the same module.
PEBBLE_VERSION=v2.10.1
CERTMANAGER_MODULE=$ROOT/scripts/localcluster/certmanager
CERTMANAGER_BIN=$CACHE/bin/cert-manager-$CERTMANAGER_VERSION
PEBBLE_BIN=$CACHE/bin/pebble-$PEBBLE_VERSION
CERTMANAGER_NAMESPACE=cert-manager  # --cluster-resource-namespace: where CA issuers find their Secrets
certmanager_COMPONENTS=(certmanager-http01-proxy cert-manager pebble)

_build_certmanager() {  # the controller, and the CRDs from the same module next to it (`up` needs no module cache)
  local v=github.com/cert-manager/cert-manager/pkg/util dir f
  cd "$CERTMANAGER_MODULE" &&
    go build -trimpath "$LEAN_GCFLAGS" -ldflags "-s -w -X $v.AppVersion=$CERTMANAGER_VERSION -X $v.AppGitState=clean" \
      -o "$1/cert-manager-controller" github.com/cert-manager/cert-manager/cmd/controller &&
    dir=$(go_module github.com/cert-manager/cert-manager Dir "$CERTMANAGER_MODULE") || return 1
  # The module's CRDs are Helm templates: fill the labels, drop the template-only lines; the files have no
  # document markers of their own.
  for f in "$dir"/deploy/crds/crd-*.yaml; do
    echo "---"
    sed -e "s/'{{ template \"cert-manager.name\" . }}'/cert-manager/" -e "s/'{{ .Release.Name }}'/cert-manager/" \
      -e '/{{-/d' "$f"
  done > "$1/crds.yaml"
}

certmanager_build() {
  # "crds1": the layout of the output folder, part of the key so older caches without crds.yaml rebuild.
  build_part "cert-manager controller $CERTMANAGER_VERSION" \
    "$CERTMANAGER_VERSION-crds1-$(_key "$CERTMANAGER_MODULE"/go.{mod,sum})" "$CERTMANAGER_BIN" _build_certmanager
  build_part "pebble $PEBBLE_VERSION" "$PEBBLE_VERSION" "$PEBBLE_BIN" \
    _build_goinstall "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"
}

_certmanager_pebble() {
  # Its TLS certificate comes from the cluster CA, so the ACME issuer's caBundle is that CA.
  _cert pebble "/CN=pebble" "IP:127.0.0.1,DNS:localhost"
  local port mport
  port=$(free_port) mport=$(free_port)
  cat > "$STATE/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$port", "managementListenAddress": "127.0.0.1:$mport",
  "certificate": "$PKI/pebble.crt", "privateKey": "$PKI/pebble.key", "httpPort": 5002, "tlsPort": 5001,
  "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "profiles": {"default": {"description": "default", "validityPeriod": 7776000}}}}
EOF
  echo "$port" > "$STATE/pebble.port"
  echo "$mport" > "$STATE/pebble-management.port"
  # No random sleeps before validations and no rejected nonces: deterministic tests.
  start pebble env PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    "$PEBBLE_BIN/pebble" -config "$STATE/pebble.json"
  timed "pebble ACME directory" wait_for "pebble" 30 pebble \
    curl -sf --cacert "$PKI/ca.crt" "https://127.0.0.1:$port/dir"
}

certmanager_up() {
  # Its own identity (system:masters; "system:" so the tests' audit filters treat it like the cluster's
  # own controllers) and kubeconfig.
  _cert cert-manager "/O=system:masters/CN=system:cert-manager"
  _kubeconfig "$STATE/cert-manager.kubeconfig" cert-manager
  timed "cert-manager CRDs (server-side apply)" \
    k apply --server-side --field-manager nimguard-cluster -f "$CERTMANAGER_BIN/crds.yaml" -o name >/dev/null
  timed "cert-manager CRDs Established" k wait --for condition=Established --timeout 60s \
    crd/certificates.cert-manager.io crd/certificaterequests.cert-manager.io crd/issuers.cert-manager.io \
    crd/clusterissuers.cert-manager.io crd/orders.acme.cert-manager.io crd/challenges.acme.cert-manager.io >/dev/null
  k create namespace "$CERTMANAGER_NAMESPACE" --dry-run=client -o yaml \
    | k apply --server-side --field-manager nimguard-cluster -f - -o name >/dev/null
  _certmanager_pebble
  rm -f "$STATE/http01-proxy.port"
  start certmanager-http01-proxy python3 "$CERTMANAGER_MODULE/http01-proxy.py" "$PKI" "$API_PORT" \
    "$STATE/http01-proxy.port"
  timed "http01 proxy" wait_for "http01 proxy" 20 certmanager-http01-proxy test -s "$STATE/http01-proxy.port"
  log "starting cert-manager controller $CERTMANAGER_VERSION"
  # Metrics on a free port: several clusters share this machine. NO_PROXY keeps the API server and
  # pebble direct (Go never proxies loopback anyway); only the http01 self-check uses the proxy.
  start cert-manager env HTTP_PROXY="http://127.0.0.1:$(cat "$STATE/http01-proxy.port")" NO_PROXY=127.0.0.1,localhost \
    "$CERTMANAGER_BIN/cert-manager-controller" --kubeconfig "$STATE/cert-manager.kubeconfig" \
    --leader-elect=false --cluster-resource-namespace "$CERTMANAGER_NAMESPACE" \
    --metrics-listen-address 127.0.0.1:0 --v 2
  # v1.11 has no health endpoint. Healthy = it reconciles: a probe self-signed ClusterIssuer becomes Ready.
  k apply --server-side --field-manager nimguard-cluster -o name -f - >/dev/null <<'EOF'
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: nimguard-certmanager-probe}
spec: {selfSigned: {}}
EOF
  timed "cert-manager reconciling (probe ClusterIssuer Ready)" wait_for "cert-manager reconciling a ClusterIssuer" 60 \
    cert-manager _certmanager_probe_ready
  k delete clusterissuer nimguard-certmanager-probe --wait=false >/dev/null
}

_certmanager_probe_ready() {
  [[ $(k get clusterissuer nimguard-certmanager-probe \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

certmanager_down() {  # scripts/cluster stops the processes; what tests read must not outlive them
  rm -f "$STATE/pebble.port" "$STATE/pebble-management.port" "$STATE/http01-proxy.port"
}

certmanager_env() {  # only while the add-on runs: the tests skip on its absence
  running cert-manager && running pebble || return 0
  cat <<EOF
export NIMGUARD_CERT_MANAGER_VERSION=$CERTMANAGER_VERSION
export NIMGUARD_PEBBLE_URL=https://127.0.0.1:$(cat "$STATE/pebble.port")/dir
export NIMGUARD_PEBBLE_MANAGEMENT_URL=https://127.0.0.1:$(cat "$STATE/pebble-management.port")
export NIMGUARD_PEBBLE_CA=$PKI/ca.crt
EOF
}
