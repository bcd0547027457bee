# Add-on "node": one real node beside the KWOK nodes. Debian's containerd, runc and CNI plugins, a
# kubelet from the same k8s.io/kubernetes release as the control plane, kube-proxy (Services),
# kube-router as NetworkPolicy firewall only, and the test images' stand-in GPU device plugin (no GPU:
# it only advertises nvidia.com/gpu). Every config, state folder, socket and log is under $STATE/node;
# `down` leaves no process, mount, interface, netns, iptables chain, ipset or cgroup behind.
# Sourced by scripts/cluster (uses its start, wait_for, running, stop_group, _cert, _kubeconfig, k).
# shellcheck shell=bash disable=SC2034  # settings read by scripts/cluster

KUBE_ROUTER_VERSION=v2.1.0
CRICTL_VERSION=v1.34.0
KUBE_ROUTER_BIN=$CACHE/bin/kube-router-$KUBE_ROUTER_VERSION
CRICTL_BIN=$CACHE/bin/crictl-$CRICTL_VERSION
KUBE_PROXY_BIN=$CACHE/bin/kube-proxy-$K8S_VERSION

# Configurable; `up` fails naming the one that is taken.
NODE_NAME=${NIMGUARD_NODE_NAME:-nimguard-node}
NODE_BRIDGE=${NIMGUARD_NODE_BRIDGE:-nimguard0}
NODE_SUBNET=${NIMGUARD_NODE_SUBNET:-10.89.0.0/24}        # pod IPs; the bridge gateway is the node IP
NODE_KUBELET_PORT=${NIMGUARD_KUBELET_PORT:-10250}
NODE_KUBELET_HEALTHZ_PORT=${NIMGUARD_KUBELET_HEALTHZ_PORT:-10248}
NODE_PROXY_HEALTHZ_PORT=${NIMGUARD_KUBE_PROXY_HEALTHZ_PORT:-10256}
NODE_PROXY_METRICS_PORT=${NIMGUARD_KUBE_PROXY_METRICS_PORT:-10249}
NODE_LABEL=nimguard.io/real-node
# Tainted so that pods meant for KWOK never land here: only pods tolerating it (the e2e tests) run.
NODE_TAINT=$NODE_LABEL=true:NoSchedule

