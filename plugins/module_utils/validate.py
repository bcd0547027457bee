# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules on option values that need no cluster, checked before the first request.

The argument specs (specs.py) say which options exist, their types and defaults; the rules here say
which values make sense (names Kubernetes accepts, a non-root user, an Ingress with TLS...). Each
raises NimError naming the field and the fix; nothing is rendered or sent here."""

from __future__ import annotations

import datetime
import re

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import CERT_MANAGER_PREFIX

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use", "bind",
              "escalate", "impersonate", "approve", "sign", "proxy"}
ENV_REFS = ("secret_key_ref", "config_map_key_ref", "field_ref")


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


def rules(items, allow_wildcards=False, field="extra_rules"):
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
    image = p["image"]
    if not image["repository"]:
        raise NimError("image.repository: missing. Fix: set it, e.g. nvcr.io/nim/meta/llama-3.1-8b-instruct.")
    for i, ps in enumerate(image["pull_secrets"]):
        check_name(ps, "image.pull_secrets[%d]" % i, "subdomain")
    _storage(p["storage"])
    _ingress(p["expose"]["ingress"])
    if p["resources"]["gpus"] < 0:
        raise NimError("resources.gpus: negative. Fix: use 0 or more.")
    if p["replicas"] < 0:
        raise NimError("replicas: negative. Fix: use 0 or more.")
    env(p["env"])
    if p["backend"] == "native" and p["rbac"]["create"]:
        rules(p["rbac"]["extra_rules"], p["rbac"]["allow_wildcards"], "rbac.extra_rules")


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
    if storage["host_path"] and not str(storage["host_path"]).startswith("/"):
        raise NimError("storage.host_path: must be absolute. Fix: use a path such as /mnt/nim-cache.")


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
    if any(k.startswith(CERT_MANAGER_PREFIX) for k in ingress.get("annotations") or {}):
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
