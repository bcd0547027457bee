#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_apply
short_description: Server-side apply of generic Kubernetes objects, with the collection's connection and safety
version_added: 0.1.0
description:
  - Applies the few generic objects the roles need (Namespace, RuntimeClass, ClusterIssuer, SecretStore,
    ExternalSecret, CRDs) with the same connection options, server-side apply under field manager C(nimguard),
    dry-run check mode and redaction as the other modules, so the cluster connection is configured once.
  - A rerun with nothing to change makes no write - one read per object decides.
  - Secret objects passed here are redacted in diffs and results like everywhere else.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY, nimguard.k8s.wait]
options:
  definition:
    description:
      - The objects - a dict, a list of dicts, a C(List) object, or YAML text with one or more documents.
    type: raw
  src:
    description: Path to a YAML file with the objects, on the host the task runs on.
    type: path
  namespace:
    description: Namespace for namespaced objects that name none.
    type: str
  state:
    description: V(present) applies, V(absent) deletes.
    type: str
    default: present
    choices: [ present, absent ]
  force_conflicts:
    description: Take over fields owned by another field manager instead of failing.
    type: bool
    default: false
  wait:
    description:
      - Wait for each object - a Deployment's rollout, or O(wait_condition) on objects with status conditions
        (for example a ClusterIssuer or an ExternalSecret becoming V(Ready)).
    type: bool
    default: false
seealso:
  - module: nimguard.k8s.nim_service
'''

EXAMPLES = r'''
- name: Namespace enforcing the restricted Pod Security Standard
  nimguard.k8s.nim_apply:
    definition:
      apiVersion: v1
      kind: Namespace
      metadata:
        name: nim-service
        labels:
          pod-security.kubernetes.io/enforce: restricted
          pod-security.kubernetes.io/enforce-version: v1.35

- name: RuntimeClass for the NVIDIA runtime
  nimguard.k8s.nim_apply:
    definition:
      apiVersion: node.k8s.io/v1
      kind: RuntimeClass
      metadata: {name: nvidia}
      handler: nvidia

- name: A ClusterIssuer, waiting until cert-manager reports it Ready
  nimguard.k8s.nim_apply:
    definition: "{{ lookup('ansible.builtin.template', 'issuer.yml.j2') }}"
    wait: true
    wait_condition: {type: Ready, status: "True"}
    wait_timeout: 60

- name: Objects from a file
  nimguard.k8s.nim_apply:
    src: files/extra-objects.yml
    namespace: nim-service
'''

RETURN = r'''
changed:
  description: Whether the API server changed any of the objects given.
  returned: always
  type: bool
objects:
  description: The objects given, in order, each with C(created), C(updated), C(unchanged) or C(deleted).
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: Namespace, name: nim-service, action: created}
resources:
  description: Kind, name and namespace of each object after the apply.
  returned: when state is present
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: Namespace, name: nim-service}
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_apply
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_apply)


if __name__ == "__main__":
    main()
