#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_service
short_description: Deploy an NVIDIA NIM service, hardened, from a NIMService-shaped spec
version_added: 0.1.0
description:
  - Converges every object of one NIM service in one call - ServiceAccount, Role, RoleBinding, PVC, Deployment,
    Service, Ingress, NetworkPolicy (and the Vault agent ConfigMap) - and prunes the ones it no longer renders.
  - Options mirror the NIM Operator's C(NIMService) spec in snake_case.
  - V(native) backend (default) renders and applies the objects itself, the pod hardened so that a namespace
    enforcing the C(restricted) Pod Security Standard admits it - C(runAsNonRoot), O(user_id)/O(group_id)/C(fsGroup),
    C(seccompProfile=RuntimeDefault), no privilege escalation, all capabilities dropped, a read-only root
    filesystem, no service-account token.
  - V(operator) backend applies an C(apps.nvidia.com/v1alpha1) C(NIMService) with the same spec for clusters running
    the NIM Operator (the NetworkPolicy is still rendered here; the operator makes its own RBAC).
  - Before anything is written, the module checks what would make the rollout fail - the auth Secret and its key,
    pull Secrets, the RuntimeClass, a node with enough C(nvidia.com/gpu), hostPath under a restricting Pod Security
    level (see O(preflight)) - and fails naming the option and the fix.
  - The pod template carries the content hash of the Secrets the pods consume, so a rotated Secret rolls the
    Deployment once (C(maxUnavailable=0)) and an unchanged one never does.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY, nimguard.k8s.connection.STATE]
