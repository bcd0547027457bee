# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules on option values that need no cluster, checked before the first request.

The argument specs (specs.py) say which options exist, their types and defaults; the rules here say
which values make sense (names Kubernetes accepts, a non-root user, an Ingress with TLS...). Each
raises NimError naming the field and the fix; nothing is rendered or sent here."""

from __future__ import annotations

import datetime
import ipaddress
import posixpath
import re

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import CERT_MANAGER_ISSUERS, TLS_ACME

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use", "bind",
              "escalate", "impersonate", "approve", "sign", "proxy"}
ENV_REFS = ("secret_key_ref", "config_map_key_ref", "field_ref")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What the Vault agent's HCL and Go template may be given: no quote, backslash, brace, '$', '%' or whitespace,
# so a value can never close its string and open a block of its own (quoting alone is not enough: HCL reads
# ${...} inside a string).
VAULT_VALUE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.@:/+=]*$")
VAULT_ADDRESS = re.compile(r"^(https?)://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[-A-Za-z0-9_./]*)?$")
# OpenShift SCCs that open the node (privileged containers, host namespaces, host ports or host paths of any
# kind): rbac.scc may name one only with allow_privileged_scc.
PRIVILEGED_SCCS = ("privileged", "hostaccess", "hostnetwork", "hostnetwork-v2", "node-exporter")
# Rules that let a service account become more than it is: (why, verbs, (api group, resource) pairs; None: any).
# Refused in extra_rules unless allow_dangerous_rules is set.
DANGEROUS_RULES = (
    ("grants RBAC rights it does not hold itself", {"escalate", "bind"}, None),
    ("acts as another user, group or service account", {"impersonate"}, None),
    ("reads every Secret of the namespace", {"get", "list", "watch"}, [("", "secrets")]),
    ("runs commands in other pods", {"create", "get"}, [("", "pods/exec"), ("", "pods/attach")]),
    ("scales workloads", {"update", "patch"}, [("*", "*/scale")]),
)


def check_name(value, field, kind="dns1123"):
    pattern, limit, rule = {
        "dns1035": (DNS1035, 63, "lower-case letters, digits and '-', starting with a letter"),
        "dns1123": (DNS1123_LABEL, 63, "lower-case letters, digits and '-', starting and ending alphanumeric"),
        "subdomain": (DNS1123_SUBDOMAIN, 253, "lower-case letters, digits, '-' and '.'"),
    }[kind]
    if not isinstance(value, str) or not value or len(value) > limit or not pattern.match(value):
        raise NimError("%s: %r is not a valid name. Fix: use at most %d %s (for example 'llama3-8b')."
                       % (field, value, limit, rule))
    return value


def secret_key(key, field):
    if not isinstance(key, str) or not SECRET_KEY.match(key) or len(key) > 253:
        raise NimError("%s: %r is not a valid Secret key. Fix: use letters, digits, '-', '_', '.'." % (field, key))


def rules(items, allow_wildcards=False, field="extra_rules", allow_dangerous=False):
    """RBAC rules in the options' shape (api_groups, resources, verbs, resource_names)."""
    for i, rule in enumerate(items or []):
        where = "%s[%d]" % (field, i)
        verbs, resources = rule.get("verbs") or [], rule.get("resources") or []
        if not verbs or not resources:
            raise NimError("%s: a rule needs `verbs` and `resources`. Fix: e.g. {api_groups: [''], resources: "
                           "[configmaps], verbs: [get, list]}." % where)
        unknown = sorted(set(verbs) - RBAC_VERBS - {"*"})
        if unknown:
            raise NimError("%s.verbs: unknown verb(s) %s. Fix: use some of %s."
                           % (where, ", ".join(unknown), ", ".join(sorted(RBAC_VERBS))))
        groups = rule.get("api_groups") or []
        if not allow_wildcards and ("*" in verbs or "*" in resources or "*" in groups):
            raise NimError("%s: wildcards ('*') grant far more than a NIM service needs. Fix: list the verbs, "
                           "resources and api_groups, or set allow_wildcards: true if you really mean it." % where)
        if not allow_dangerous:
            _dangerous_rule(where, [""] if rule.get("api_groups") is None else groups, resources, verbs)


