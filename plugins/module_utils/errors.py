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


def unexpected(exc, where=""):
    """The message of an exception that is not a NimError: its type and what can be said of it without its text,
    which may quote an option, a header, a command line or a YAML line (a token, a password). Known kinds keep
    their position and reason; anything else is named by type only."""
    kind = type(exc).__name__
    if hasattr(exc, "problem_mark") or hasattr(exc, "problem"):  # yaml.MarkedYAMLError
        mark = getattr(exc, "problem_mark", None)
        detail = "YAML %s%s" % (getattr(exc, "problem", None) or "error",
                                " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else "")
        fix = "correct the YAML at that position (the line is not shown: it may hold a secret value)."
    elif hasattr(exc, "lineno") and hasattr(exc, "colno") and hasattr(exc, "msg"):  # json.JSONDecodeError
        detail = "JSON %s at line %d, column %d" % (exc.msg, exc.lineno, exc.colno)
        fix = "correct the JSON at that position (the text is not shown: it may hold a secret value)."
    elif isinstance(exc, UnicodeError):
        detail = "%s cannot be %s (%s)" % (getattr(exc, "encoding", "text"),
                                           "decoded" if isinstance(exc, UnicodeDecodeError) else "encoded",
                                           getattr(exc, "reason", "invalid character"))
        fix = "give the value as valid UTF-8 text (a binary file or a Latin-1 export does not qualify)."
    elif hasattr(exc, "timeout") and hasattr(exc, "cmd"):  # subprocess.TimeoutExpired
        cmd = exc.cmd if isinstance(exc.cmd, (list, tuple)) else [exc.cmd]
        detail = "command %s did not finish within %s s" % (str(cmd[0]).rsplit("/", 1)[-1] if cmd else "?", exc.timeout)
        fix = ("run it by hand where the task runs (a kubeconfig exec plugin waiting for a login?); its arguments are "
               "not shown: they may hold credentials.")
    elif isinstance(exc, ValueError) and str(exc).startswith("Invalid header"):
        detail = "an HTTP header value is invalid (it holds a line break or another control character)"
        fix = ("remove line breaks and surrounding whitespace from api_key, the kubeconfig's token or the token file "
               "(a YAML '|' block or a file keeps the final newline).")
    else:
        detail = "details withheld: the exception's text may quote option values"
        fix = "report it as a bug with the task (without its secret values); the type and place above say where."
    return "Unexpected %s%s: %s. Fix: %s" % (kind, " " + where if where else "", detail, fix)


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