NODE_DIR=$STATE/node
# The kubelet's device plugin folder is fixed (not under --root-dir): the one host-wide path it uses.
NODE_DEVICE_PLUGINS=/var/lib/kubelet/device-plugins
NODE_SOCK=$NODE_DIR/containerd.sock
NODE_IP=$(n=${NODE_SUBNET%/*}; echo "${n%.*}.$((${n##*.} + 1))")
# cgroup v1 here: pods go under a cgroup root of this cluster's own, not the host's /kubepods.
NODE_CGROUP=/nimguard-$(printf %s "$STATE" | sha256sum | cut -c1-8)
node_COMPONENTS=(containerd kubelet kube-proxy kube-router fake-gpu-plugin)
NODE_APT=(containerd runc containernetworking-plugins busybox-static ipset iptables)

# The test images (pause, fakenim) and the stand-in GPU device plugin: scripts/localcluster/images.sh.
# shellcheck source=scripts/localcluster/images.sh
source "$ROOT/scripts/localcluster/images.sh"

node_ctr() { ctr --address "$NODE_SOCK" -n k8s.io "$@"; }
node_crictl() { "$CRICTL_BIN/crictl" --runtime-endpoint "unix://$NODE_SOCK" --timeout 20s "$@"; }

# ---- build ------------------------------------------------------------------------------------

# kube-proxy from a copy of the control plane's wrapper module (its build cache makes this quick): the
# copy lets `go build -mod=mod` add the sums of kube-proxy's own dependencies (netlink, knftables, ipvs)
# without touching the checked-in go.sum, which keys the control plane's build.
_node_build_kube_proxy() {
  local minor=${K8S_VERSION#v1.} ld="-s -w" p mod; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mod=$1/.mod && mkdir -p "$mod" && cp "$ROOT"/scripts/localcluster/k8s/go.{mod,sum} "$mod/" &&
    (cd "$mod" && go build -mod=mod -trimpath -ldflags "$ld" -o "$1/" k8s.io/kubernetes/cmd/kube-proxy) &&
    rm -rf "$mod"
}

node_build() {
  local p missing=()
  for p in "${NODE_APT[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) || die "node add-on: Debian packages ${missing[*]} missing (scripts/setup installs them)"
  build_part "kube-proxy $K8S_VERSION" "$K8S_VERSION-$(_key "$ROOT"/scripts/localcluster/k8s/go.{mod,sum})" \
    "$KUBE_PROXY_BIN" _node_build_kube_proxy
  build_part "kube-router $KUBE_ROUTER_VERSION" "$KUBE_ROUTER_VERSION" "$KUBE_ROUTER_BIN" \
    _build_goinstall "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
  build_part "crictl $CRICTL_VERSION" "$CRICTL_VERSION" "$CRICTL_BIN" \
    _build_goinstall "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  images_build
}

# ---- up ---------------------------------------------------------------------------------------

_node_preflight() {  # everything this node would take on the host must be free
  local p owner
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 &&
    die "node add-on: interface $NODE_BRIDGE exists (another cluster's node?); set NIMGUARD_NODE_BRIDGE"
  local route
  route=$(ip -4 route show to match "$NODE_IP" | { grep -v '^default' || true; } | head -1)
  [[ -z $route ]] || die "node add-on: $NODE_SUBNET overlaps this host's route \"$route\"; set NIMGUARD_NODE_SUBNET"
  for p in "$NODE_KUBELET_PORT" "$NODE_KUBELET_HEALTHZ_PORT" "$NODE_PROXY_HEALTHZ_PORT" "$NODE_PROXY_METRICS_PORT"; do
    [[ -z $(ss -Hltn "sport = :$p") ]] || die "node add-on: port $p is in use; set NIMGUARD_KUBELET_PORT and friends"
  done
  # kube-proxy and kube-router own fixed iptables chain and ipset names: one node per host.
  for p in kube-proxy kube-router; do
    if owner=$(pgrep -ax "$p"); then
      die "node add-on: a $p of another cluster runs on this host (one real node per host): $owner"
    fi
  done
}

_node_cgroups() {  # _node_cgroups create|remove: the cgroup root in every v1 hierarchy
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -f $h/cgroup.procs ]] || continue
    if [[ $1 == create ]]; then
      mkdir -p "$h$NODE_CGROUP"
      if [[ -f $h/cpuset.cpus ]]; then  # a new v1 cpuset is empty until given its parent's cpus/mems
        cat "$h/cpuset.cpus" > "$h$NODE_CGROUP/cpuset.cpus"; cat "$h/cpuset.mems" > "$h$NODE_CGROUP/cpuset.mems"
      fi
    elif [[ -d $h$NODE_CGROUP ]]; then
      find "$h$NODE_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
  done
}

_node_config() {
  local d=$NODE_DIR
  mkdir -p "$d/cni" "$d/containerd/conf.d" "$d/kubelet" "$d/pod-logs" "$d/pki"
  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc could not lower oom_score_adj.
  # The imports line lets the gpu_runtime role's drop-in (its e2e test) extend this very config.
  cat > "$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
imports = ["$d/containerd/conf.d/*.toml"]
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
  # Pods talk to each other and to the host; no masquerading, so no NAT rules to clean up.
  cat > "$d/cni/10-nimguard.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "nimguard-$NODE_BRIDGE", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$d/cni-ipam",
            "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
  _cert "node-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME"
  _cert "node-$NODE_NAME-serving-$NODE_IP" "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  _cert kube-proxy "/CN=system:kube-proxy"
  _cert kube-router "/O=system:masters/CN=kube-router"
  _kubeconfig "$d/kubelet.kubeconfig" "node-$NODE_NAME"
  _kubeconfig "$d/kube-proxy.kubeconfig" kube-proxy
  _kubeconfig "$d/kube-router.kubeconfig" kube-router
  # syncFrequency 10s: mounted Secrets are refreshed within seconds (the rotation tests wait on it).
  cat > "$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: $NODE_KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/node-$NODE_NAME-serving-$NODE_IP.crt
tlsPrivateKeyFile: $PKI/node-$NODE_NAME-serving-$NODE_IP.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$NODE_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROUP
failCgroupV1: false
failSwapOn: false
podLogsDir: $d/pod-logs
syncFrequency: 10s
nodeStatusUpdateFrequency: 2s  # the stand-in GPUs show in the node status within seconds of registering
maxPods: 40
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
registerWithTaints: [{key: $NODE_LABEL, value: "true", effect: NoSchedule}]
EOF
}

node_ready() {
  [[ $(k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

node_up() {
  _node_preflight
  rm -rf "$NODE_DIR" && _node_config
  cat /proc/sys/net/ipv4/ip_forward > "$NODE_DIR/ip_forward.orig"
  _node_cgroups create
  # The kubelet serves on the bridge's address, so bridge and address exist before it starts.
  if ! { ip link add "$NODE_BRIDGE" type bridge && ip addr add "$NODE_IP/${NODE_SUBNET#*/}" dev "$NODE_BRIDGE" &&
    ip link set "$NODE_BRIDGE" up; }; then
    die "node add-on: cannot create bridge $NODE_BRIDGE"
  fi
  echo 1 > /proc/sys/net/ipv4/ip_forward  # Service IPs: the host routes pod -> DNAT -> pod
  log "starting containerd, kubelet, kube-proxy, kube-router (node $NODE_NAME at $NODE_IP)"
  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  timed "containerd" wait_for "containerd" 30 containerd node_ctr version
  timed "images imported" images_import "$NODE_SOCK"
  start kubelet "$K8S_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
    --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/pki" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --node-labels "$NODE_LABEL=true"
  # kube-proxy and kube-router look up their node at start: after the kubelet registered it.
  timed "real node $NODE_NAME Ready" wait_for "node $NODE_NAME Ready" 90 kubelet node_ready
  start kube-proxy "$KUBE_PROXY_BIN/kube-proxy" --kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" \
    --hostname-override "$NODE_NAME" --proxy-mode iptables --bind-address "$NODE_IP" \
    --healthz-bind-address "$NODE_IP:$NODE_PROXY_HEALTHZ_PORT" --metrics-bind-address "$NODE_IP:$NODE_PROXY_METRICS_PORT" \
    --nodeport-addresses "$NODE_IP/32" --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0
  start kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$NODE_DIR/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --hostname-override "$NODE_NAME" \
    --health-port 0 --metrics-port 0
  # Its pod firewall chains mean it found its node and runs (it exits when the node is not there yet).
  timed "kube-router firewall" wait_for "kube-router's chains" 60 kube-router iptables -w -n -L KUBE-ROUTER-FORWARD
  # NO GPU: advertises stand-in nvidia.com/gpu devices so that a `gpus: 1` service runs here for real.
  _images_paths
  start fake-gpu-plugin "$TESTIMAGES_BIN/fake-gpu-plugin" --plugin-dir "$NODE_DEVICE_PLUGINS"
  timed "stand-in GPUs advertised" wait_for "nvidia.com/gpu on $NODE_NAME" 30 fake-gpu-plugin node_gpus
}