options:
  name:
    description: Name of the NIM service (a DNS-1035 label); every object is named after it.
    type: str
    required: true
  backend:
    description:
      - V(native) renders Deployment, Service, Ingress, PVC and NetworkPolicy itself.
      - V(operator) applies a C(NIMService) custom resource; fails with a clear message when its CRD is missing.
    type: str
    default: native
    choices: [ native, operator ]
  auth_secret:
    description:
      - Name of the Secret holding the NGC API key (the NIMService C(authSecret)). Required unless
        O(secret_delivery.mode=vault_agent).
    type: str
  auth_secret_key:
    description:
      - Key of the NGC API key inside O(auth_secret) (the guide's custom secret key name). It selects the Secret's
        key only; the NIM still reads the variable C(NGC_API_KEY) (C(NGC_API_KEY_FILE) with a file), whatever the key.
      - The operator backend reads the key C(NGC_API_KEY) only.
    type: str
    default: NGC_API_KEY
  hf_secret:
    description:
      - Name of the Secret holding the Hugging Face token (models from Hugging Face), or unset for none. It gets the
        NGC key's treatment - delivered by O(secret_delivery) as C(HF_TOKEN) (C(HF_TOKEN_FILE) and an export with
        a file), in the rotation hash, checked before any write. With O(secret_delivery.mode=vault_agent) the token
        comes from Vault instead (O(secret_delivery.vault.hf_secret_path)) and this Secret is not read, like
        O(auth_secret).
      - The C(nimguard.k8s.nim_rollout) role sets it on every service when it provides the Secret.
    type: str
  hf_secret_key:
    description: Key of the token inside O(hf_secret); the NIM reads the variable C(HF_TOKEN) whatever the key.
    type: str
    default: HF_TOKEN
  image:
    description: The NIM container image. Required when O(state=present).
    type: dict
    suboptions:
      repository:
        description: Image repository, for example V(nvcr.io/nim/meta/llama-3.1-8b-instruct).
        type: str
        required: true
      tag:
        description:
          - Image tag, the release to run, for example V("1.3.3"). Required unless O(image.digest) is set; no tag
            is assumed (V(latest) is whatever was pushed last).
        type: str
      digest:
        description:
          - The manifest digest to run (C(sha256:...)); the pods then run C(repository@digest), which a moved tag
            cannot change. M(nimguard.k8s.nim_image_scan) returns the digest it scanned for each service
            (RV(nimguard.k8s.nim_image_scan#module:service_digests)), and the C(nimguard.k8s.nim_rollout) role
            passes it here. Without it the pods run the tag (with O(backend=operator) always).
        type: str
      pull_policy:
        description: Image pull policy.
        type: str
        default: IfNotPresent
        choices: [ Always, IfNotPresent, Never ]
      pull_secrets:
        description: Names of registry Secrets (see M(nimguard.k8s.nim_secret) V(registry)); each must exist.
        type: list
        elements: str
        default: []
  env:
    description:
      - Extra environment variables. Secrets belong in O(env[].value_from.secret_key_ref); literal values under
        secret-looking names (C(*KEY*), C(*TOKEN*), ...) are redacted from diffs and warned about.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Variable name.
        type: str
        required: true
      value:
        description: Literal value.
        type: str
      value_from:
        description: Take the value from a Secret, a ConfigMap or a pod field (exactly one).
        type: dict
        suboptions:
          secret_key_ref:
            description: A key of a Secret. Its content hash joins the rotation hash.
            type: dict
            suboptions:
              name:
                description: Secret name.
                type: str
                required: true
              key:
                description: Key in the Secret.
                type: str
                required: true
              optional:
                description: Start the pod even when the Secret or key is missing.
                type: bool
          config_map_key_ref:
            description: A key of a ConfigMap.
            type: dict
            suboptions:
              name:
                description: ConfigMap name.
                type: str
                required: true
              key:
                description: Key in the ConfigMap.
                type: str
                required: true
              optional:
                description: Start the pod even when the ConfigMap or key is missing.
                type: bool
          field_ref:
            description: A pod field.
            type: dict
            suboptions:
              field_path:
                description: For example V(metadata.name).
                type: str
                required: true
  user_id:
    description: User ID the containers run as. Must be non-zero.
    type: int
    default: 1000
  group_id:
    description: Group ID (and C(fsGroup)) of the pod. Must be non-zero.
    type: int
    default: 2000
  runtime_class_name:
    description:
      - RuntimeClass of the pods, for example V(nvidia) (see the C(nimguard.k8s.gpu_runtime) role). It must exist.
    type: str
  read_only_root_filesystem:
    description:
      - Mount the container's root filesystem read-only; C(/tmp), the model store and the secret and CA paths
        stay writable where needed. Switch off only for an image that writes elsewhere.
    type: bool
    default: true
  storage:
    description:
      - The model cache. One of O(storage.pvc), O(storage.host_path), O(storage.empty_dir); an C(emptyDir) when none
        is given.
    type: dict
    default: {}
    suboptions:
      mount_path:
        description: Where the cache is mounted; C(NIM_CACHE_PATH) points at it.
        type: str
        default: /model-store
      pvc:
        description: A PersistentVolumeClaim, created or existing.
        type: dict
        suboptions:
          create:
            description: Create the claim (named O(storage.pvc.name) or C(<name>-model-store)).
            type: bool
            default: false
          name:
            description: Claim name; required when O(storage.pvc.create=false).
            type: str
          size:
            description: Requested size, for example V(50Gi); required when creating.
            type: str
          storage_class:
            description: StorageClass of a created claim.
            type: str
          access_mode:
            description: Access mode of a created claim.
            type: str
            default: ReadWriteOnce
            choices: [ ReadWriteOnce, ReadWriteMany, ReadOnlyMany, ReadWriteOncePod ]
          sub_path:
            description: Mount this sub-directory of the volume.
            type: str
      host_path:
        description:
          - A node directory, under one of O(storage.host_path_prefixes), mounted read-only with type C(Directory)
            (it must exist) unless O(storage.host_path_writable). Forbidden by the C(baseline) and C(restricted) Pod
            Security levels, which the module checks; on OpenShift it selects the C(hostmount-anyuid) SCC.
        type: str
      host_path_prefixes:
        description:
          - The node directories O(storage.host_path) may be in (the path itself or below it, normalised, no C(..)).
            Anything else, C(/) included, is refused before anything is written.
        type: list
        elements: str
        default: [/mnt, /var/lib/nim, /opt/nim]
      host_path_writable:
        description:
          - Mount O(storage.host_path) read-write with type C(DirectoryOrCreate), for a cache the NIM fills itself.
            Off by default - a read-only, pre-filled model store on the node.
        type: bool
        default: false
      empty_dir:
        description: An C(emptyDir), lost with the pod.
        type: dict
        suboptions:
          size_limit:
            description: Size limit, for example V(20Gi).
            type: str
          medium:
            description: V(Memory) for tmpfs.
            type: str
            choices: [ "", Memory ]
  outbound_proxy:
    description:
      - The NIM's outbound proxy. Sets C(HTTP_PROXY)/C(http_proxy), C(HTTPS_PROXY)/C(https_proxy),
        C(NO_PROXY)/C(no_proxy) and C(NIM_SDK_USE_NATIVE_TLS=1).
      - Named C(proxy) before 0.2.0. A dict given as O(api_proxy)'s alias C(proxy) is still taken as this option,
        with a deprecation warning, until 2.0.0; C(proxy) as a string is the API server's proxy, as in the other
        modules and C(kubernetes.core), so that C(module_defaults) for the group can set it.
    type: dict
    default: {}
    suboptions:
      http_proxy:
        description: Proxy for HTTP.
        type: str
      https_proxy:
        description: Proxy for HTTPS.
        type: str
      no_proxy:
        description: Comma-separated hosts that bypass the proxy.
        type: str
      cert_config_map:
        description:
          - ConfigMap with the proxy's CA certificate (key C(ca.crt)). A non-root init container builds a CA bundle
            from the image's bundle plus this CA on an in-memory volume, and C(SSL_CERT_FILE), C(REQUESTS_CA_BUNDLE)
            and C(CURL_CA_BUNDLE) point at it.
        type: str
      ca_init_image:
        description: Image of the CA init container (needs C(/bin/sh) and C(cat)); the NIM image by default.
        type: str
  expose:
    description: How clients reach the service.
    type: dict
    default: {}
    suboptions:
      service:
        description: The Service.
        type: dict
        default: {}
        suboptions:
          type:
            description: Service type. The doctor warns about V(NodePort) and V(LoadBalancer) without TLS in front.
            type: str
            default: ClusterIP
            choices: [ ClusterIP, NodePort, LoadBalancer ]
          port:
            description: Service and container port (C(NIM_SERVER_PORT)).
            type: int
            default: 8000
          annotations:
            description: Annotations of the Service only.
            type: dict
            default: {}
      ingress:
        description:
          - An Ingress. TLS is required - O(expose.ingress.tls_secret_name), or a C(cert-manager.io/cluster-issuer)
            annotation (the TLS Secret is then C(<name>-tls), filled by cert-manager) - unless
            O(expose.ingress.allow_plain_http=true).
        type: dict
        default: {}
        suboptions:
          enabled:
            description: Create the Ingress.
            type: bool
            default: false
          class_name:
            description: IngressClass, for example V(nginx).
            type: str
          host:
            description: Host name; required.
            type: str
          path:
            description: Path.
            type: str
            default: /
          path_type:
            description: Path type.
            type: str
            default: Prefix
            choices: [ Prefix, Exact, ImplementationSpecific ]
          tls_secret_name:
            description: Existing TLS Secret (see M(nimguard.k8s.nim_secret) V(tls)).
            type: str
          annotations:
            description: Ingress annotations, for example V(cert-manager.io/cluster-issuer).
            type: dict
            default: {}
          allow_plain_http:
            description: The explicit way out of the TLS requirement.
            type: bool
            default: false
  resources:
    description: Container resources.
    type: dict
    default: {}
    suboptions:
      requests:
        description: Requests, for example C(cpu=4) and C(memory=32Gi).
        type: dict
      limits:
        description: Limits.
        type: dict
      gpus:
        description:
          - C(nvidia.com/gpu) per pod. The module checks that some node advertises that many.
        type: int
        default: 0
  node_selector:
    description: Node selector, for example C(nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3).
    type: dict
    default: {}
  tolerations:
    description: Pod tolerations, in Kubernetes' own (camelCase) form.
    type: list
    elements: dict
    default: []
  probes:
    description:
      - HTTP probes on the API port, with the NIM images' paths and timings by default. Zeros are not rendered (the
        API server leaves them out).
    type: dict
    default: {}
    suboptions:
      startup:
        description: Startup probe; by default it allows 30 minutes (180 x 10 s) for a model download.
        type: dict
        default: {}
        suboptions:
          enabled: {description: Render the probe., type: bool, default: true}
          path: {description: HTTP path., type: str, default: /v1/health/ready}
          initial_delay_seconds: {description: Seconds before the first probe., type: int, default: 10}
          period_seconds: {description: Seconds between probes., type: int, default: 10}
          timeout_seconds: {description: Seconds per probe., type: int, default: 1}
          failure_threshold: {description: Failures before the probe fails., type: int, default: 180}
      liveness:
        description: Liveness probe.
        type: dict
        default: {}
        suboptions:
          enabled: {description: Render the probe., type: bool, default: true}
          path: {description: HTTP path., type: str, default: /v1/health/live}
          initial_delay_seconds: {description: Seconds before the first probe., type: int, default: 0}
          period_seconds: {description: Seconds between probes., type: int, default: 10}
          timeout_seconds: {description: Seconds per probe., type: int, default: 1}
          failure_threshold: {description: Failures before the probe fails., type: int, default: 3}
      readiness:
        description: Readiness probe.
        type: dict
        default: {}
        suboptions:
          enabled: {description: Render the probe., type: bool, default: true}
          path: {description: HTTP path., type: str, default: /v1/health/ready}
          initial_delay_seconds: {description: Seconds before the first probe., type: int, default: 0}
          period_seconds: {description: Seconds between probes., type: int, default: 5}
          timeout_seconds: {description: Seconds per probe., type: int, default: 1}
          failure_threshold: {description: Failures before the probe fails., type: int, default: 3}
  replicas:
    description: Number of pods.
    type: int
    default: 1
  pod_annotations:
    description: Annotations of the pod template only.
    type: dict
    default: {}
  network_policy:
    description:
      - A NetworkPolicy for the service's pods - default deny, ingress only from the ingress controller's namespace
        on the service port, egress only DNS (53 TCP/UDP) to the cluster DNS pods and HTTPS (443) out of the
        cluster (or to the proxy), plus extra rules.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Render it.
        type: bool
        default: true
      ingress_namespace_selector:
        description: Labels of the namespaces allowed in.
        type: dict
        default: {kubernetes.io/metadata.name: ingress-nginx}
      ingress_pod_selector:
        description: Labels of the pods allowed in, within those namespaces.
        type: dict
        default: {}
      allow_dns:
        description: Allow egress to port 53 (UDP and TCP) of the cluster's DNS pods, and nowhere else.
        type: bool
        default: true
      dns_namespace_selector:
        description: Labels of the namespace of the cluster's DNS pods (on OpenShift the namespace is
          C(openshift-dns)).
        type: dict
        default: {kubernetes.io/metadata.name: kube-system}
      dns_pod_selector:
        description: Labels of the cluster's DNS pods (CoreDNS and kube-dns carry C(k8s-app=kube-dns)).
        type: dict
        default: {k8s-app: kube-dns}
      allow_https:
        description:
          - Allow egress to port 443 of any IPv4 address but link-local ones (C(169.254.0.0/16), the cloud metadata
            endpoints) and O(network_policy.cluster_cidrs). With O(outbound_proxy.https_proxy) (or O(outbound_proxy.http_proxy)) set,
            the proxy's port only, and only the proxy's address when it is an IP.
        type: bool
        default: true
      cluster_cidrs:
        description:
          - The cluster's own IPv4 ranges (pod and service CIDRs), kept out of the HTTPS egress rule so that a
            service cannot call other workloads or the API server on 443. The way back to the former "443 to
            anywhere" is an O(network_policy.extra_egress) rule of your own.
        type: list
        elements: str
        default: []
      extra_ingress:
        description: More ingress rules, in NetworkPolicy form.
        type: list
        elements: dict
        default: []
      extra_egress:
        description: More egress rules, in NetworkPolicy form (a proxy, say).
        type: list
        elements: dict
        default: []
  secret_delivery:
    description:
      - How the NGC API key (and the Hugging Face token, O(hf_secret)) reach the NIM container.
      - V(env) - an env var from a C(secretKeyRef), as the NIM Operator does. Simple; the key is visible to anyone
        who can read the pod's environment (C(kubectl exec env), crash dumps) and rotation needs a restart.
      - V(file) (default for the native backend) - the Secret mounted read-only as files on a memory-backed volume;
        nothing secret in the pod spec. With O(secret_delivery.export_env) the start command exports the key from
        the file inside the container's own process (NIM reads its environment); without it, the application
        reads C(NGC_API_KEY_FILE) (and C(HF_TOKEN_FILE)) and sees a rotated value without a restart.
      - V(vault_agent) - a Vault agent init container (and with O(secret_delivery.vault.refresh) a native sidecar
        that keeps the file fresh) authenticates with a projected service-account token mounted into the agent
        only, and writes the key to an C(emptyDir) with C(medium=Memory). The key never exists as a Kubernetes
        Secret.
    type: dict
    default: {}
    suboptions:
      mode:
        description: V(file) for the native backend, V(env) for the operator backend when not set.
        type: str
        choices: [ env, file, vault_agent ]
      mount_path:
        description: Directory of the key file.
        type: str
        default: /var/run/secrets/nim
      export_env:
        description: Wrap the start command so it exports the key from the file (needs C(/bin/sh) in the image).
        type: bool
        default: true
      command:
        description: The image's start command, run after the export; by default the NIM images' entrypoint.
        type: list
        elements: str
        default: [/opt/nvidia/nvidia_entrypoint.sh, /opt/nim/start_server.sh]
      vault:
        description: Vault agent settings for O(secret_delivery.mode=vault_agent).
        type: dict
        suboptions:
          address:
            description: Vault address, for example V(https://vault.example.com:8200).
            type: str
          role:
            description: Vault Kubernetes auth role.
            type: str
          secret_path:
            description: KV v2 path, for example V(secret/data/nim/ngc).
            type: str
          secret_field:
            description: Field of the secret holding the key.
            type: str
            default: ngc_api_key
          hf_secret_path:
            description: Path of the Vault secret holding the Hugging Face token (written to C(HF_TOKEN_FILE)); unset for none.
            type: str
          hf_secret_field:
            description: Field of O(secret_delivery.vault.hf_secret_path) holding the token.
            type: str
            default: hf_token
          auth_mount_path:
            description: Mount path of the Kubernetes auth method.
            type: str
            default: kubernetes
          audience:
            description: Audience of the projected service-account token.
            type: str
            default: vault
          image:
            description: Vault image.
            type: str
            default: hashicorp/vault:1.21.4
          refresh:
            description: Run the agent as a sidecar that re-renders the file when the secret changes.
            type: bool
            default: false
          ca_config_map:
            description: ConfigMap with Vault's CA (key C(ca.crt)).
            type: str
          allow_http:
            description: Accept an C(http://) O(secret_delivery.vault.address) (the agent's token and the key then
              travel in clear). Off - plain HTTP is refused.
            type: bool
            default: false
  restart_on_rotation:
    description:
      - Put the consumed Secrets' content hash on the pod template, so that changed bytes roll the Deployment
        (once) and unchanged ones never do. The hash is keyed (HMAC-SHA256) with a random key kept in the Secret
        C(nimguard-hash-key) of the namespace (made on first use), so it tells nothing to whoever can read
        Deployments but not Secrets.
      - With V(false) nothing restarts. Only O(secret_delivery.mode=file) with O(secret_delivery.export_env=false)
        (or V(vault_agent) with C(refresh)) then brings a rotated key to the running NIM, which must read
        C(NGC_API_KEY_FILE); with C(export_env) the process keeps the key exported at its start, and the task warns.
    type: bool
    default: true
  secret_hashes:
    description:
      - The RV(nimguard.k8s.nim_secret#module:content_hash) of Secrets an earlier task of the same run is about to
        write, by Secret name. In check mode they stand in for the live Secrets in the rotation hash, so a coming
        rotation shows as a change (and in the diff) before it happens; a real run reads the Secrets. The
        C(nimguard.k8s.nim_rollout) role passes them.
    type: dict
    default: {}
  rbac:
    description: The ServiceAccount, Role and RoleBinding (the same objects as M(nimguard.k8s.nim_rbac)).
    type: dict
    default: {}
    suboptions:
      create:
        description: Render them here (native backend).
        type: bool
        default: true
      openshift:
        description: V(auto) detects OpenShift by its API group.
        type: str
        default: auto
        choices: [ auto, "yes", "no" ]
      scc:
        description:
          - SCC override (default V(nonroot), V(hostmount-anyuid) with hostPath). V(privileged), V(hostaccess),
            V(hostnetwork), V(hostnetwork-v2) and V(node-exporter) need O(rbac.allow_privileged_scc).
        type: str
      allow_privileged_scc:
        description: Allow an O(rbac.scc) that opens the node (privileged containers, host namespaces or paths).
        type: bool
        default: false
      extra_rules:
        description: Extra Role rules, as in M(nimguard.k8s.nim_rbac).
        type: list
        elements: dict
        default: []
        suboptions:
          api_groups:
            description: API groups.
            type: list
            elements: str
          resources:
            description: Resources.
            type: list
            elements: str
            required: true
          verbs:
            description: Verbs.
            type: list
            elements: str
            required: true
          resource_names:
            description: Object names.
            type: list
            elements: str
      allow_wildcards:
        description: Allow C(*) in rules.
        type: bool
        default: false
      allow_dangerous_rules:
        description:
          - Allow rules that let the ServiceAccount become more than it is - C(escalate), C(bind), C(impersonate),
            C(get)/C(list)/C(watch) on C(secrets), C(pods/exec) and C(pods/attach), C(update)/C(patch) on C(*/scale)
            (also through C(*)). Refused by default, naming the rule.
        type: bool
        default: false
      automount_service_account_token:
        description: Mount an API token into the pods.
        type: bool
        default: false
  rollout:
    description: Rolling update settings. C(maxUnavailable) is always 0.
    type: dict
    default: {}
    suboptions:
      max_surge:
        description: Extra pods during a rollout (an int or a percentage). Each needs its GPUs.
        type: raw
        default: 1
  preflight:
    description: Run the cluster checks before writing (one read each).
    type: bool
    default: true
  wait:
    description: Wait until the rollout is complete (all replicas updated and available).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for the rollout. On timeout the error names the phase the pods are in (unschedulable, image
        pull, container config, crash, startup probe, readiness probe, admission) and what to do.
      - Unset, it derives from the service's own probes, so a first model download is not cut short while the
        startup probe still allows it - 600 seconds for scheduling and the image pull, plus the startup probe's
        C(initial_delay_seconds + period_seconds x failure_threshold), plus the readiness probe's alike; times the
        rounds of a rolling update (O(replicas) / O(rollout.max_surge), rounded up). With the default probes and one
        replica, 600 + 1810 + 15 = 2425 seconds.
    type: int
  service:
    description:
      - All of a service's options as one dict, as a list of services holds them - every option of this module except
        the connection options (O(kubeconfig), O(host), O(api_key) and the others are refused there, so that service
        data cannot send the task to another cluster). An option also set at the top level wins.
      - Made for loops - one templated expression per item is much cheaper than one per option (ansible-core
        compiles every templated option again for each item), and an unknown key fails naming it instead of being
        ignored. The M(nimguard.k8s.nim_service) action plugin expands it; it is not seen by the module itself.
    type: dict
    version_added: 0.1.0
seealso:
  - module: nimguard.k8s.nim_secret
  - module: nimguard.k8s.nim_rbac
  - name: NIM Operator NIMService
    description: The custom resource whose spec these options mirror.
    link: https://docs.nvidia.com/nim-operator/latest/
'''

EXAMPLES = r'''
- name: A NIM service, hardened, with the key delivered as an in-memory file
  nimguard.k8s.nim_service:
    name: llama-3-8b
    namespace: nim-service
    auth_secret: ngc-api-secret
    image:
      repository: nvcr.io/nim/meta/llama-3.1-8b-instruct
      tag: "1.3.3"
      pull_secrets: [ngc-secret]
    runtime_class_name: nvidia
    resources:
      gpus: 1
      requests: {cpu: "4", memory: 32Gi}
      limits: {memory: 48Gi}
    storage:
      pvc: {create: true, size: 50Gi, storage_class: fast-ssd}
    expose:
      ingress:
        enabled: true
        class_name: nginx
        host: llama.ai.example.com
        annotations:
          cert-manager.io/cluster-issuer: letsencrypt-prod
    wait: true

- name: Behind a corporate proxy with its own CA
  nimguard.k8s.nim_service:
    name: llama-3-8b
    namespace: nim-service
    auth_secret: ngc-api-secret
    image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, tag: "1.3.3"}
    outbound_proxy:
      http_proxy: http://proxy.example.com:8080
      https_proxy: http://proxy.example.com:8080
      no_proxy: localhost,127.0.0.1,.svc,.cluster.local
      cert_config_map: custom-ca-cert
    network_policy:
      extra_egress:
        - to: [{ipBlock: {cidr: 192.0.2.10/32}}]
          ports: [{protocol: TCP, port: 8080}]

- name: Key from Vault through a Vault agent, refreshed by a sidecar
  nimguard.k8s.nim_service:
    name: llama-3-8b
    namespace: nim-service
    image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, tag: "1.3.3"}
    secret_delivery:
      mode: vault_agent
      vault:
        address: https://vault.example.com:8200
        role: nim-service
        secret_path: secret/data/nim/prod/ngc
        refresh: true

