# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs of every module, in one place, and each option's default said once.

The modules (AnsibleModule) and the action plugins (in the controller, without AnsiballZ) check the
same options the same way. Defaults that depend on another option (secret_delivery.mode on the backend)
are filled in by service_options()/complete_service(), so rendering can trust what it is given."""

from __future__ import annotations

import copy

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.nimguard.k8s.plugins.module_utils import validate
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.kubeconfig import CONNECTION_ARGS

# The variables a NIM reads its NGC API key and Hugging Face token from (NAME_FILE for a file), whatever key of
# which Secret holds them; also the keys a Secret of these kinds carries when `key` is not set (nim_secret).
NGC_KEY = "NGC_API_KEY"
HF_KEY = "HF_TOKEN"
SECRET_KEY_DEFAULT = {"ngc": NGC_KEY, "huggingface": HF_KEY}
DEFAULT_NIM_COMMAND = ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start_server.sh"]
VAULT_AGENT_IMAGE = "hashicorp/vault:1.21.4"
SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")  # Trivy's, lowest first

_NAMESPACE = dict(namespace=dict(type="str", required=True))
_STATE = dict(
    state=dict(type="str", default="present", choices=["present", "absent"]),
    force_conflicts=dict(type="bool", default=False),
)
_META = dict(
    labels=dict(type="dict", default={}),
    annotations=dict(type="dict", default={}),
)

_RULE = dict(type="list", elements="dict", default=[], options=dict(
    api_groups=dict(type="list", elements="str"),
    resources=dict(type="list", elements="str", required=True),
    verbs=dict(type="list", elements="str", required=True),
    resource_names=dict(type="list", elements="str"),
))

SECRET = dict(
    name=dict(type="str"),
    kind=dict(type="str", default="generic", choices=["ngc", "huggingface", "registry", "tls", "generic"]),
    value=dict(type="str", no_log=True),
    key=dict(type="str", no_log=False),
    keys=dict(type="list", elements="str", default=[], no_log=False),
    data=dict(type="dict", no_log=True),
    registry=dict(type="dict", options=dict(
        server=dict(type="str", default="nvcr.io"),
        username=dict(type="str", default="$oauthtoken"),
        password=dict(type="str", no_log=True),
        email=dict(type="str"),
    )),
    tls=dict(type="dict", options=dict(cert=dict(type="str"), key=dict(type="str", no_log=True), ca=dict(type="str"),
                                       allow_expired=dict(type="bool", default=False))),
)
# The list form: many Secrets in one task (a loop costs a task run per item), each element one Secret's options.
SECRET["secrets"] = dict(type="list", elements="dict", no_log=False, mutually_exclusive=[["value", "data"]],
                         options=dict(SECRET, name=dict(type="str", required=True)))

# The Role's options, the same in nim_rbac and in nim_service's `rbac`.
_ROLE = dict(
    openshift=dict(type="str", default="auto", choices=["auto", "yes", "no"]),
    scc=dict(type="str"),
    allow_privileged_scc=dict(type="bool", default=False),
    extra_rules=_RULE,
    allow_wildcards=dict(type="bool", default=False),
    allow_dangerous_rules=dict(type="bool", default=False),
    automount_service_account_token=dict(type="bool", default=False),
)
RBAC = dict(name=dict(type="str", required=True), host_path=dict(type="bool", default=False),
            proxy_ca=dict(type="bool", default=False), **copy.deepcopy(_ROLE))


def _probe(path, initial_delay, period, failure_threshold):
    """An HTTP probe on the API port; the defaults are the NIM images' (the startup probe waits out a model
    download)."""
    return dict(type="dict", default={}, options=dict(
        enabled=dict(type="bool", default=True),
        path=dict(type="str", default=path),
        initial_delay_seconds=dict(type="int", default=initial_delay),
        period_seconds=dict(type="int", default=period),
        timeout_seconds=dict(type="int", default=1),
        failure_threshold=dict(type="int", default=failure_threshold),
    ))


SERVICE = dict(
    name=dict(type="str", required=True),
    backend=dict(type="str", default="native", choices=["native", "operator"]),
    auth_secret=dict(type="str", no_log=False),
    auth_secret_key=dict(type="str", default=NGC_KEY, no_log=False),
    hf_secret=dict(type="str", no_log=False),
    hf_secret_key=dict(type="str", default=HF_KEY, no_log=False),
    image=dict(type="dict", options=dict(
        repository=dict(type="str", required=True),
        tag=dict(type="str"),
        digest=dict(type="str"),
        pull_policy=dict(type="str", default="IfNotPresent", choices=["Always", "IfNotPresent", "Never"]),
        pull_secrets=dict(type="list", elements="str", default=[], no_log=False),
    )),
    env=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        value=dict(type="str"),
        value_from=dict(type="dict", options=dict(
            secret_key_ref=dict(type="dict", no_log=False, options=dict(
                name=dict(type="str", required=True), key=dict(type="str", required=True, no_log=False),
                optional=dict(type="bool"))),
            config_map_key_ref=dict(type="dict", no_log=False, options=dict(
                name=dict(type="str", required=True), key=dict(type="str", required=True, no_log=False),
                optional=dict(type="bool"))),
            field_ref=dict(type="dict", options=dict(field_path=dict(type="str", required=True))),
        )),
    )),
    user_id=dict(type="int", default=1000),
    group_id=dict(type="int", default=2000),
    runtime_class_name=dict(type="str"),
    read_only_root_filesystem=dict(type="bool", default=True),
    storage=dict(type="dict", default={}, options=dict(
        mount_path=dict(type="str", default="/model-store"),
        pvc=dict(type="dict", options=dict(
            create=dict(type="bool", default=False),
            name=dict(type="str"),
            size=dict(type="str"),
            storage_class=dict(type="str"),
            access_mode=dict(type="str", default="ReadWriteOnce",
                             choices=["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]),
            sub_path=dict(type="str"),
        )),
        host_path=dict(type="str"),
        host_path_prefixes=dict(type="list", elements="str", default=["/mnt", "/var/lib/nim", "/opt/nim"]),
        host_path_writable=dict(type="bool", default=False),
        empty_dir=dict(type="dict", options=dict(size_limit=dict(type="str"),
                                                 medium=dict(type="str", choices=["", "Memory"]))),
    )),
    outbound_proxy=dict(type="dict", default={}, options=dict(
        http_proxy=dict(type="str"),
        https_proxy=dict(type="str"),
        no_proxy=dict(type="str"),
        cert_config_map=dict(type="str"),
        ca_init_image=dict(type="str"),
    )),
    expose=dict(type="dict", default={}, options=dict(
        service=dict(type="dict", default={}, options=dict(
            type=dict(type="str", default="ClusterIP", choices=["ClusterIP", "NodePort", "LoadBalancer"]),
            port=dict(type="int", default=8000),
            annotations=dict(type="dict", default={}),
        )),
        ingress=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=False),
            class_name=dict(type="str"),
            host=dict(type="str"),
            path=dict(type="str", default="/"),
            path_type=dict(type="str", default="Prefix", choices=["Prefix", "Exact", "ImplementationSpecific"]),
            tls_secret_name=dict(type="str", no_log=False),
            annotations=dict(type="dict", default={}),
            allow_plain_http=dict(type="bool", default=False),
        )),
    )),
    resources=dict(type="dict", default={}, options=dict(
        requests=dict(type="dict"),
        limits=dict(type="dict"),
        gpus=dict(type="int", default=0),
    )),
    node_selector=dict(type="dict", default={}),
    tolerations=dict(type="list", elements="dict", default=[]),
    probes=dict(type="dict", default={}, options=dict(
        startup=_probe("/v1/health/ready", 10, 10, 180),
        liveness=_probe("/v1/health/live", 0, 10, 3),
        readiness=_probe("/v1/health/ready", 0, 5, 3),
    )),
    replicas=dict(type="int", default=1),
    pod_annotations=dict(type="dict", default={}),
    network_policy=dict(type="dict", default={}, options=dict(
        enabled=dict(type="bool", default=True),
        ingress_namespace_selector=dict(type="dict", default={"kubernetes.io/metadata.name": "ingress-nginx"}),
        ingress_pod_selector=dict(type="dict", default={}),
        allow_dns=dict(type="bool", default=True),
        dns_namespace_selector=dict(type="dict", default={"kubernetes.io/metadata.name": "kube-system"}),
        dns_pod_selector=dict(type="dict", default={"k8s-app": "kube-dns"}),
        allow_https=dict(type="bool", default=True),
        cluster_cidrs=dict(type="list", elements="str", default=[]),
        extra_ingress=dict(type="list", elements="dict", default=[]),
        extra_egress=dict(type="list", elements="dict", default=[]),
    )),
    secret_delivery=dict(type="dict", default={}, no_log=False, options=dict(
        mode=dict(type="str", choices=["env", "file", "vault_agent"]),
        mount_path=dict(type="str", default="/var/run/secrets/nim"),
        export_env=dict(type="bool", default=True),
        command=dict(type="list", elements="str", default=DEFAULT_NIM_COMMAND),
        vault=dict(type="dict", options=dict(
            address=dict(type="str"),
            role=dict(type="str"),
            secret_path=dict(type="str", no_log=False),
            secret_field=dict(type="str", default="ngc_api_key", no_log=False),
            hf_secret_path=dict(type="str", no_log=False),
            hf_secret_field=dict(type="str", default="hf_token", no_log=False),
            auth_mount_path=dict(type="str", default="kubernetes"),
            audience=dict(type="str", default="vault"),
            image=dict(type="str", default=VAULT_AGENT_IMAGE),
            refresh=dict(type="bool", default=False),
            ca_config_map=dict(type="str"),
            allow_http=dict(type="bool", default=False),
        )),
    )),
    restart_on_rotation=dict(type="bool", default=True),
    secret_hashes=dict(type="dict", default={}, no_log=False),
    rbac=dict(type="dict", default={}, options=dict(create=dict(type="bool", default=True), **copy.deepcopy(_ROLE))),
    rollout=dict(type="dict", default={}, options=dict(max_surge=dict(type="raw", default=1))),
    preflight=dict(type="bool", default=True),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int"),
    service=dict(type="dict"),
)


# nim_service's `service`: a whole service as one dict (a role's loop item), so that a loop templates one
# expression per item instead of one per option (ansible-core compiles each templated option anew for
# every item). Connection options are not taken from it: service data cannot point the task elsewhere.
SERVICE_DICT_KEYS = frozenset(SERVICE).union(_NAMESPACE, _STATE, _META).difference(["service"])
_CONNECTION_NAMES = frozenset(CONNECTION_ARGS).union(*(a.get("aliases", []) for a in CONNECTION_ARGS.values()))

# What nim_apply waits for when `wait` is on and no `wait_condition` is given.
READY = dict(type="Ready", status="True")
_WAIT_CONDITION = dict(type="dict", options=dict(
    type=dict(type="str", default=READY["type"]),
    status=dict(type="str", default=READY["status"], choices=["True", "False", "Unknown"]),
))

APPLY = dict(
    definition=dict(type="raw"),
    src=dict(type="path"),
    wait=dict(type="bool", default=False),
    wait_condition=_WAIT_CONDITION,
    wait_timeout=dict(type="int", default=120),
)

INFO = dict(
    api_version=dict(type="str", default="v1"),
    kind=dict(type="str"),
    name=dict(type="str"),
    rollouts=dict(type="list", elements="dict", options=dict(name=dict(type="str", required=True),
                                                             namespace=dict(type="str", required=True))),
    namespace=dict(type="str"),
    label_selectors=dict(type="list", elements="str", default=[]),
    wait_condition=_WAIT_CONDITION,
    wait_timeout=dict(type="int", default=120),
)

DOCTOR = dict(
    services=dict(type="list", elements="dict", default=[]),
    checks=dict(type="list", elements="str", default=["all"]),
    fail_on=dict(type="str", default="fail", choices=["fail", "warn", "never"]),
    uses_cert_manager=dict(type="bool", default=False),
    uses_external_secrets=dict(type="bool", default=False),
    written_secrets=dict(type="list", elements="str", default=[], no_log=False),
)

IMAGE_SCAN = dict(
    images=dict(type="list", elements="str", default=[]),
    services=dict(type="list", elements="dict", default=[]),
    reports=dict(type="dict", default={}),
    trivy=dict(type="str", default="trivy"),
    trivy_args=dict(type="list", elements="str", default=[]),
    resolve_digests=dict(type="bool", default=True),
    scanners=dict(type="list", elements="str", default=["vuln", "secret"], choices=["vuln", "secret", "misconfig"]),
    severity=dict(type="str", default="CRITICAL", choices=list(SEVERITIES)),
    allow_list=dict(type="list", elements="dict", default=[], options=dict(
        id=dict(type="str", required=True),
        reason=dict(type="str", required=True),
        expires=dict(type="raw", required=True),
        package=dict(type="str"),
        image=dict(type="str"),
    )),
)


def _merged(*parts):
    out = {}
    for part in parts:
        out.update(copy.deepcopy(part))
    return out


# Each module's options and the constraints between them.
MODULES = dict(
    nim_secret=(_merged(CONNECTION_ARGS, _NAMESPACE, _STATE, _META, SECRET),
                dict(mutually_exclusive=[["value", "data"], ["name", "secrets"]], required_one_of=[["name", "secrets"]])),
    nim_rbac=(_merged(CONNECTION_ARGS, _NAMESPACE, _STATE, _META, RBAC), {}),
    nim_service=(_merged(CONNECTION_ARGS, _NAMESPACE, _STATE, _META, SERVICE),
                 dict(required_if=[["state", "present", ["image"]]])),
    nim_apply=(_merged(CONNECTION_ARGS, dict(namespace=dict(type="str")), _STATE, APPLY),
               dict(mutually_exclusive=[["definition", "src"]], required_one_of=[["definition", "src"]])),
    nim_doctor=(_merged(CONNECTION_ARGS, _NAMESPACE, DOCTOR), {}),
    nim_info=(_merged(CONNECTION_ARGS, INFO), dict(required_one_of=[["kind", "rollouts"]],
                                                   mutually_exclusive=[["kind", "rollouts"]])),
    nim_image_scan=(_merged(IMAGE_SCAN), {}),
)


def spec(module):
    """kwargs for AnsibleModule / ArgumentSpecValidator: argument_spec plus the constraints."""
    options, constraints = MODULES[module]
    out = dict(argument_spec=copy.deepcopy(options), supports_check_mode=True)
    out.update(copy.deepcopy(constraints))
    return out


def validator_for(module):
    """An ArgumentSpecValidator with the module's spec and constraints (used by the action plugin)."""
    kwargs = spec(module)
    return ArgumentSpecValidator(kwargs["argument_spec"], mutually_exclusive=kwargs.get("mutually_exclusive"),
                                 required_together=kwargs.get("required_together"),
                                 required_one_of=kwargs.get("required_one_of"),
                                 required_if=kwargs.get("required_if"),
                                 required_by=kwargs.get("required_by"))


