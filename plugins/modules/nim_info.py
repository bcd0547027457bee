#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_info
short_description: Read Kubernetes objects, with Secret values redacted
version_added: 0.1.0
description:
  - Reads one object by name, or lists objects of a kind (optionally by labels), with the collection's connection
    options. Roles and verify playbooks use it for checks (an installed version, a rollout's status).
  - Server bookkeeping (managedFields, resourceVersion) is dropped; Secret data appears only as short content hashes.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes.READ_ONLY, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY, nimguard.k8s.wait]
options:
  api_version:
    description: API version, for example V(apps/v1).
    type: str
    default: v1
  kind:
    description: Kind, for example V(Deployment). Required unless O(rollouts) is given.
    type: str
  name:
    description: Name of one object; leave out to list.
    type: str
  namespace:
    description: Namespace (ignored for cluster-scoped kinds).
    type: str
  label_selectors:
    description: Label selectors when listing, for example V(app.kubernetes.io/managed-by=nimguard).
    type: list
    elements: str
    default: []
  rollouts:
    description:
      - Deployments whose rollouts to wait for, together (all replicas updated and available), instead of reading
        objects of a O(kind). The M(nimguard.k8s.nim_rollout) role waits this way for all its services after
        applying them all, so that their pods start at the same time.
      - The action plugin displays a progress line at least every 20 seconds (a module on another host cannot).
        On timeout the error names each unfinished Deployment and the phase its pods are in (unschedulable, image
        pull, startup probe, readiness probe, admission).
      - O(wait_timeout) bounds the whole wait.
    type: list
    elements: dict
    suboptions:
      name:
        description: Deployment name.
        type: str
        required: true
      namespace:
        description: Its namespace.
        type: str
        required: true
  wait_condition:
    description:
      - With O(name), wait until the object exists and has this condition - read-only, for objects another tool
        makes (an ExternalSecret's V(Ready) before its Secret is used).
'''

EXAMPLES = r'''
- name: Read a NIM service's Deployment
  nimguard.k8s.nim_info:
    api_version: apps/v1
    kind: Deployment
    name: llama-3-8b
    namespace: nim-service
  register: nim_deployment

- name: Every object the collection manages in a namespace, of one kind
  nimguard.k8s.nim_info:
    api_version: networking.k8s.io/v1
    kind: NetworkPolicy
    namespace: nim-service
    label_selectors:
      - app.kubernetes.io/managed-by=nimguard

- name: Wait until External Secrets has synced an ExternalSecret (read-only)
  nimguard.k8s.nim_info:
    api_version: external-secrets.io/v1
    kind: ExternalSecret
    name: ngc-api-secret
    namespace: nim-service
    wait_condition: {type: Ready, status: "True"}
    wait_timeout: 60

- name: Wait for two services' rollouts together, with a progress line every 20 seconds
  nimguard.k8s.nim_info:
    rollouts:
      - {name: llama-3-8b, namespace: nim-service}
      - {name: embedqa, namespace: nim-service}
    wait_timeout: 1800
'''

RETURN = r'''
resources:
  description: The objects found (empty when none), with status.
  returned: always
  type: list
  elements: dict
exists:
  description: Whether anything was found.
  returned: always
  type: bool
rollouts:
  description: With O(rollouts), each Deployment's replica counts once its rollout finished, by C(namespace/name).
  returned: when rollouts is given
  type: dict
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_info
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_info)


if __name__ == "__main__":
    main()
