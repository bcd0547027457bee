# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_secret's options without a cluster: whether they carry a value, the list form (`secrets`) checked element by
element, and every secret value among them (for the scrubber). Pure, so that the nim_secrets filter (run in every
worker that templates it) imports no HTTP client."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import specs, validate
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import HASH_KEY_SECRET


def has_value(p):
    """Whether the options carry the Secret's value (else the module only verifies the live Secret)."""
    kind = p["kind"]
    if kind in specs.SECRET_KEY_DEFAULT:
        return p["value"] is not None
    if kind == "registry":
        return bool((p["registry"] or {}).get("password"))
    if kind == "tls":
        return bool((p["tls"] or {}).get("cert"))
    return p["data"] is not None


def elements(p):
    """The Secrets of one task, each as a full set of options, all checked: the task's own options, or with
    `secrets` each element over the task's (namespace, state, labels, annotations and the connection are the
    task's). Raises NimError naming the element and the field; runs before any read or write."""
    listed = p.get("secrets") is not None
    out, seen = [], set()
    for i, item in enumerate(p["secrets"] if listed else [p]):
        one = dict(p, secrets=None)
        one.update((k, v) for k, v in item.items() if k in specs.SECRET)
        try:
            _check(one, seen)
        except NimError as e:
            raise NimError(("secrets[%d] (%s): " % (i, item.get("name")) if listed else "") + e.msg)
        out.append(one)
    return out


def _check(p, seen):
    validate.check_name(p["name"], "name", "subdomain")
    validate.check_name(p["namespace"], "namespace", "dns1123")
    if p["name"] == HASH_KEY_SECRET:
        raise NimError("name: %s is the Secret holding the namespace's key for the collection's content hashes. Fix: "
                       "use another name." % HASH_KEY_SECRET)
    if p["name"] in seen:
        raise NimError("name: %s is given twice. Fix: list each Secret once." % p["name"])
    seen.add(p["name"])
    if p["state"] == "present" and has_value(p):
        validate.secret(p, specs.secret_keys(p))


def values(params):
    """Every secret value of nim_secret's options (the list form's elements too), as given: also unchecked
    arguments, where an element that is not a mapping may be a pasted value."""
    listed = params.get("secrets") if isinstance(params.get("secrets"), list) else []
    out = [element for element in listed if isinstance(element, str)]
    for secret in [params] + [e for e in listed if isinstance(e, dict)]:
        out.append(secret.get("value"))
        data = secret.get("data")
        out.extend(str(v) for v in (data.values() if isinstance(data, dict) else ()))
        reg = secret.get("registry")
        if isinstance(reg, dict) and reg.get("password"):
            out += [reg["password"], "%s:%s" % (reg.get("username") or "$oauthtoken", reg["password"])]
        tls = secret.get("tls")
        out.append(tls.get("key") if isinstance(tls, dict) else None)
    return out