def _matches(pattern, value):
    """An RBAC name against a rule's entry: '*' anything, '*/scale' any resource's scale subresource."""
    return "*" in (pattern, value) or pattern == value or (value.startswith("*/") and pattern.endswith(value[1:])) or (
        pattern.startswith("*/") and value.endswith(pattern[1:]))


def _dangerous_rule(where, groups, resources, verbs):
    for why, risky_verbs, targets in DANGEROUS_RULES:
        hit = sorted(v for v in verbs if v in risky_verbs or v == "*")
        if not hit:
            continue
        if targets is not None:
            found = [(g, r) for g, r in targets if any(_matches(g, x) for x in groups)
                     and any(_matches(r, x) for x in resources)]
            if not found:
                continue
            what = "%s on %s" % ("/".join(hit), ", ".join(target[1] for target in found))
        else:
            what = "/".join(hit)
        raise NimError("%s: the rule grants %s, which %s. Fix: remove it from the rule, or set "
                       "allow_dangerous_rules: true if the service really needs it." % (where, what, why))


def scc(name, allow_privileged, field="scc"):
    """An SCC the ServiceAccount may use: none of the node-opening ones without an explicit opt-in."""
    if name in PRIVILEGED_SCCS and not allow_privileged:
        raise NimError("%s: %r lets pods reach the node (privileged containers, host namespaces or host paths). "
                       "Fix: leave %s unset (nonroot, or hostmount-anyuid for storage.host_path), or set "
                       "allow_privileged_scc: true if the service really needs it." % (field, name, field))


def env(items, field="env"):
    """Environment variables in the options' shape: a value, or exactly one value_from reference."""
    for i, item in enumerate(items or []):
        name = item.get("name")
        if not name or not ENV_NAME.match(name):
            raise NimError("%s[%d].name: %r is not a valid environment variable name. Fix: use letters, digits, '_', '-', '.' "
                           "and do not start with a digit." % (field, i, name))
        vf = item.get("value_from")
        if not vf:
            continue
        if item.get("value") is not None:
            raise NimError("%s[%d]: both value and value_from are set. Fix: keep one." % (field, i))
        refs = [k for k in ENV_REFS if vf.get(k)]
        if len(refs) != 1:
            raise NimError("%s[%d].value_from: Fix: set exactly one of secret_key_ref, config_map_key_ref, "
                           "field_ref." % (field, i))
        src = vf[refs[0]]
        if refs[0] != "field_ref" and (not src.get("name") or not src.get("key")):
            raise NimError("%s[%d].value_from.%s: Fix: set both name and key." % (field, i, refs[0]))