- name: As the operator would, on a cluster running the NIM Operator
  nimguard.k8s.nim_service:
    name: llama-3-8b
    namespace: nim-service
    backend: operator
    auth_secret: ngc-api-secret
    image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, tag: "1.3.3", pull_secrets: [ngc-secret]}
    resources: {gpus: 1}

- name: Many services from a list, one dict each (what the nimguard.k8s.nim_rollout role does)
  nimguard.k8s.nim_service:
    service: "{{ item }}"
    namespace: nim-service
    wait: true
  loop:
    - {name: llama-3-8b, auth_secret: ngc-api-secret, image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, tag: "1.3.3"}}
    - {name: embed-qa, auth_secret: ngc-api-secret, image: {repository: nvcr.io/nim/nvidia/nv-embedqa-e5-v5, tag: "1.5.0"}}
  loop_control:
    label: "{{ item.name }}"

- name: Remove every object of the service
  nimguard.k8s.nim_service:
    name: llama-3-8b
    namespace: nim-service
    state: absent
'''

RETURN = r'''
changed:
  description: Whether the API server changed any object. A rerun with nothing to change makes no write.
  returned: always
  type: bool
objects:
  description:
    - Every object of the service, each with C(created), C(updated) or C(unchanged); one it no longer renders
      (an Ingress switched off, say) is pruned and listed as C(deleted).
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: apps/v1, kind: Deployment, name: llama-3-8b, namespace: nim-service, action: updated}
    - {apiVersion: networking.k8s.io/v1, kind: Ingress, name: llama-3-8b, namespace: nim-service, action: deleted}
