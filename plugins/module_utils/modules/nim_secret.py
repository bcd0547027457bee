# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_secret: a Secret from a value, or, without one, the check that a Secret made elsewhere has its keys."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import checks, render, specs, validate
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import Converger, hash_key, ref
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import HASH_KEY_SECRET
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import secret_content_hash

NAME = "nim_secret"


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


def run(p, task):
    validate.check_name(p["name"], "name", "subdomain")
    validate.check_name(p["namespace"], "namespace", "dns1123")
    if p["name"] == HASH_KEY_SECRET:
        raise NimError("name: %s is the Secret holding the namespace's key for the collection's content hashes. Fix: "
                       "use another name." % HASH_KEY_SECRET)
    client = task.client(p)
    conv = Converger(client, task.check_mode, task.diff, p["force_conflicts"])
    if p["state"] == "absent":
        meta = {"name": p["name"], "namespace": p["namespace"]}
        conv.absent([{"apiVersion": "v1", "kind": "Secret", "metadata": meta}])
        return conv.result()
    keys = specs.secret_keys(p)
    if not has_value(p):
        return _verify(conv, p, keys)
    validate.secret(p, keys)
    obj = render.render_secret(p)
    found = checks.read(client, ("v1", "Secret"), p["namespace"], [p["name"], HASH_KEY_SECRET])
    live, key_secret = found[p["name"]], found[HASH_KEY_SECRET]
    if live is not None and live.get("type", "Opaque") != obj["type"]:
        raise NimError("Secret %s/%s exists with type %s, and a Secret's type cannot change to %s. Fix: delete it "
                       "first (state: absent) or use another name." % (p["namespace"], p["name"],
                                                                       live.get("type"), obj["type"]))
    key = hash_key(conv, p["namespace"], live=key_secret)
    conv.converge([obj], known=[live])
    return conv.result(content_hash=secret_content_hash(obj, key),
                       secret=dict(name=p["name"], namespace=p["namespace"], type=obj["type"], keys=sorted(obj["data"])))


def _verify(conv, p, keys):
    """No value given: the Secret must exist and carry the expected keys (the seed's 'secret not found'). Writes
    nothing: without the namespace's hash key yet, the content_hash is this run's own."""
    client = conv.client
    live = client.get(client.resource("v1", "Secret"), p["namespace"], p["name"])
    checks.secret(checks.Preflight([]), live, p["namespace"], p["name"], keys, p["kind"], field="name", key_field="key")
    return dict(changed=False, objects=[dict(ref(live), action="verified")],
                content_hash=secret_content_hash(live, hash_key(conv, p["namespace"], create=False)),
                secret=dict(name=p["name"], namespace=p["namespace"], type=live.get("type"),
                            keys=sorted(live.get("data") or {})))
