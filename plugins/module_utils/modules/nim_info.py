# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_info: read objects for checks in roles and playbooks; Secrets come back redacted like everywhere else."""

from __future__ import annotations

import time

from ansible_collections.nimguard.k8s.plugins.module_utils import wait
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import clean

NAME = "nim_info"


def run(p, task):
    client = task.client(p)
    if p["rollouts"]:  # Deployments' rollouts, waited for together (nim_rollout, after applying every service)
        deps = wait.rollouts(client, [(r["namespace"], r["name"]) for r in p["rollouts"]],
                             p["wait_timeout"], progress=task.progress)
        return dict(changed=False, resources=[clean(d) for d in deps], exists=True,
                    rollouts=dict(("%s/%s" % (d["metadata"]["namespace"], d["metadata"]["name"]),
                                   wait.rollout_status(d)) for d in deps))
    res = client.resource(p["api_version"], p["kind"])
    namespace = p["namespace"] if res.namespaced else None
    if p["name"] and p["wait_condition"]:  # the same wait as nim_apply's, on an object someone else made
        cond = p["wait_condition"]
        obj = dict(apiVersion=p["api_version"], kind=p["kind"], metadata=dict(name=p["name"], namespace=namespace))
        items = [wait.condition(client, obj, cond["type"], cond["status"], time.monotonic() + p["wait_timeout"])]
    elif p["name"]:
        live = client.get(res, namespace, p["name"])
        items = [live] if live else []
    else:
        items = client.list(res, namespace, ",".join(p["label_selectors"]) or None)
    out = []
    for item in items:
        item.setdefault("apiVersion", res.api_version)
        item.setdefault("kind", res.kind)
        status = item.get("status")
        cleaned = clean(item)
        if status is not None:
            cleaned["status"] = status
        out.append(cleaned)
    return dict(changed=False, resources=out, exists=bool(out))
