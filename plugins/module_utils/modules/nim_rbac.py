# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_rbac: the ServiceAccount, Role and RoleBinding of a service deployed by other means."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import checks, render, validate
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import Converger, prune_scope

NAME = "nim_rbac"


def run(p, task):
    name = validate.check_name(p["name"], "name", "dns1123")
    validate.check_name(p["namespace"], "namespace", "dns1123")
    validate.rules(p["extra_rules"], p["allow_wildcards"], allow_dangerous=p["allow_dangerous_rules"])
    validate.scc(p["scc"], p["allow_privileged_scc"])
    client = task.client(p)
    conv = Converger(client, task.check_mode, task.diff, p["force_conflicts"])
    prune = prune_scope(name, ["rbac"], render.RBAC_KINDS, p["namespace"])
    if p["state"] == "absent":
        conv.absent(conv.read([], prune)[1])
        return conv.result()
    on_openshift = checks.openshift(client, p["openshift"])
    scc = render.scc_for(p["host_path"], p["scc"]) if on_openshift else None
    objs = render.render_rbac(name, p["namespace"], on_openshift, scc, render.role_rules(p["extra_rules"]),
                              p["automount_service_account_token"], p["labels"], p["annotations"])
    conv.converge(objs, prune)
    return conv.result(service_account=name, openshift=on_openshift, scc=scc)