def service(p):
    """nim_service options (defaults applied) that are about to be rendered."""
    check_name(p["name"], "name", "dns1035")
    check_name(p["namespace"], "namespace", "dns1123")
    if p["user_id"] == 0:
        raise NimError("user_id: 0 is root, and NIM services must run as a non-root user. Fix: use a non-zero "
                       "user_id (the default is 1000).")
    if p["group_id"] == 0:
        raise NimError("group_id: 0 is the root group. Fix: use a non-zero group_id (the default is 2000).")
    if p["user_id"] < 0 or p["group_id"] < 0:
        raise NimError("user_id/group_id: negative. Fix: use positive integers.")
    mode = p["secret_delivery"]["mode"]
    if not p["auth_secret"] and mode != "vault_agent":
        raise NimError("auth_secret: a NIM service needs the name of the Secret holding its NGC API key. Fix: create "
                       "it with nimguard.k8s.nim_secret (kind: ngc) and set auth_secret to its name.")
    if p["auth_secret"]:
        check_name(p["auth_secret"], "auth_secret", "subdomain")
    secret_key(p["auth_secret_key"], "auth_secret_key")
    if p["hf_secret"]:
        check_name(p["hf_secret"], "hf_secret", "subdomain")
    secret_key(p["hf_secret_key"], "hf_secret_key")
    if p["backend"] == "operator" and p["auth_secret_key"] != "NGC_API_KEY":
        raise NimError("auth_secret_key: the NIM Operator reads the key NGC_API_KEY of auth_secret, not %r. Fix: store "
                       "the NGC API key under NGC_API_KEY, or use backend: native, which reads any key."
                       % p["auth_secret_key"])
    if p["backend"] == "operator" and mode != "env":
        raise NimError("secret_delivery.mode: the NIM Operator injects the key as an env var only. Fix: set "
                       "secret_delivery.mode: env with backend: operator, or use backend: native for %s." % mode)
    if mode == "vault_agent":
        vault = p["secret_delivery"]["vault"] or {}
        missing = [k for k in ("address", "role", "secret_path") if not vault.get(k)]
        if missing:
            raise NimError("secret_delivery.vault: %s required for mode vault_agent. Fix: set them (e.g. address: "
                           "https://vault.example.com:8200, role: nim, secret_path: secret/data/nim/ngc)."
                           % ", ".join(missing))
        _vault(vault, p["secret_delivery"]["mount_path"])
    image = p["image"]
    if not image["repository"]:
        raise NimError("image.repository: missing. Fix: set it, e.g. nvcr.io/nim/meta/llama-3.1-8b-instruct.")
    main_image(image)
    if p["backend"] == "operator" and not image["tag"]:
        raise NimError("image.tag: the NIM Operator's NIMService names its image by tag. Fix: set image.tag (with "
                       "backend: operator the pods run the tag, not image.digest).")
    for i, ps in enumerate(image["pull_secrets"]):
        check_name(ps, "image.pull_secrets[%d]" % i, "subdomain")
    _storage(p["storage"])
    _ingress(p["expose"]["ingress"])
    if p["resources"]["gpus"] < 0:
        raise NimError("resources.gpus: negative. Fix: use 0 or more.")
    if p["replicas"] < 0:
        raise NimError("replicas: negative. Fix: use 0 or more.")
    env(p["env"])
    if p["network_policy"]["enabled"]:
        cidrs(p["network_policy"]["cluster_cidrs"], "network_policy.cluster_cidrs")
        proxy_endpoint(p["outbound_proxy"])
    if p["backend"] == "native" and p["rbac"]["create"]:
        rbac = p["rbac"]
        rules(rbac["extra_rules"], rbac["allow_wildcards"], "rbac.extra_rules", rbac["allow_dangerous_rules"])
        scc(rbac["scc"], rbac["allow_privileged_scc"], "rbac.scc")


def cidrs(items, field):
    """IPv4 CIDRs (the NetworkPolicy's HTTPS rule is 0.0.0.0/0 less these), normalised."""
    out = []
    for i, item in enumerate(items or []):
        try:
            net = ipaddress.IPv4Network(str(item), strict=False)
        except ValueError:
            raise NimError("%s[%d]: %r is not an IPv4 CIDR. Fix: give the cluster's pod and service ranges, e.g. "
                           "10.244.0.0/16 and 10.96.0.0/12 (kubectl cluster-info dump | grep -m1 cluster-cidr)."
                           % (field, i, item))
        out.append(str(net))
    return out


def proxy_endpoint(proxy):
    """(host, port) of the NIM's outbound proxy (https_proxy, else http_proxy), or None: the NetworkPolicy then
    lets the pods reach that port only."""
    for key in ("https_proxy", "http_proxy"):
        url = proxy.get(key)
        if not url:
            continue
        rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]  # no scheme, path or user:password
        host, port = rest, ""
        if ":" in rest and not rest.endswith("]"):
            host, port = rest.rsplit(":", 1)
        if port and not port.isdigit():
            raise NimError("outbound_proxy.%s: the port is not a number. Fix: use http://HOST:PORT." % key)
        return host.strip("[]"), int(port or (443 if url.startswith("https://") else 80))
    return None


