#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_doctor
short_description: Preflight checks for NIM deployments, each with the fix in its message
version_added: 0.1.0
description:
  - Turns the troubleshooting cases of a NIM deployment into checks, run before any change and read-only.
  - V(secrets) - the auth Secret is missing or lacks its key; a pull Secret is missing or of the wrong type.
  - V(runtime) - a RuntimeClass a service names does not exist.
  - V(gpu) - no node has enough free C(nvidia.com/gpu) (allocatable minus what running pods request).
  - V(ca) - the proxy CA ConfigMap is missing or has no C(ca.crt).
  - V(crds) - cert-manager or External Secrets CRDs are missing while used.
  - V(permissions) - the identity used lacks a permission the collection needs (SelfSubjectAccessReview).
  - V(tls) - every service exposed without TLS, among O(services) and the managed objects found live (warnings)
    - an Ingress without TLS, or a C(NodePort) or C(LoadBalancer) Service with no TLS in front (no load balancer
    TLS annotation of AWS, OCI or DigitalOcean, nor C(nimguard.io/tls-in-front) naming what terminates TLS).
  - V(auth) - every Ingress to the inference API with no authentication in front, among O(services) and the managed
    Ingresses found live (warnings), as NIM authenticates nobody. An auth annotation of the ingress controller
    (ingress-nginx C(auth-url), C(auth-type), C(auth-tls-verify-client); Traefik C(router.middlewares); AWS ALB
    C(auth-type); HAProxy; Kong C(plugins)) or C(nimguard.io/auth-in-front) naming what authenticates clears it.
  - V(certificates) - cert-manager Certificates that are not Ready, with the reason from their status.
  - V(external_secrets) - ExternalSecrets that are not synced, with the reason from their status.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes.READ_ONLY, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY]
options:
  namespace:
    description: Namespace checked, and the default namespace of O(services).
    type: str
    required: true
  services:
    description:
      - The services about to be deployed, in the same form as M(nimguard.k8s.nim_service) options (name,
        auth_secret, image.pull_secrets, runtime_class_name, resources.gpus, proxy.cert_config_map, expose).
    type: list
    elements: dict
    default: []
  checks:
    description: Which checks to run.
    type: list
    elements: str
    default: [all]
  fail_on:
    description: V(fail) fails on failed checks, V(warn) on warnings too, V(never) only reports.
    type: str
    default: fail
    choices: [ fail, warn, never ]
  uses_cert_manager:
    description: The deployment relies on cert-manager (its CRDs must exist).
    type: bool
    default: false
  uses_external_secrets:
    description: The deployment relies on External Secrets Operator (its CRDs must exist).
    type: bool
    default: false
  written_secrets:
    description:
      - Names of Secrets that the caller writes after the doctor runs (a role's own per-service Secrets); the
        C(secrets) check does not look for them. The C(nimguard.k8s.nim_rollout) role passes the names of
        O(ignore:nim_rollout_service_secrets).
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Check everything before deploying two services
  nimguard.k8s.nim_doctor:
    namespace: nim-service
    services:
      - name: llama-3-8b
        auth_secret: ngc-api-secret
        image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, pull_secrets: [ngc-secret]}
        runtime_class_name: nvidia
        resources: {gpus: 1}
    uses_cert_manager: true

- name: Only report, never fail
  nimguard.k8s.nim_doctor:
    namespace: nim-service
    fail_on: never
  register: health
'''

RETURN = r'''
ok:
  description: True when no check failed.
  returned: always
  type: bool
findings:
  description: Each finding with its check, status (C(fail) or C(warn)), message and fix.
  returned: always
  type: list
  elements: dict
  sample:
    - check: secrets
      status: fail
      message: "service llama-3-8b: auth secret ngc-api-secret not found in namespace nim-service"
      fix: "kubectl create secret generic ngc-api-secret --from-literal=NGC_API_KEY=<value> -n nim-service"
failed_checks:
  description: Number of failed findings.
  returned: always
  type: int
warnings_count:
  description: Number of warnings.
  returned: always
  type: int
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_doctor
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_doctor)


if __name__ == "__main__":
    main()
