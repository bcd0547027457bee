#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_rbac
short_description: The least-privilege ServiceAccount, Role and RoleBinding of a NIM service
version_added: 0.1.0
description:
  - Creates the ServiceAccount, Role and RoleBinding named after a NIM service, as the NIM Operator does, with
    nothing granted by default and C(automountServiceAccountToken=false).
  - On OpenShift (detected through the C(security.openshift.io) API group, or forced with O(openshift)) the Role
    may C(use) exactly one SecurityContextConstraints - V(nonroot) by default, V(hostmount-anyuid) when the
    service uses hostPath storage.
  - O(extra_rules) adds custom permissions, validated; wildcards are refused unless O(allow_wildcards=true).
  - Objects this module made for the service and no longer renders are pruned (found by their labels).
  - M(nimguard.k8s.nim_service) renders the same three objects itself (option O(nimguard.k8s.nim_service#module:rbac)),
    so use this module for services deployed by other means, or set C(rbac.create=false) there.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY, nimguard.k8s.connection.STATE]
options:
  name:
    description: Name of the NIM service; the three objects share it.
    type: str
    required: true
  openshift:
    description:
      - V(auto) detects OpenShift by the C(security.openshift.io) API group; V(yes) and V(no) force it.
    type: str
    default: auto
    choices: [ auto, "yes", "no" ]
  scc:
    description:
      - Use this SecurityContextConstraints instead of the one chosen from O(host_path). V(privileged),
        V(hostaccess), V(hostnetwork), V(hostnetwork-v2) and V(node-exporter) need O(allow_privileged_scc).
    type: str
  allow_privileged_scc:
    description: Allow an O(scc) that opens the node (privileged containers, host namespaces or host paths).
    type: bool
    default: false
  host_path:
    description: The service mounts hostPath storage (OpenShift SCC V(hostmount-anyuid)).
    type: bool
    default: false
  proxy_ca:
    description:
      - The service mounts a proxy CA ConfigMap. It needs no SCC beyond V(nonroot) (the CA bundle's init container
        runs as the service's user), so this no longer selects V(anyuid); kept so existing tasks still run.
    type: bool
    default: false
  extra_rules:
    description:
      - Additional Role rules, for example read access to one ConfigMap.
      - Verbs are checked against the Kubernetes verbs.
    type: list
    elements: dict
    default: []
    suboptions:
      api_groups:
        description: API groups; V("") is the core group (the default).
        type: list
        elements: str
      resources:
        description: Resources, for example V(configmaps).
        type: list
        elements: str
        required: true
      verbs:
        description: Verbs, for example V(get), V(list), V(watch).
        type: list
        elements: str
        required: true
      resource_names:
        description: Limit the rule to these object names.
        type: list
        elements: str
  allow_wildcards:
    description: Allow C(*) in O(extra_rules). Off, because a wildcard grants far more than a NIM service needs.
    type: bool
    default: false
  allow_dangerous_rules:
    description:
      - Allow O(extra_rules) that let the ServiceAccount become more than it is - C(escalate), C(bind),
        C(impersonate), C(get)/C(list)/C(watch) on C(secrets), C(pods/exec) and C(pods/attach), C(update)/C(patch)
        on C(*/scale) (also through C(*)). Refused by default, naming the rule.
    type: bool
    default: false
  automount_service_account_token:
    description: Mount the ServiceAccount's API token into pods. NIM needs no API access, so off.
    type: bool
    default: false
seealso:
  - module: nimguard.k8s.nim_service
'''

EXAMPLES = r'''
- name: ServiceAccount, Role and RoleBinding for llama-3-8b (nothing granted on plain Kubernetes)
  nimguard.k8s.nim_rbac:
    name: llama-3-8b
    namespace: nim-service

- name: On OpenShift, with hostPath storage (SCC hostmount-anyuid)
  nimguard.k8s.nim_rbac:
    name: llama-3-8b
    namespace: nim-service
    openshift: "yes"
    host_path: true

- name: With read access to one ConfigMap
  nimguard.k8s.nim_rbac:
    name: llama-3-8b
    namespace: nim-service
    extra_rules:
      - api_groups: [""]
        resources: [configmaps]
        resource_names: [nim-config]
        verbs: [get, watch]

- name: Remove them
  nimguard.k8s.nim_rbac:
    name: llama-3-8b
    namespace: nim-service
    state: absent
'''

RETURN = r'''
changed:
  description: Whether the API server changed the ServiceAccount, the Role or the RoleBinding.
  returned: always
  type: bool
objects:
  description: The three objects (and any pruned), each with C(created), C(updated), C(unchanged) or C(deleted).
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: ServiceAccount, name: llama-3-8b, namespace: nim-service, action: created}
service_account:
  description: Name of the ServiceAccount.
  returned: when state is present
  type: str
  sample: llama-3-8b
openshift:
  description: Whether OpenShift SCC rules were rendered.
  returned: when state is present
  type: bool
scc:
  description: The SecurityContextConstraints the Role may use, or null off OpenShift.
  returned: when state is present
  type: str
  sample: nonroot
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_rbac
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_rbac)


if __name__ == "__main__":
    main()