def _vault(vault, mount_path):
    """The values the Vault agent's configuration is written from (pod.py quotes them as well)."""
    address = VAULT_ADDRESS.match(vault["address"])
    if not address:
        raise NimError("secret_delivery.vault.address: %r is not a Vault URL. Fix: use https://HOST[:PORT] (letters, "
                       "digits, '.', '-'; no user, query or spaces), e.g. https://vault.example.com:8200."
                       % vault["address"])
    if address.group(1) == "http" and not vault["allow_http"]:
        raise NimError("secret_delivery.vault.address: %s is plain HTTP: the agent's Kubernetes token and the NGC "
                       "key would cross the network in clear. Fix: use https:// (with vault.ca_config_map for a "
                       "private CA), or set secret_delivery.vault.allow_http: true for a Vault on the pod's own "
                       "node or mesh." % vault["address"])
    keys = ["role", "auth_mount_path", "secret_path", "secret_field"]
    if vault.get("hf_secret_path"):
        keys += ["hf_secret_path", "hf_secret_field"]
    for key in keys:
        if not VAULT_VALUE.match(str(vault[key] or "")) or "//" in vault[key] or ".." in vault[key]:
            raise NimError("secret_delivery.vault.%s: %r has characters the agent's configuration cannot hold "
                           "safely. Fix: use letters, digits and - _ . @ : / + = (no quotes, braces, '$', '%%', "
                           "'..' or spaces)." % (key, vault[key]))
    if not VAULT_VALUE.match(mount_path.lstrip("/")) or not mount_path.startswith("/") or ".." in mount_path:
        raise NimError("secret_delivery.mount_path: %r is not a plain absolute path. Fix: use letters, digits and "
                       "- _ . / (the default is /var/run/secrets/nim)." % mount_path)


def main_image(image, where="image"):
    """The NIM container's image of a service's `image` options: repository@digest when the digest is pinned,
    else repository:tag. No tag is assumed: 'latest' is whatever was pushed last."""
    if image.get("digest"):
        if not DIGEST.match(str(image["digest"])):
            raise NimError("%s.digest: %r is not a sha256 digest. Fix: use sha256:<64 hex digits>, as nim_image_scan "
                           "returns it (digests) or `crane digest IMAGE:TAG` prints it." % (where, image["digest"]))
        return "%s@%s" % (image["repository"], image["digest"])
    if not image.get("tag"):
        raise NimError("%s.tag: missing. Fix: name the release to run, e.g. tag: \"1.3.3\" (no 'latest' is assumed), "
                       "or pin image.digest." % where)
    return "%s:%s" % (image["repository"], image["tag"])


def _storage(storage):
    kinds = [k for k in ("pvc", "host_path", "empty_dir") if storage.get(k)]
    if len(kinds) > 1:
        raise NimError("storage: several storage kinds given (%s). Fix: choose one of pvc, host_path, empty_dir." % ", ".join(kinds))
    pvc = storage["pvc"]
    if pvc:
        if pvc["create"] and not pvc["size"]:
            raise NimError("storage.pvc.size: required when storage.pvc.create is true. Fix: set storage.pvc.size (e.g. 50Gi).")
        if not pvc["create"] and not pvc["name"]:
            raise NimError("storage.pvc.name: missing. Fix: name the existing claim, or set storage.pvc.create: true.")
    if storage["host_path"]:
        host_path(storage["host_path"], storage["host_path_prefixes"])


def host_path(path, prefixes, field="storage.host_path"):
    """A node directory under one of the allowed prefixes, named without '..' or '//' (which could climb out)."""
    path = str(path)
    if not path.startswith("/"):
        raise NimError("%s: must be absolute. Fix: use a path such as /mnt/nim-cache." % field)
    norm = posixpath.normpath(path)
    if path.startswith("//") or norm not in (path, path.rstrip("/")):
        raise NimError("%s: %r is not a normalised path ('..', '.', '//'). Fix: write it as %s."
                       % (field, path, norm))
    allowed = [p.rstrip("/") for p in prefixes or [] if str(p).startswith("/") and p.rstrip("/")]
    if not any(path == p or path.startswith(p + "/") for p in allowed):
        raise NimError("%s: %r is not under an allowed prefix (%s): a hostPath volume reaches the node's own files. "
                       "Fix: use a directory under one of them, or add its parent to storage.host_path_prefixes."
                       % (field, path, ", ".join(allowed) or "none configured"))