def expand_service(args):
    """nim_service args with the keys of `service` moved to the top level (options set there win).
    Raises ValueError naming the key and the fix; values never appear in the message."""
    service = args.get("service")
    if service is None:
        return args
    if not isinstance(service, dict):
        raise ValueError("service: expected a dict of nim_service options, got %s. Fix: pass a mapping such as "
                         "{name: llama, image: {repository: ...}}." % type(service).__name__)
    unknown = sorted((str(k) for k, v in service.items()
                      if k not in SERVICE_DICT_KEYS and not (k == "proxy" and isinstance(v, dict))),
                     key=lambda k: (k not in _CONNECTION_NAMES, k))  # a connection option first: the worse mistake
    if unknown:
        where = ("a connection option: set it on the task or in module_defaults"
                 if unknown[0] in _CONNECTION_NAMES else "not an option of nim_service")
        raise ValueError("service.%s: %s. Fix: remove it from the service (valid keys: %s)."
                         % (unknown[0], where, ", ".join(sorted(SERVICE_DICT_KEYS))))
    out = dict((k, v) for k, v in service.items())
    out.update((k, v) for k, v in args.items() if k != "service" and (v is not None or k not in out))
    return out


def legacy_proxy(args):
    """nim_service's `proxy` given as a dict: the NIM's outbound proxy under its old name, now `outbound_proxy`
    (`proxy` is the API server's proxy, as in the other modules and kubernetes.core, so that module_defaults
    for the whole group can set it). Returns (args, a deprecation message or None); ValueError when both are set."""
    proxy = args.get("proxy")
    if not isinstance(proxy, dict):
        return args, None
    if args.get("outbound_proxy"):
        raise ValueError("proxy: given as a dict (the old name of outbound_proxy) while outbound_proxy is set too. "
                         "Fix: keep only outbound_proxy.")
    out = dict((k, v) for k, v in args.items() if k != "proxy")
    out["outbound_proxy"] = proxy
    return out, ("nim_service: the NIM's outbound proxy is now `outbound_proxy`; `proxy` as a dict still sets it but "
                 "is deprecated. Rename it (in `service` dicts and nim_rollout_services too); `proxy` as a string is "
                 "the API server's proxy, as in the collection's other modules.")


