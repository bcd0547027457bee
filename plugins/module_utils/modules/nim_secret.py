# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_secret: a Secret from a value, or, without one, the check that a Secret made elsewhere has its keys. With
`secrets`, many Secrets in one task: a loop costs a task run per item, this form one task and one read."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import checks, render, specs
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import Converger, hash_key, ref
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import HASH_KEY_SECRET
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import secret_content_hash
from ansible_collections.nimguard.k8s.plugins.module_utils.secrets import elements, has_value

NAME = "nim_secret"


def run(p, task):
    params = elements(p)
    client = task.client(p)
    conv = Converger(client, task.check_mode, task.diff, p["force_conflicts"])
    ns = p["namespace"]
    if p["state"] == "absent":
        conv.absent([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": one["name"], "namespace": ns}}
                     for one in params])
        return conv.result()
    if len(params) > 1:  # one namespace-wide LIST of managed Secrets answers every read below
        client.shared_lists = True
    writes = any(has_value(one) for one in params)
    found = checks.read(client, ("v1", "Secret"), ns, [one["name"] for one in params] + [HASH_KEY_SECRET])
    plan = [_plan(one, found[one["name"]]) for one in params]  # every Secret checked before the first write
    key = hash_key(conv, ns, create=writes, live=found[HASH_KEY_SECRET])
    written = [(obj, live) for obj, live in plan if obj is not None]
    conv.converge([obj for obj, dummy in written], known=[live for dummy, live in written])
    conv.objects.extend(dict(ref(live), action="verified") for obj, live in plan if obj is None)
    shown = [obj or live for obj, live in plan]  # what each Secret holds after this run
    described = [dict(content_hash=secret_content_hash(s, key), secret=dict(
        name=one["name"], namespace=ns, type=s.get("type"), keys=sorted(s.get("data") or {})))
        for one, s in zip(params, shown)]
    if p.get("secrets") is None:
        return conv.result(**described[0])
    return conv.result(secrets=[dict(d["secret"], content_hash=d["content_hash"]) for d in described])


def _plan(p, live):
    """(the Secret to apply, its live copy); (None, live) for a Secret that is only verified: without a value, it
    must exist and carry the expected keys (the seed's 'secret not found')."""
    if not has_value(p):
        checks.secret(checks.Preflight([]), live, p["namespace"], p["name"], specs.secret_keys(p), p["kind"],
                      field="name", key_field="key")
        return None, live
    obj = render.render_secret(p)
    if live is not None and live.get("type", "Opaque") != obj["type"]:
        raise NimError("Secret %s/%s exists with type %s, and a Secret's type cannot change to %s. Fix: delete it "
                       "first (state: absent) or use another name." % (p["namespace"], p["name"],
                                                                       live.get("type"), obj["type"]))
    return obj, live
