# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one choke point where secret material becomes keyed hashes or a mask.

Every diff, result, warning and error message passes through here before it leaves module_utils. A hash of a
secret value is always keyed (HMAC-SHA256): a published plain hash of a short password is a guess list away
from the password. Diffs use a key made for this run and never kept; the hashes that must be stable across
runs (nim_secret's content_hash, the pod template's nimguard.io/secrets-hash) use a key kept in a Secret of
the namespace (apply.hash_key()), readable only by those who can read the Secrets themselves.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import re
from urllib.parse import quote, quote_plus

from ansible_collections.nimguard.k8s.plugins.module_utils.labels import HASH_ANNOTATION, LAST_APPLIED

# Literal env values under these names are treated as secrets in diffs and results (they should come
# from a secretKeyRef; nim_service warns when they do not).
SENSITIVE_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH|PRIVATE|DSN|CERT|SIGNATURE|SESSION|COOKIE)",
                            re.I)
# user:password@ (or token@) in a URL: a proxy or a database DSN.
URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
VOLATILE_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
MASK = "********"
# The key of this run's diff hashes: random, never stored or output, so a diff's hashes say "changed or not"
# and nothing a guess list could test.
RUN_KEY = os.urandom(32)
# Credentials met outside the options (a kubeconfig's token or client key, a token file, what an exec plugin
# returned): kubeconfig.py registers them here, and every Scrubber masks them too.
_REGISTERED = set()


def register(value):
    """Mask this credential in anything a module returns from now on in this process."""
    if value and isinstance(value, str):
        _REGISTERED.add(value)


def short_hash(value, length=16):
    """sha256 of a value (str, bytes or JSON-able), as 'sha256:<hex>' cut to `length` hex digits."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        value = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(value).hexdigest()[:length]


def _canonical(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def keyed_hash(key, value, length=16):
    """HMAC-SHA256 of a value (str, bytes or JSON-able) under `key`, as 'hmac-sha256:<hex>' cut to `length`."""
    return "hmac-sha256:" + hmac.new(key, _canonical(value), hashlib.sha256).hexdigest()[:length]


def fingerprint(value):
    """What a diff or result shows instead of a secret value: equal within a run exactly when the values are."""
    return "<redacted %s>" % keyed_hash(RUN_KEY, value, 12)


def secret_content_hash(secret, key):
    """Keyed content hash of a Secret's bytes and type: equal exactly when the consumer would see the same data
    (and the namespace's hash key is the same)."""
    if not secret:
        return None
    data = dict(secret.get("data") or {})
    for name, value in (secret.get("stringData") or {}).items():
        data[name] = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return keyed_hash(key, {"type": secret.get("type", "Opaque"), "data": data})


def redact_url(value):
    """A URL (or any text) with the userinfo of each URL masked: http://user:pass@proxy -> http://********@proxy."""
    return URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", value) if isinstance(value, str) else value


def secret_looking(name, value):
    """Whether a literal value under this name is treated as a secret: a secret-looking name, unless the value is
    a file path under a NAME_FILE variable (NGC_API_KEY_FILE: where the key is, not the key)."""
    if not SENSITIVE_NAME.search(str(name or "")):
        return False
    return not (str(name).upper().endswith("_FILE") and str(value).startswith("/"))


def _redact_env(env):
    for item in env or []:
        if isinstance(item, dict) and "value" in item:
            if secret_looking(item.get("name"), item["value"]):
                item["value"] = fingerprint(str(item["value"]))
            else:
                item["value"] = redact_url(item["value"])


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
        if out.get("kind") == "Secret":  # written by releases that hashed a Secret's data unkeyed
            annotations.pop(HASH_ANNOTATION, None)
        if not annotations:
            meta.pop("annotations")
    if out.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if out.get(field):
                out[field] = dict((k, fingerprint(v)) for k, v in out[field].items())
    _walk_env(out)
    return out


def _forms(value):
    """The texts a secret value may take in output: as it is, JSON-escaped, URL-encoded, and base64 (standard and
    URL-safe) at each of the three byte alignments it can have inside a larger blob (a dockerconfigjson's auth, a
    kubeconfig), cut to the characters that do not depend on its neighbours."""
    out = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value), quote(value)}
    raw = value.encode("utf-8")
    for pad in (b"", b"x", b"xy"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(pad + raw).decode("ascii")
            if not pad:
                out.update((text, text.rstrip("=")))
            start = -(-len(pad) * 4 // 3)  # the first character holding none of the pad's bits
            stable = text.rstrip("=")[start:len(text.rstrip("=")) - 3]
            if len(stable) >= 6:
                out.add(stable)
    return out


class Scrubber(object):
    """Removes known secret strings, in every form they may take (_forms()), from anything about to be returned.

    A second line of defence behind clean(): Ansible's no_log masks the plain value only, while a Secret's data
    (and a dockerconfigjson's auth) carries it base64-encoded. A value is held as given and stripped of surrounding
    whitespace (what a Secret stores); one under 4 characters is masked only where it stands alone, so that it does
    not mask every word it is part of. Credentials registered by kubeconfig.py (register()) are masked too."""

    def __init__(self):
        self.values = set()
        self.short = set()
        self._added = set()

    def add(self, value):
        if not value or not isinstance(value, str) or value in self._added:
            return
        self._added.add(value)
        for v in set((value, value.strip())):
            if len(v) >= 4:
                self.values.update(_forms(v))
            elif v:
                self.short.add(v)

    def plain(self):
        """The values as given (and stripped), for Ansible's own no_log masking of a module's invocation."""
        return set(v for value in self._added for v in (value, value.strip()) if v)

    def _text(self, node):
        for value in sorted(self.values, key=len, reverse=True):
            if value in node:
                node = node.replace(value, MASK)
        for value in self.short:
            node = re.sub(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(value), MASK, node)
        return node

    def scrub(self, node):
        for value in list(_REGISTERED):
            self.add(value)
        if not self.values and not self.short:
            return node
        if isinstance(node, str):
            return self._text(node)
        if isinstance(node, dict):
            return dict((self.scrub(k), self.scrub(v)) for k, v in node.items())
        if isinstance(node, (list, tuple)):
            return [self.scrub(v) for v in node]
        return node
