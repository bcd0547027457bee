# Local-cluster add-on: KWOK and its fake nodes, two plain and two advertising 4 x nvidia.com/gpu
# (scripts/localcluster/manifests/nodes.yaml). Most tests schedule onto them: pods there only look Running,
# nothing is pulled or started. The site run has no use for them (its demo runs on the real node).
# Sourced by scripts/cluster (which defines start, wait_for, timed, k, _cert, _kubeconfig, $STATE, $MANIFESTS).
# shellcheck shell=bash disable=SC2034  # kwok_COMPONENTS is read by scripts/cluster

KWOK_VERSION=v0.8.0
KWOK_BIN=$CACHE/bin/kwok-$KWOK_VERSION
kwok_COMPONENTS=(kwok)

# KWOK ships no built-in stages: the ones in its module (kustomize/stage) are copied next to the binary,
# so `up` reads no module cache. The heartbeat stage renews node Leases (--node-lease-duration-seconds);
# without it the node controller marks the fake nodes Unknown after the grace period and their pods
# NotReady, and KWOK never readies them again.
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)

_build_kwok() {
  local dir f
  _build_goinstall "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$1" &&
    dir=$(go_module "sigs.k8s.io/kwok@$KWOK_VERSION" Dir) || return 1
  mkdir -p "$1/stages"
  for f in "${KWOK_STAGES[@]}"; do cp "$dir/kustomize/stage/$f" "$1/stages/${f//\//-}" || return 1; done
}

kwok_build() {
  # "stages1": the layout of the output folder (the stages beside the binary).
  build_part "kwok $KWOK_VERSION" "$KWOK_VERSION-stages1" "$KWOK_BIN" _build_kwok
}

_kwok_stages() {
  local f files=()
  for f in "${KWOK_STAGES[@]}"; do files+=("$KWOK_BIN/stages/${f//\//-}"); done
  local IFS=,
  echo "${files[*]}"
}

_kwok_nodes_ready() {  # 4 nodes Ready and untainted: the not-ready taint new nodes get is gone, pods schedule
  [[ $(k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}{"\n"}{end}' \
    | grep -cx 'True/') -ge 4 ]]
}

kwok_up() {
  # system:masters: it writes the status of every node and pod it fakes.
  _cert kwok "/O=system:masters/CN=kwok"
  _kubeconfig "$STATE/kwok.kubeconfig" kwok
  log "starting kwok $KWOK_VERSION"
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$STATE/kwok.kubeconfig" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --config "$(_kwok_stages)" --cidr 10.244.0.0/24 --node-ip 127.0.0.1 --node-lease-duration-seconds 40
  timed "fake nodes" k apply --server-side --field-manager nimguard-cluster -f "$MANIFESTS/nodes.yaml" -o name
  timed "4 nodes Ready, untainted (KWOK, node lifecycle)" wait_for "4 Ready nodes" 60 kwok _kwok_nodes_ready
}