def outbound_proxy(svc):
    """The outbound proxy of an unchecked service dict (nim_doctor's and nim_image_scan's `services`), under its
    name or its old one."""
    legacy = svc.get("proxy")
    return svc.get("outbound_proxy") or (legacy if isinstance(legacy, dict) else None) or {}


def secret_keys(p):
    """The keys a Secret of these nim_secret options carries: what is rendered, and what a Secret made
    elsewhere must have."""
    kind = p["kind"]
    if kind in SECRET_KEY_DEFAULT:
        return [p["key"] or SECRET_KEY_DEFAULT[kind]]
    if kind == "registry":
        return [".dockerconfigjson"]
    if kind == "tls":
        return ["tls.crt", "tls.key"]
    return sorted((p["data"] or {}).keys()) or list(p["keys"])


def service_options(args):
    """nim_service's options, complete, from task arguments (a `service` dict or not): the dict expanded,
    the options checked against the argument spec (defaults applied), the defaults that depend on other
    options filled in, and every rule that needs no cluster checked. Raises NimError naming the field and
    the fix. The benchmark and the tests build their services through this."""
    try:
        args = legacy_proxy(expand_service(args))[0]
    except ValueError as e:
        raise NimError(str(e))
    result = validator_for("nim_service").validate(args)
    if result.error_messages:
        raise NimError("; ".join(result.error_messages))
    return complete_service(result.validated_parameters)


def complete_service(p):
    """The last two steps of service_options(), for options already checked against the argument spec (by
    AnsibleModule or the action plugin): the defaults that depend on other options, then validate.service().
    Returns a new dict; runs once per call."""
    if p.get("service"):
        raise NimError("service: expanded by the nimguard.k8s.nim_service action plugin, which did not run here. "
                       "Fix: call the module as nimguard.k8s.nim_service in a task, or pass the options at the top level.")
    p = copy.deepcopy(p)
    delivery = p["secret_delivery"]
    if not delivery["mode"]:
        delivery["mode"] = "env" if p["backend"] == "operator" else "file"
    if p["state"] == "present":
        validate.service(p)
        image = p["image"]
        if not p["outbound_proxy"]["ca_init_image"]:
            p["outbound_proxy"]["ca_init_image"] = validate.main_image(image)
        pvc = p["storage"]["pvc"]
        if pvc and not pvc["name"] and p["backend"] == "native":  # the NIM Operator names its own claim
            pvc["name"] = "%s-model-store" % p["name"]
    else:
        validate.check_name(p["name"], "name", "dns1035")
    return p
