# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge a set of desired objects: read, decide, server-side apply (or dry-run), prune, report.

How "nothing to change" is decided without a write: every object we apply carries the hash of what
we applied (annotation nimguard.io/applied-hash). An object is unchanged when its live copy carries
the same hash *and* every field we set still has our value (drift by another writer is caught by
the second test; a field we stopped setting changes the hash). Live copies come from one LIST per
kind (by the labels we set) when the caller can say which labels, else one GET per object; both run
concurrently. Only objects that differ are applied, so a rerun makes no write at all.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from decimal import Decimal, InvalidOperation

from ansible_collections.nimguard.k8s.plugins.module_utils.client import parallel
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError, forbidden
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import (
    COMPONENT, HASH_ANNOTATION, HASH_KEY_FIELD, HASH_KEY_SECRET, KINDS_ANNOTATION, instance, labels_for, metadata)
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import clean, short_hash

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10 ** 3, "M": 10 ** 6,
           "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}


def _quantity(value):
    m = _QUANTITY.match(value)
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * Decimal(_SUFFIX.get(m.group(2), 1))
    except InvalidOperation:
        return None


def _scalar_equal(want, have):
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if want == have:
        return True
    # The API server canonicalises quantities ("1000m" -> "1", "0.5" -> "500m") and int-or-string ports.
    if isinstance(want, (str, int)) and isinstance(have, (str, int)) and not isinstance(want, bool):
        a, b = _quantity(str(want)), _quantity(str(have))
        return a is not None and a == b
    return False


