# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors for the user. Every message names the field (the option) and the fix.

Nothing here imports from the package, so every layer can raise these without depending on the HTTP
client (see docs/development.md for the layers)."""

from __future__ import annotations


class NimError(Exception):
    """An error for the user: `msg` names the field and the fix. Extra keys go into the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def forbidden(action, detail=None):
    """The one wording of an HTTP 403, wherever it is met: what was refused, and the two ways out."""
    return ("Forbidden: the identity used cannot %s%s. Fix: grant it that verb on that resource (a Role or "
            "ClusterRole and a binding), or use a kubeconfig/context that has it."
            % (action, " (%s)" % detail if detail else ""))


class ApiError(NimError):
    """An answer of the API server with an error status, explained for the user."""

    def __init__(self, status, reason, message, method, path, causes=None):
        self.status = status
        self.reason = reason or ""
        self.api_message = message or ""
        self.method = method
        self.path = path
        self.causes = causes or []
        super().__init__(self._explain(), status=status, reason=self.reason)

    def _explain(self):
        where = "%s %s" % (self.method, self.path)
        if self.status == 401:
            return ("Unauthorized (%s): the API server rejected the credentials. Fix: refresh the token or client "
                    "certificate in the kubeconfig, or check api_key." % where)
        if self.status == 403:
            return forbidden(where, self.api_message)
        if self.status == 422:
            causes = "; ".join("%s: %s" % (c.get("field", "?"), c.get("message", "")) for c in self.causes)
            return "Invalid (%s): %s. Fix the option that sets these fields." % (where, causes or self.api_message)
        return "%s: HTTP %s %s: %s" % (where, self.status, self.reason, self.api_message)

    @property
    def field_conflict(self):
        return self.status == 409 and any(c.get("type") == "FieldManagerConflict" for c in self.causes)