def _ingress(ingress):
    if not ingress["enabled"]:
        return
    if not ingress["host"]:
        raise NimError("expose.ingress.host: an Ingress needs a host name. Fix: set expose.ingress.host (e.g. nim.example.com).")
    if not ingress_tls_secret(ingress, "") and not ingress["allow_plain_http"]:
        raise NimError(
            "expose.ingress: refusing an Ingress without TLS for %s. Fix (either): set "
            "expose.ingress.tls_secret_name to a TLS Secret (nimguard.k8s.nim_secret kind: tls), or add the "
            "annotation cert-manager.io/cluster-issuer: <issuer> to expose.ingress.annotations. To serve plain "
            "HTTP anyway, set expose.ingress.allow_plain_http: true." % ingress["host"])


def ingress_tls_secret(ingress, name):
    """The TLS Secret an Ingress of these options serves from, or None: plain HTTP."""
    if ingress.get("tls_secret_name"):
        return ingress["tls_secret_name"]
    annotations = ingress.get("annotations") or {}
    if any(annotations.get(k) for k in CERT_MANAGER_ISSUERS) or str(annotations.get(TLS_ACME)).lower() == "true":
        return "%s-tls" % name  # cert-manager's ingress-shim fills this Secret
    return None


def secret(p, keys):
    """nim_secret options that carry a value; `keys`: the Secret's keys (specs.secret_keys())."""
    kind = p["kind"]
    if kind in ("ngc", "huggingface"):
        key = keys[0]
        secret_key(key, "key")
        value = p["value"]
        if not isinstance(value, str) or not value.strip():
            raise NimError("value: the %s secret value is empty. Fix: pass the key, e.g. value: \"{{ "
                           "lookup('ansible.builtin.env', '%s') }}\" or an Ansible Vault variable." % (kind, key))
    elif kind == "tls":
        tls_pair(p["tls"])
    elif kind == "generic":
        items = p["data"]
        if not isinstance(items, dict) or not items:
            raise NimError("data: a generic secret needs a non-empty dict of key: value. Fix: data: {API_KEY: ...}.")
        for name in items:
            secret_key(name, "data")


def tls_pair(tls):
    """A TLS Secret's certificate and key: PEM, belonging together, not expired (unless allowed)."""
    try:
        from cryptography import x509  # optional: only TLS Secrets need it, where the task runs
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise NimError("tls: checking the certificate needs the Python package 'cryptography' where the task runs "
                       "(pip install cryptography).")
    try:
        cert = x509.load_pem_x509_certificate(tls["cert"].encode("utf-8"))
    except ValueError:
        raise NimError("tls.cert: not a PEM certificate. Fix: pass the PEM text (-----BEGIN CERTIFICATE-----...).")
    if not tls["key"]:
        raise NimError("tls.key: a TLS secret needs the private key as well as tls.cert. Fix: set tls.key "
                       "(e.g. \"{{ lookup('ansible.builtin.file', 'tls.key') }}\" from a vaulted file).")
    try:
        key = serialization.load_pem_private_key(tls["key"].encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise NimError("tls.key: not an unencrypted PEM private key. Fix: pass the PEM key without a passphrase.")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.PEM, pub) != key.public_key().public_bytes(
            serialization.Encoding.PEM, pub):
        raise NimError("tls: tls.cert and tls.key do not belong together (their public keys differ). Fix: pass the "
                       "key that was used to request this certificate.")
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    if not_after <= datetime.datetime.now(datetime.timezone.utc) and not tls["allow_expired"]:
        raise NimError("tls.cert: the certificate expired on %s. Fix: renew it (or let cert-manager issue one via "
                       "the cert-manager.io/cluster-issuer annotation)." % not_after.isoformat())