def is_subset(want, have):
    """True when every field of `want` is present in `have` with the same value."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(is_subset(v, have[k]) if k in have else _omitted(v) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(is_subset(w, h) for w, h in zip(want, have))
    return _scalar_equal(want, have)


def _omitted(value):
    """The API server drops empty lists/maps and zero numbers of `omitempty` fields. False is kept out of
    this on purpose: a missing pointer bool (automountServiceAccountToken) means the default, true."""
    return value is not False and value in ([], {}, 0, "")


def stamp(obj):
    """Return a copy of obj carrying the hash of itself (without the hash). A Secret's values are left out of
    it (its keys are in): the annotation is readable by whoever may list metadata, and _unchanged() compares
    the values themselves."""
    obj = copy.deepcopy(obj)
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(HASH_ANNOTATION, None)
    hashed = obj
    if obj.get("kind") == "Secret":
        hashed = dict(obj, data=sorted(obj.get("data") or {}), stringData=sorted(obj.get("stringData") or {}))
    annotations[HASH_ANNOTATION] = short_hash(hashed)
    return obj


def ref(obj):
    meta = obj.get("metadata", {})
    out = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name")}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def _key(obj):
    meta = obj.get("metadata", {})
    return (obj.get("kind"), meta.get("namespace") or "", meta.get("name"))


def _comparable(obj):
    out = clean(obj)
    meta = out.get("metadata") or {}
    if meta.get("annotations"):
        meta["annotations"].pop(HASH_ANNOTATION, None)
        if not meta["annotations"]:
            meta.pop("annotations")
    return out


def prune_scope(name, components, kinds, namespace, anchor=None):
    """Which live objects belong to one instance: the kinds to look at and the labels that mark them;
    `anchor` (apiVersion, kind, name): the object whose KINDS_ANNOTATION lists the kinds last applied."""
    return dict(kinds=kinds, namespace=namespace, components=sorted(components), anchor=anchor,
                labels=instance(name))


class Converger(object):
    """Collects per-object outcomes and diffs for one task."""

    def __init__(self, client, check_mode=False, want_diff=False, force=False):
        self.client = client
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.force = force
        self.objects = []
        self.diffs = []
        self.warnings = []
        self.changed = False

    def _record(self, obj, action, before=None, after=None):
        entry = ref(obj)
        entry["action"] = action
        self.objects.append(entry)
        if action != "unchanged":
            self.changed = True
            if self.want_diff:
                label = "%s %s/%s" % (entry["kind"], entry.get("namespace", ""), entry["name"])
                self.diffs.append({"before_header": label, "after_header": label,
                                   "before": _comparable(before) if before else {},
                                   "after": _comparable(after) if after else {}})

    def read(self, desired, prune=None):
        """Live copies of desired objects, and the prune candidates: {key: live}, [live...].

        With prune["anchor"] (apiVersion, kind, name), like a kubectl ApplySet parent: the live anchor's
        KINDS_ANNOTATION names every kind the last apply made, so only those and the desired kinds are
        listed (a LIST per kind, not one per possible kind). No anchor or no annotation: every kind."""
        if prune:
            kinds = {}
            for api_version, kind in list(prune["kinds"]) + [(o["apiVersion"], o["kind"]) for o in desired]:
                kinds[(api_version, kind)] = True

            def lister(res):
                return self.client.list_labelled(res, prune["namespace"], prune["labels"])
            lists = []
            anchor = prune.get("anchor")
            if anchor and tuple(anchor[:2]) in kinds:
                lists.append(lister(self.client.resource(*anchor[:2])))
                kinds.pop(tuple(anchor[:2]))
                live_anchor = [i for i in lists[0] if i["metadata"]["name"] == anchor[2]]
                recorded = ((live_anchor[0]["metadata"].get("annotations") or {}).get(KINDS_ANNOTATION)
                            if live_anchor else None)
                if recorded is not None:
                    keep = set(recorded.split(",")) | set("%s/%s" % (o["apiVersion"], o["kind"]) for o in desired)
                    kinds = dict((k, True) for k in kinds if "%s/%s" % k in keep)
            resources = [self.client.resource(a, k) for a, k in kinds]
            lists += parallel(lister, resources)
            live = {}
            for items in lists:
                for item in items:
                    if ((item["metadata"].get("labels") or {}).get(COMPONENT) or "") in prune["components"]:
                        live[_key(item)] = item
            found = dict((_key(o), live.get(_key(o))) for o in desired)
            wanted = set(found)
            extra = [item for k, item in sorted(live.items(), key=lambda kv: kv[0]) if k not in wanted]
            return found, extra

        def get(o):
            res = self.client.resource(o["apiVersion"], o["kind"])
            return self.client.get(res, o["metadata"].get("namespace"), o["metadata"]["name"])
        return dict(zip([_key(o) for o in desired], parallel(get, desired))), []

    def plan(self, desired, prune=None):
        """Read once, decide: what converge() will do, before it does it (plan.pending: any write)."""
        desired = [stamp(o) for o in desired]
        found, extra = self.read(desired, prune)
        return Plan(desired, found, extra)

    def converge(self, desired, prune=None, known=None, plan=None):
        """Apply what differs, prune what is no longer wanted. Returns {key: resulting live object}.
        `known`: live copies (or None) the caller already read, in the order of `desired`; `plan`: from plan()."""
        if plan is not None:
            desired, found, extra = plan.desired, plan.found, plan.extra
        elif known is not None:
            desired = [stamp(o) for o in desired]
            found, extra = dict(zip([_key(o) for o in desired], known)), []
        else:
            desired = [stamp(o) for o in desired]
            found, extra = self.read(desired, prune)
        result = {}
        for obj in desired:
            live = found.get(_key(obj))
            if live is not None and _unchanged(obj, live):
                self._record(obj, "unchanged")
                result[_key(obj)] = live
                continue
            result[_key(obj)] = self.apply_one(obj, live)
        for obj in extra:
            self.delete_one(obj)
        return result

    def apply_one(self, obj, live=None):
        res = self.client.resource(obj["apiVersion"], obj["kind"])
        try:
            status, after = self.client.apply(res, obj, dry_run=self.check_mode, force=self.force)
        except ApiError as e:
            if self.check_mode and e.status == 404 and "namespaces" in e.api_message and obj["kind"] != "Namespace":
                # The namespace is created by an earlier task that check mode did not run for real.
                self.warnings.append("%s %s: namespace %s does not exist yet, so the server could not validate "
                                     "it in check mode." % (obj["kind"], obj["metadata"]["name"],
                                                            obj["metadata"].get("namespace")))
                self._record(obj, "created", None, obj)
                return obj
            raise translate(e, obj, self.force)
        if status == 201:
            action = "created"
        elif self.check_mode:
            action = "unchanged" if live is not None and _comparable(after) == _comparable(live) else "updated"
            if live is None:  # unlabelled object adopted: compare to what the server holds now
                current = self.client.get(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                action = "unchanged" if _comparable(after) == _comparable(current) else "updated"
                live = current
        else:
            before_rv = (live or {}).get("metadata", {}).get("resourceVersion")
            action = "unchanged" if before_rv and before_rv == after["metadata"].get("resourceVersion") else "updated"
        self._record(obj, action, live, after)
        if not self.check_mode:
            self.client.remember(res, after)
        return after

    def delete_one(self, obj):
        meta = obj["metadata"]
        res = self.client.resource(obj["apiVersion"], obj["kind"])
        try:
            gone = self.client.delete(res, meta.get("namespace"), meta["name"], dry_run=self.check_mode)
        except ApiError as e:
            raise translate(e, obj, self.force, verb="delete")
        if gone:
            self._record(obj, "deleted", obj, None)
            if not self.check_mode:
                self.client.forget(res, meta.get("namespace"), meta["name"])

    def absent(self, objs):
        """Delete these (live or desired) objects if they exist."""
        for obj in objs:
            self.delete_one(obj)

    def result(self, **extra):
        out = dict(changed=self.changed, objects=self.objects)
        if self.want_diff and self.diffs:
            out["diff"] = self.diffs
        if self.warnings:
            out["warnings"] = list(self.warnings)
        out.update(extra)
        return out


_UNREAD = object()


def hash_key(conv, namespace, create=True, live=_UNREAD):
    """The namespace's key for the keyed content hashes of Secrets (redact.secret_content_hash): random, made once
    in a Secret of its own (created, never overwritten, so concurrent tasks agree), read by every later run, so
    the hashes are stable across runs and mean nothing to whoever cannot read Secrets. In check mode (or with
    create false) a missing key is replaced by one for this run only: every hash then differs from the live ones,
    which is what the real run will do once it has made the key. `live`: the key's Secret (or None), when the
    caller read it already (alongside the Secrets it hashes, concurrently)."""
    client = conv.client
    res = client.resource("v1", "Secret")
    if live is _UNREAD:
        live = client.get_cached(res, namespace, HASH_KEY_SECRET)
    if live is None and create and not conv.check_mode:
        obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": metadata(HASH_KEY_SECRET, namespace, labels_for(HASH_KEY_SECRET, "hash-key")),
               "data": {HASH_KEY_FIELD: base64.b64encode(os.urandom(32)).decode("ascii")}}
        try:
            live = client.create(res, obj, namespace)
            conv.objects.append(dict(ref(obj), action="created"))
            conv.changed = True
        except ApiError as e:
            if e.status != 409:
                raise translate(e, obj, verb="create")
            live = client.get(res, namespace, HASH_KEY_SECRET)
        client.remember(res, live)
    value = ((live or {}).get("data") or {}).get(HASH_KEY_FIELD)
    if not value:
        if live is not None:
            raise NimError("Secret %s/%s has no key %s. Fix: delete it; the next run makes a new one (each service "
                           "using Secrets then rolls once)." % (namespace, HASH_KEY_SECRET, HASH_KEY_FIELD))
        return os.urandom(32)
    return base64.b64decode(value)


class Plan(object):
    def __init__(self, desired, found, extra):
        self.desired, self.found, self.extra = desired, found, extra
        self.pending = bool(extra) or any(found.get(_key(o)) is None or not _unchanged(o, found[_key(o)])
                                          for o in desired)

    def live(self, obj):
        """The live copy of a desired object, or None."""
        return self.found.get(_key(obj))


def _unchanged(desired, live):
    want_hash = desired["metadata"]["annotations"][HASH_ANNOTATION]
    have_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return want_hash == have_hash and is_subset(desired, live)


def translate(err, obj, force=False, verb="apply"):
    """An API error on one object, as a message that says what to do."""
    what = "%s %s%s" % (obj.get("kind"), (obj["metadata"].get("namespace") + "/") if obj["metadata"].get("namespace")
                        else "", obj["metadata"].get("name"))
    if err.status == 401:  # about the credentials, not the object
        msg = err.msg
    elif err.status == 403:
        msg = forbidden("%s %s" % (verb, what), err.api_message)
    elif err.field_conflict:
        fields = ", ".join(c.get("field", "?") for c in err.causes)
        msg = ("Conflict on %s: field(s) %s are owned by another field manager (%s). Fix: remove them from the "
               "other tool, or set force_conflicts: true to take them over." % (what, fields, err.api_message))
    elif err.status == 422:
        causes = "; ".join("%s: %s" % (c.get("field", "?"), c.get("message", "")) for c in err.causes)
        msg = "The API server rejected %s as invalid: %s. Fix the option that sets these fields." % (
            what, causes or err.api_message)
    elif err.status == 404:
        msg = "Not found while trying to %s %s: %s. Fix: create what it depends on first (namespace, CRD)." % (
            verb, what, err.api_message)
    elif err.status == 400 and "forbidden" in err.api_message.lower():
        msg = "Admission rejected %s: %s" % (what, err.api_message)
    else:
        msg = "Could not %s %s: HTTP %s %s: %s" % (verb, what, err.status, err.reason, err.api_message)
    return NimError(msg, status=err.status, object=ref(obj))
