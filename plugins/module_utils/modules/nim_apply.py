# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_apply: generic objects (Namespace, RuntimeClass, ClusterIssuer, SecretStore...) converged with the
same connection, dry run and redaction as the other modules, and waited for."""

from __future__ import annotations

import time

from ansible_collections.nimguard.k8s.plugins.module_utils import specs, wait
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import Converger, ref
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None

NAME = "nim_apply"


def definitions(p):
    """The objects of `definition` (a dict, a list, a List, YAML text) or `src` (a YAML file)."""
    docs = p["definition"]
    if p["src"]:
        try:
            with open(p["src"]) as f:
                docs = list(yaml.safe_load_all(f))
        except (OSError, IOError) as e:
            raise NimError("src: cannot read %s (%s)." % (p["src"], e))
    if isinstance(docs, str):
        docs = list(yaml.safe_load_all(docs))
    if isinstance(docs, dict):
        docs = docs.get("items") if docs.get("kind", "").endswith("List") else [docs]
    out = []
    for i, doc in enumerate(docs or []):
        if not doc:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise NimError("definition[%d]: each object needs apiVersion, kind and metadata.name." % i)
        if not (doc.get("metadata") or {}).get("name"):
            raise NimError("definition[%d] (%s): metadata.name is required." % (i, doc["kind"]))
        out.append(doc)
    if not out:
        raise NimError("definition: no objects given. Fix: pass a dict, a list of dicts, or YAML text.")
    return out


def run(p, task):
    objs = definitions(p)
    client = task.client(p)
    conv = Converger(client, task.check_mode, task.diff, p["force_conflicts"])
    for obj in objs:
        res = client.resource(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if res.namespaced and not meta.get("namespace"):
            if not p["namespace"]:
                raise NimError("namespace: %s %s is namespaced; set metadata.namespace or the namespace option."
                               % (obj["kind"], meta["name"]))
            meta["namespace"] = p["namespace"]
        elif not res.namespaced:
            meta.pop("namespace", None)
    if p["state"] == "absent":
        conv.absent(objs)
        return conv.result()
    found = conv.converge(objs)
    if p["wait"] and not task.check_mode:
        cond = p["wait_condition"] or specs.READY
        deadline = time.monotonic() + p["wait_timeout"]
        for obj in objs:
            if obj["kind"] == "Deployment":
                wait.rollout(client, obj["metadata"]["namespace"], obj["metadata"]["name"], p["wait_timeout"])
            else:
                wait.condition(client, obj, cond["type"], cond["status"], deadline)
    return conv.result(resources=[ref(o) for o in found.values() if o])
