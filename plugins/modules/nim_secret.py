#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_secret
short_description: Manage the Secrets a NIM service needs, without ever printing a value
version_added: 0.1.0
description:
  - Creates, rotates, verifies or deletes one Secret for an NVIDIA NIM service - the NGC API key, a Hugging Face
    token, a registry pull secret (C(kubernetes.io/dockerconfigjson)), a TLS Secret, or any set of keys.
  - With a value, the Secret is server-side applied; a new value replaces the old one (rotation) and the module
    returns the new RV(content_hash), so that workloads roll only when the bytes changed
    (M(nimguard.k8s.nim_service) does this by itself, and takes it as O(nimguard.k8s.nim_service#module:secret_hashes)
    to predict the roll in check mode).
  - Without a value, the module only checks that the Secret exists and holds the expected key, and fails with the
    command that creates it (the NIM Operator guide's "secret not found" case). Nothing is written.
  - Secret values are never shown, in results, diffs, warnings, errors or C(-vvvv) output, neither plain nor
    base64-encoded. A diff shows a value as a hash keyed for that run only (C(<redacted hmac-sha256:...>)) - equal
    within the diff exactly when the values are, and no use to a guess list.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes, nimguard.k8s.connection, nimguard.k8s.connection.API_PROXY, nimguard.k8s.connection.STATE]
options:
  name:
    description:
      - Name of the Secret. Required unless O(secrets) is given.
    type: str
  secrets:
    description:
      - Many Secrets in one task, each element one Secret's options (O(name) and the value options below);
        O(namespace), O(state), O(labels), O(annotations) and the connection are the task's. A loop costs a task
        run per item; this form reads the namespace's Secrets once, so a rerun of fifty per-service Secrets costs
        about one task.
      - Every element's value is checked, and every Secret read, before the first write. An element without a value
        is only checked, as the task is without O(value); a name given twice is refused.
      - The result lists each Secret in RV(secrets) instead of RV(secret) and RV(content_hash).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the Secret.
        type: str
        required: true
      kind:
        description: As O(kind).
        type: str
        default: generic
        choices: [ngc, huggingface, registry, tls, generic]
      value:
        description: As O(value).
        type: str
      key:
        description: As O(key).
        type: str
      keys:
        description: As O(keys).
        type: list
        elements: str
        default: []
      data:
        description: As O(data).
        type: dict
      registry:
        description: As O(registry).
        type: dict
        suboptions:
          server:
            description: Registry host.
            type: str
            default: nvcr.io
          username:
            description: Registry user.
            type: str
            default: $oauthtoken
          password:
            description: Registry password (for NGC, the NGC API key).
            type: str
          email:
            description: Optional e-mail.
            type: str
      tls:
        description: As O(tls).
        type: dict
        suboptions:
          cert:
            description: PEM certificate chain.
            type: str
          key:
            description: PEM private key.
            type: str
          ca:
            description: Optional PEM CA certificate.
            type: str
          allow_expired:
            description: Accept an expired certificate (for tests only).
            type: bool
            default: false
  kind:
    description:
      - V(ngc) - the NGC API key under O(key) (default C(NGC_API_KEY)), as the NIM Operator's O(ignore:authSecret)
        expects.
      - V(huggingface) - a Hugging Face token under O(key) (default C(HF_TOKEN)).
      - V(registry) - a C(kubernetes.io/dockerconfigjson) pull secret, by default for C(nvcr.io) with user
        C($oauthtoken) (the NGC convention). See O(registry).
      - V(tls) - a C(kubernetes.io/tls) Secret from a PEM certificate and key; the pair must match and the
        certificate must not have expired. See O(tls).
      - V(generic) - the keys of O(data).
    type: str
    default: generic
    choices: [ ngc, huggingface, registry, tls, generic ]
  value:
    description:
      - The secret value for O(kind=ngc) and O(kind=huggingface). Pass it from Ansible Vault, an environment
        variable or a lookup, never from a plain file in Git.
      - Leave it out to only verify that the Secret exists with O(key).
    type: str
  key:
    description:
      - Key name inside the Secret for O(kind=ngc) (default C(NGC_API_KEY)) and O(kind=huggingface) (default C(HF_TOKEN)).
    type: str
  keys:
    description:
      - For O(kind=generic) without O(data), the keys the existing Secret must have.
    type: list
    elements: str
    default: []
  data:
    description:
      - For O(kind=generic), the keys and values of the Secret (plain text; the module encodes them).
      - Mutually exclusive with O(value).
    type: dict
  registry:
    description:
      - The registry credentials for O(kind=registry).
    type: dict
    suboptions:
      server:
        description: Registry host.
        type: str
        default: nvcr.io
      username:
        description: Registry user. NGC uses the literal C($oauthtoken) with the API key as password.
        type: str
        default: $oauthtoken
      password:
        description: Registry password or token. Leave out to only verify the Secret.
        type: str
      email:
        description: Optional e-mail recorded in the config.
        type: str
  tls:
    description:
      - The certificate and key for O(kind=tls), as PEM text (for example from C(lookup('ansible.builtin.file', ...))
        on a vaulted file).
    type: dict
    suboptions:
      cert:
        description: PEM certificate (chain). Leave out to only verify the Secret.
        type: str
      key:
        description: PEM private key, unencrypted.
        type: str
      ca:
        description: Optional PEM CA certificate, stored as C(ca.crt).
        type: str
      allow_expired:
        description: Accept an expired certificate (for tests only).
        type: bool
        default: false
seealso:
  - module: nimguard.k8s.nim_service
  - module: nimguard.k8s.nim_rbac
'''

EXAMPLES = r'''
- name: Store the NGC API key, from an environment variable
  nimguard.k8s.nim_secret:
    name: ngc-api-secret
    namespace: nim-service
    kind: ngc
    value: "{{ lookup('ansible.builtin.env', 'NGC_API_KEY') }}"

- name: Store a Hugging Face token from Ansible Vault
  nimguard.k8s.nim_secret:
    name: hf-token-secret
    namespace: nim-service
    kind: huggingface
    value: "{{ vault_hf_token }}"

- name: Registry pull secret for nvcr.io (user $oauthtoken, the NGC key as password)
  nimguard.k8s.nim_secret:
    name: ngc-secret
    namespace: nim-service
    kind: registry
    registry:
      password: "{{ vault_ngc_api_key }}"

- name: Pull secret for a private registry
  nimguard.k8s.nim_secret:
    name: harbor-pull
    namespace: nim-service
    kind: registry
    registry:
      server: harbor.example.com
      username: robot$nim
      password: "{{ vault_harbor_token }}"
      email: platform@example.com

- name: Manual TLS Secret for the Ingress (the alternative to cert-manager)
  nimguard.k8s.nim_secret:
    name: nim-tls-cert
    namespace: nim-service
    kind: tls
    tls:
      cert: "{{ lookup('ansible.builtin.file', 'files/tls.crt') }}"
      key: "{{ lookup('ansible.builtin.file', 'files/tls.key.vault') }}"

- name: Any other keys
  nimguard.k8s.nim_secret:
    name: custom-secret
    namespace: nim-service
    data:
      API_KEY: "{{ vault_custom_api_key }}"

- name: Only check that the Secret an external tool made exists with its key (writes nothing)
  nimguard.k8s.nim_secret:
    name: ngc-api-secret
    namespace: nim-service
    kind: ngc

- name: Rotate the key, then roll only the services whose secret changed
  nimguard.k8s.nim_secret:
    name: ngc-api-secret
    namespace: nim-service
    kind: ngc
    value: "{{ new_ngc_api_key }}"
  register: rotated

- name: Remove it
  nimguard.k8s.nim_secret:
    name: hf-token-secret
    namespace: nim-service
    state: absent

- name: Per-service Secrets, many in one task (values from Ansible Vault)
  nimguard.k8s.nim_secret:
    namespace: nim-service
    secrets:
      - {name: llama-ngc, kind: ngc, value: "{{ vault_llama_ngc_key }}"}
      - {name: llama-hf, kind: huggingface, value: "{{ vault_llama_hf_token }}"}
      - {name: llama-pull, kind: registry, registry: {password: "{{ vault_llama_ngc_key }}"}}
'''

RETURN = r'''
changed:
  description: Whether the API server changed the Secret (a rerun with the same value reports false).
  returned: always
  type: bool
objects:
  description: Each object touched, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: Secret, name: ngc-api-secret, namespace: nim-service, action: updated}
  contains:
    action:
      description: One of C(created), C(updated), C(unchanged), C(deleted), C(verified) (checked, not written).
      type: str
      returned: always
