# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs of every module, in one place: the modules and the action plugins validate the
same options the same way (the action plugin runs them in the controller without AnsiballZ)."""

from __future__ import annotations

import copy

from ansible_collections.nimguard.k8s.plugins.module_utils.client import CONNECTION_ARGS

_COMMON = dict(
    namespace=dict(type="str"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    force_conflicts=dict(type="bool", default=False),
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
    name=dict(type="str", required=True),
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
    tls=dict(type="dict", options=dict(
        cert=dict(type="str"),
        key=dict(type="str", no_log=True),
        ca=dict(type="str"),
        allow_expired=dict(type="bool", default=False),
    )),
)

RBAC = dict(
    name=dict(type="str", required=True),
    openshift=dict(type="str", default="auto", choices=["auto", "yes", "no"]),
    scc=dict(type="str"),
    host_path=dict(type="bool", default=False),
    proxy_ca=dict(type="bool", default=False),
    extra_rules=_RULE,
    allow_wildcards=dict(type="bool", default=False),
    automount_service_account_token=dict(type="bool", default=False),
)

_PROBE = dict(type="dict", default={}, options=dict(
    enabled=dict(type="bool", default=True),
    path=dict(type="str"),
    initial_delay_seconds=dict(type="int"),
    period_seconds=dict(type="int"),
    timeout_seconds=dict(type="int"),
    failure_threshold=dict(type="int"),
))

SERVICE = dict(
    name=dict(type="str", required=True),
    backend=dict(type="str", default="native", choices=["native", "operator"]),
    auth_secret=dict(type="str", no_log=False),
    auth_secret_key=dict(type="str", default="NGC_API_KEY", no_log=False),
    image=dict(type="dict", options=dict(
        repository=dict(type="str", required=True),
        tag=dict(type="str", default="latest"),
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
        empty_dir=dict(type="dict", options=dict(size_limit=dict(type="str"),
                                                 medium=dict(type="str", choices=["", "Memory"]))),
    )),
    proxy=dict(type="dict", default={}, options=dict(
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
    probes=dict(type="dict", default={}, options=dict(startup=_PROBE, liveness=_PROBE, readiness=_PROBE)),
    replicas=dict(type="int", default=1),
    pod_annotations=dict(type="dict", default={}),
    network_policy=dict(type="dict", default={}, options=dict(
        enabled=dict(type="bool", default=True),
        ingress_namespace_selector=dict(type="dict", default={"kubernetes.io/metadata.name": "ingress-nginx"}),
        ingress_pod_selector=dict(type="dict", default={}),
        allow_dns=dict(type="bool", default=True),
        allow_https=dict(type="bool", default=True),
        extra_ingress=dict(type="list", elements="dict", default=[]),
        extra_egress=dict(type="list", elements="dict", default=[]),
    )),
    secret_delivery=dict(type="dict", default={}, no_log=False, options=dict(
        mode=dict(type="str", choices=["env", "file", "vault_agent"]),
        mount_path=dict(type="str", default="/var/run/secrets/nim"),
        export_env=dict(type="bool", default=True),
        command=dict(type="list", elements="str"),
        vault=dict(type="dict", options=dict(
            address=dict(type="str"),
            role=dict(type="str"),
            secret_path=dict(type="str", no_log=False),
            secret_field=dict(type="str", default="ngc_api_key", no_log=False),
            auth_mount_path=dict(type="str", default="kubernetes"),
            audience=dict(type="str", default="vault"),
            image=dict(type="str", default="hashicorp/vault:1.21.4"),
            refresh=dict(type="bool", default=False),
            ca_config_map=dict(type="str"),
        )),
    )),
    restart_on_rotation=dict(type="bool", default=True),
    rbac=dict(type="dict", default={}, options=dict(
        create=dict(type="bool", default=True),
        openshift=dict(type="str", default="auto", choices=["auto", "yes", "no"]),
        scc=dict(type="str"),
        extra_rules=_RULE,
        allow_wildcards=dict(type="bool", default=False),
        automount_service_account_token=dict(type="bool", default=False),
    )),
    rollout=dict(type="dict", default={}, options=dict(max_surge=dict(type="raw"))),
    preflight=dict(type="bool", default=True),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=600),
    service=dict(type="dict"),
)

# nim_service's `service`: a whole service as one dict (a role's loop item), so that a loop templates one
# expression per item instead of one per option (ansible-core compiles each templated option anew for
# every item). Connection options are not taken from it: service data cannot point the task elsewhere.
SERVICE_DICT_KEYS = frozenset(SERVICE).union(_COMMON).difference(["service"])
_CONNECTION_NAMES = frozenset(CONNECTION_ARGS).union(*(a.get("aliases", []) for a in CONNECTION_ARGS.values()))

_WAIT_CONDITION = dict(type="dict", options=dict(
    type=dict(type="str", default="Ready"),
    status=dict(type="str", default="True", choices=["True", "False", "Unknown"]),
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
    kind=dict(type="str", required=True),
    name=dict(type="str"),
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
)

_SPECIFIC = dict(nim_secret=(SECRET, dict(mutually_exclusive=[["value", "data"]])),
                 nim_rbac=(RBAC, {}),
                 nim_service=(SERVICE, dict(required_if=[["state", "present", ["image"]]])),
                 nim_apply=(APPLY, dict(mutually_exclusive=[["definition", "src"]],
                                        required_one_of=[["definition", "src"]])),
                 nim_doctor=(DOCTOR, {}),
                 nim_info=(INFO, {}))


def spec(module):
    """kwargs for AnsibleModule / ArgumentSpecValidator: argument_spec plus the constraints."""
    options, constraints = _SPECIFIC[module]
    argument_spec = copy.deepcopy(CONNECTION_ARGS)
    if module == "nim_service":
        argument_spec["api_proxy"].pop("aliases")  # `proxy` is the NIM's outbound proxy here
    if module in ("nim_doctor", "nim_info"):
        argument_spec["namespace"] = dict(type="str")
    else:
        argument_spec.update(copy.deepcopy(_COMMON))
    argument_spec.update(copy.deepcopy(options))
    if module == "nim_apply":
        for key in ("labels", "annotations"):
            argument_spec.pop(key)
    elif module != "nim_info":
        argument_spec["namespace"]["required"] = True
    out = dict(argument_spec=argument_spec, supports_check_mode=True)
    out.update(copy.deepcopy(constraints))
    return out


def expand_service(args):
    """nim_service args with the keys of `service` moved to the top level (options set there win).
    Raises ValueError naming the key and the fix; values never appear in the message."""
    service = args.get("service")
    if service is None:
        return args
    if not isinstance(service, dict):
        raise ValueError("service: expected a dict of nim_service options, got %s. Fix: pass a mapping such as "
                         "{name: llama, image: {repository: ...}}." % type(service).__name__)
    unknown = sorted((str(k) for k in service if k not in SERVICE_DICT_KEYS),
                     key=lambda k: (k not in _CONNECTION_NAMES, k))  # a connection option first: the worse mistake
    if unknown:
        where = ("a connection option: set it on the task or in module_defaults"
                 if unknown[0] in _CONNECTION_NAMES else "not an option of nim_service")
        raise ValueError("service.%s: %s. Fix: remove it from the service (valid keys: %s)."
                         % (unknown[0], where, ", ".join(sorted(SERVICE_DICT_KEYS))))
    out = dict((k, v) for k, v in service.items())
    out.update((k, v) for k, v in args.items() if k != "service" and (v is not None or k not in out))
    return out


def validator_for(module):
    """An ArgumentSpecValidator with the module's spec and constraints (used by the action plugin)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    kwargs = spec(module)
    return ArgumentSpecValidator(kwargs["argument_spec"], mutually_exclusive=kwargs.get("mutually_exclusive"),
                                 required_together=kwargs.get("required_together"),
                                 required_one_of=kwargs.get("required_one_of"),
                                 required_if=kwargs.get("required_if"),
                                 required_by=kwargs.get("required_by"))