node_gpus() {
  [[ $(k get node "$NODE_NAME" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}' 2>/dev/null) -gt 0 ]]
}

# ---- down -------------------------------------------------------------------------------------

node_down() {
  [[ -d $NODE_DIR ]] || return 0
  local netns="" m
  stop_group kubelet kube-proxy kube-router fake-gpu-plugin
  if running containerd && [[ -x $CRICTL_BIN/crictl ]]; then
    # Stopping sandboxes through the CRI runs CNI DEL (veth, IP) and removes their netns and shm mounts.
    local sandboxes
    mapfile -t sandboxes < <(node_crictl pods -q 2>/dev/null)
    ((${#sandboxes[@]} == 0)) || netns=$(node_crictl inspectp -o go-template --template \
      '{{range .info.runtimeSpec.linux.namespaces}}{{if eq .type "network"}}{{.path}}{{"\n"}}{{end}}{{end}}' \
      "${sandboxes[@]}" 2>/dev/null || true)
    node_crictl rmp -fa >/dev/null 2>&1 || log "node add-on: crictl rmp failed; cleaning up by hand"
  fi
  stop_group containerd
  # Shims outlive containerd (their own sessions): ours name our socket.
  local pid
  for pid in $(pgrep -f -- "-address $NODE_SOCK"); do kill -KILL "$pid" 2>/dev/null; done
  _node_kill_cgroup_procs
  for m in $netns; do
    if [[ -e $m ]]; then umount "$m" 2>/dev/null || true; rm -f "$m"; fi
  done
  # Best effort from here on: each step undoes one thing, and `down` must reach the last one.
  findmnt -rn -o TARGET | { grep "^$NODE_DIR/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  "$KUBE_ROUTER_BIN/kube-router" --cleanup-config >/dev/null 2>&1 || true  # its chains and ipsets
  "$KUBE_PROXY_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  _node_iptables_cleanup
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then ip link del "$NODE_BRIDGE" || true; fi
  find /var/log/containers -maxdepth 1 -lname "$NODE_DIR/*" -delete 2>/dev/null || true
  rmdir /var/log/containers 2>/dev/null || true  # the kubelet's fixed symlink folder, when empty
  rm -f "$NODE_DEVICE_PLUGINS"/{kubelet.sock,kubelet_internal_checkpoint,nimguard-fake-gpu.sock}
  rmdir "$NODE_DEVICE_PLUGINS" /var/lib/kubelet 2>/dev/null || true  # when nothing else uses them
  _node_cgroups remove
  if [[ -f $NODE_DIR/ip_forward.orig ]]; then cat "$NODE_DIR/ip_forward.orig" > /proc/sys/net/ipv4/ip_forward; fi
  rm -rf "$NODE_DIR/containerd" "$NODE_DIR/kubelet" "$NODE_DIR/cni-ipam"
  return 0
}

# What the kube-proxy and kube-router cleanups leave: the kubelet's chains (KUBE-FIREWALL with its
# INPUT/OUTPUT jumps, the canaries), kube-router's ipsets. One real node per host, so every KUBE-*
# chain and kube-router ipset is this node's.
_node_iptables_cleanup() {
  local t rule chains c
  for t in filter nat mangle; do
    while read -r rule; do
      [[ -z $rule ]] || eval "iptables -t $t ${rule/#-A/-D}" || true  # iptables-save quotes like a shell
    done < <(iptables-save -t "$t" | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true)
    chains=$(iptables-save -t "$t" | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')
    for c in $chains; do iptables -t "$t" -F "$c" || true; done
    for c in $chains; do iptables -t "$t" -X "$c" || true; done
  done
  # kube-router's policy ipsets, free once no rule references them (its --cleanup-config leaves them).
  for c in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-(SRC|DST)-|kube-router-)' || true); do
    ipset destroy "$c" || true
  done
}

_node_kill_cgroup_procs() {  # whatever still runs in this node's pod cgroups is ours
  local f
  [[ -d /sys/fs/cgroup/pids$NODE_CGROUP ]] || return 0
  local pids
  pids=$(find "/sys/fs/cgroup/pids$NODE_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null)
  # shellcheck disable=SC2086  # one word per pid
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
  for f in {1..20}; do
    [[ -z $(find "/sys/fs/cgroup/pids$NODE_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null) ]] && return 0
    sleep 0.1
  done
}

node_env() {
  running kubelet || return 0  # the tests skip their real-node part when this is not exported
  cat <<EOF
export NIMGUARD_REAL_NODE=$NODE_NAME
export NIMGUARD_REAL_NODE_IP=$NODE_IP
export NIMGUARD_CONTAINERD_ADDRESS=$NODE_SOCK
export NIMGUARD_CONTAINERD_CONFIG=$NODE_DIR/containerd/config.toml
export NIMGUARD_CONTAINERD_DROPIN_DIR=$NODE_DIR/containerd/conf.d
EOF
}

# `scripts/cluster addon node restart-containerd`: the gpu_runtime role's restart command in the e2e
# test. Shims keep their own process groups, so running pods survive, as under systemd.
node_cmd() {
  case ${1:-} in
    restart-containerd)
      stop_group containerd
      start containerd containerd --config "$NODE_DIR/containerd/config.toml"
      wait_for "containerd" 30 containerd node_ctr version ;;
    *) die "usage: scripts/cluster addon node restart-containerd" ;;
  esac
}
