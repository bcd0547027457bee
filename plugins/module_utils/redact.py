# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one choke point where secret material becomes short content hashes.

Every diff, result, warning and error message passes through here before it leaves module_utils.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re

from ansible_collections.nimguard.k8s.plugins.module_utils.labels import LAST_APPLIED

# Literal env values under these names are treated as secrets in diffs and results (they should come
# from a secretKeyRef; nim_service warns when they do not).
SENSITIVE_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH)", re.I)
VOLATILE_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
MASK = "********"


def short_hash(value, length=16):
    """sha256 of a value (str, bytes or JSON-able), as 'sha256:<hex>' cut to `length` hex digits."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        value = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(value).hexdigest()[:length]


def secret_content_hash(secret):
    """Content hash of a Secret's bytes and type: equal exactly when the consumer would see the same data."""
    if not secret:
        return None
    data = dict(secret.get("data") or {})
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return short_hash({"type": secret.get("type", "Opaque"), "data": data})


def _redact_env(env):
    for item in env or []:
        if isinstance(item, dict) and "value" in item and SENSITIVE_NAME.search(str(item.get("name", ""))):
            item["value"] = "<redacted %s>" % short_hash(str(item["value"]), 8)


def _walk_env(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                _redact_env(value)
            else:
                _walk_env(value)
    elif isinstance(node, list):
        for value in node:
            _walk_env(value)


def clean(obj):
    """A copy of an object fit for a diff or a result: no server bookkeeping, no secret material."""
    if not obj:
        return {}
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in VOLATILE_META:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if annotations:
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            meta.pop("annotations")
    if out.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if out.get(field):
                out[field] = dict((k, "<redacted %s>" % short_hash(v, 8)) for k, v in out[field].items())
    _walk_env(out)
    return out


class Scrubber(object):
    """Removes known secret strings, plain and base64-encoded, from anything about to be returned.

    A second line of defence behind clean(): Ansible's no_log masks the plain value only, while a
    Secret's data (and a dockerconfigjson's auth) carries it base64-encoded."""

    def __init__(self):
        self.values = set()

    def add(self, value):
        if not value or not isinstance(value, str) or len(value) < 4:
            return
        self.values.add(value)
        encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        self.values.add(encoded)
        self.values.add(encoded.rstrip("="))

    def scrub(self, node):
        if not self.values:
            return node
        if isinstance(node, str):
            for value in sorted(self.values, key=len, reverse=True):
                if value in node:
                    node = node.replace(value, MASK)
            return node
        if isinstance(node, dict):
            return dict((self.scrub(k), self.scrub(v)) for k, v in node.items())
        if isinstance(node, (list, tuple)):
            return [self.scrub(v) for v in node]
        return node
