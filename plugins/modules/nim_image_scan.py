#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nim_image_scan
short_description: Gate NIM images on Trivy findings before anything is deployed
version_added: 0.1.0
description:
  - Scans each image with Trivy where the images are reachable, or reads a Trivy JSON report per image made by
    your own CI (air-gapped clusters), and fails when a finding is at or above O(severity), naming each one (ID,
    package or file, severity, title).
  - Reads the three result classes of Trivy's JSON (schema version 2) - C(Vulnerabilities), C(Misconfigurations)
    (failed checks only) and C(Secrets). A secret finding names the rule and the file and line, never the matched
    text.
  - A finding can be accepted with an O(allow_list) entry carrying a reason and an expiry date. After that date the
    entry no longer applies and the finding blocks again, with a message saying the entry expired.
  - A report of a container image must be a report of the same image reference (tag or digest); a report of
    another kind of artifact (C(trivy rootfs), C(trivy fs)) is accepted with a warning, since it cannot be tied to
    the image.
  - Needs no cluster connection; read-only, and runs the same in check mode.
author:
  - nimguard.k8s contributors (@nimguard)
extends_documentation_fragment: [nimguard.k8s.attributes.READ_ONLY]
options:
  images:
    description: Image references to scan (C(repository:tag) or C(repository@sha256:...)).
    type: list
    elements: str
    default: []
  services:
    description:
      - Services in the form of M(nimguard.k8s.nim_service) options. Every image their pods run is scanned - the
        NIM container, the CA bundle init container (C(proxy.ca_init_image)) and the vault agent
        (C(secret_delivery.vault.image)) when those are used.
    type: list
    elements: dict
    default: []
  reports:
    description:
      - Trivy JSON reports by image reference, on the host running the task, for example made in CI with
        C(trivy image --format json --output report.json IMAGE). An image with a report is not scanned again.
    type: dict
    default: {}
  trivy:
    description:
      - The Trivy binary (a name looked up on E(PATH), or a path), used for images without a report. It must be able
        to pull the image and to download or find its vulnerability database.
    type: str
    default: trivy
  trivy_args:
    description: Extra arguments for C(trivy image), for example C([--cache-dir, /var/cache/trivy, --skip-db-update]).
    type: list
    elements: str
    default: []
  resolve_digests:
    description:
      - Before scanning an image without a report, ask its registry (the OCI distribution API, anonymously or with
        the credentials of C($DOCKER_CONFIG/config.json)) which manifest digest its tag names, scan that digest
        and return it (RV(digests)), so that the pods run exactly what was scanned however the tag moves. An image
        with a report gets the digest the report scanned (its C(Metadata.RepoDigests)).
      - V(false) scans the tag as given (the behaviour before 0.2) and returns no digest for it.
    type: bool
    default: true
  scanners:
    description: What C(trivy image) looks for.
    type: list
    elements: str
    default: [vuln, secret]
    choices: [vuln, secret, misconfig]
  severity:
    description: The lowest severity that blocks.
    type: str
    default: CRITICAL
    choices: [UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL]
  allow_list:
    description: Accepted findings. Each entry applies until its expiry date (inclusive) and is shown as a warning.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: The finding's ID - a CVE or GHSA ID, a misconfiguration ID (C(KSV-0014) or C(AVD-KSV-0014)) or a
          secret rule ID (C(private-key)).
        type: str
        required: true
      reason:
        description: Why the finding is accepted.
        type: str
        required: true
      expires:
        description: Review date, C(YYYY-MM-DD). From the day after, the finding blocks again.
        type: raw
        required: true
      package:
        description: Only for this package (or, for misconfigurations and secrets, this file).
        type: str
      image:
        description: Only for this image.
        type: str
'''

EXAMPLES = r'''
- name: Scan with Trivy where the registry is reachable; stop on critical findings
  nimguard.k8s.nim_image_scan:
    images:
      - nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3

- name: Air-gapped - gate on the reports CI made, high and above, with one accepted finding
  nimguard.k8s.nim_image_scan:
    services: "{{ nim_rollout_services }}"
    severity: HIGH
    reports:
      nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3: /srv/scans/llama-3.1-8b-instruct-1.3.3.json
    allow_list:
      - id: CVE-2024-45337
        reason: golang.org/x/crypto ssh server code is not used by the NIM server
        expires: 2026-12-31
'''

RETURN = r'''
digests:
  description: The manifest digest scanned, by image reference (images whose digest is unknown are left out).
  returned: always
  type: dict
  sample: {"nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3": "sha256:4f1c..."}
service_digests:
  description: The digest of each service's NIM image, by service name, for M(nimguard.k8s.nim_service)'s
    O(nimguard.k8s.nim_service#module:image.digest).
  returned: always
  type: dict
  sample: {"llama-3-8b": "sha256:4f1c..."}
passed:
  description: True when no finding blocks (the module fails otherwise, with the same result keys).
  returned: always
  type: bool
severity:
  description: The lowest severity that blocks.
  returned: always
  type: str
  sample: CRITICAL
blocking:
  description: Number of blocking findings over all images.
  returned: always
  type: int
images:
  description: Per image - where the findings came from and what blocks or is allowed.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image reference.
      type: str
    digest:
      description: The manifest digest scanned (resolved from the tag, pinned, or named by the report), or null.
      type: str
    scanned:
      description: The reference Trivy read (C(repository@digest) when the digest is known).
      type: str
    source:
      description: C(report) or C(trivy).
      type: str
    report:
      description: The report's path when the source is a report.
      type: str
    created_at:
      description: When Trivy made the report.
      type: str
    findings:
      description: Number of findings of every severity.
      type: int
    blocking:
      description: Findings at or above the severity with no valid allow-list entry (kind, id, package, severity,
        title, fixed_version; expired_allow_list_entry when an entry matched but expired).
      type: list
      elements: dict
    allowed:
      description: Findings accepted by an allow-list entry, with its reason and expiry date.
      type: list
      elements: dict
    below_threshold:
      description: Number of findings below the severity.
      type: int
  sample:
    - image: nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3
      source: report
      report: /srv/scans/llama.json
      created_at: "2026-11-24T10:00:00Z"
      findings: 3
      blocking: []
      allowed:
        - {kind: vulnerability, id: CVE-2024-45337, package: golang.org/x/crypto, severity: CRITICAL,
           reason: not used, expires: "2026-12-31"}
      below_threshold: 2
'''

from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_image_scan
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run_module


def main():
    run_module(nim_image_scan)


if __name__ == "__main__":
    main()