content_hash:
  description:
    - Keyed hash (HMAC-SHA256) of the Secret's type and data. It changes exactly when a consumer would see different
      bytes, so it can gate a restart. Its key is random, kept in the Secret C(nimguard-hash-key) of the namespace
      (made on first use; a check-mode run or a check of an existing Secret before that uses a key of its own), so
      the hash cannot be tested against guesses by whoever lacks the right to read Secrets.
  returned: when state is present and secrets is not given
  type: str
  sample: hmac-sha256:4f1c2a9e0b7d3c55
secrets:
  description: With O(secrets), each Secret as RV(secret) describes it, with its RV(content_hash).
  returned: when secrets is given and state is present
  type: list
  elements: dict
  sample:
    - {name: llama-ngc, namespace: nim-service, type: Opaque, keys: [NGC_API_KEY], content_hash: "hmac-sha256:4f1c2a9e0b7d3c55"}
secret:
  description: Name, namespace, type and key names (never values) of the Secret.
  returned: when state is present and secrets is not given
  type: dict
  sample: {name: ngc-api-secret, namespace: nim-service, type: Opaque, keys: [NGC_API_KEY]}
diff:
  description: With C(--diff), before and after of the Secret, each value a short content hash.
  returned: when diff mode is on and the Secret changed
  type: list
  elements: dict
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_secret
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_secret)


if __name__ == "__main__":
    main()