wait_for:
  description: The Deployment to wait for (native backend, state present), as M(nimguard.k8s.nim_info)'s O(nimguard.k8s.nim_info#module:rollouts) takes it.
  returned: when backend is native and state is present
  type: dict
  sample: {name: llama-3-8b, namespace: nim-service}
wait_timeout:
  description: The wait limit in seconds (O(wait_timeout), or the one derived from the probes), whether or not it waited.
  returned: when backend is native and state is present
  type: int
  sample: 2425
secrets_hash:
  description:
    - Keyed content hash of the Secrets the pods consume, on the pod template (O(restart_on_rotation) only).
  returned: when state is present and the pods consume Secrets
  type: str
  sample: sha256:0c8e5d0f4d2b7a91
secret_delivery:
  description: The delivery mode used.
  returned: when state is present
  type: str
  sample: file
endpoint:
  description: In-cluster URL of the service.
  returned: when state is present
  type: str
  sample: http://llama-3-8b.nim-service.svc:8000
rollout:
  description: Replica counts of the Deployment after the wait.
  returned: when O(wait=true)
  type: dict
  sample: {replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1, unavailableReplicas: 0}
diff:
  description: With C(--diff), before and after of each object that changed; secret-looking literal env values as
    content hashes.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_service
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_service)


if __name__ == "__main__":
    main()
