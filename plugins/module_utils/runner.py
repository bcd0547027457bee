# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One call of a module: its logic run, its result and errors passed through one scrubber.

Two entry points call run(): the module itself (run_module(), AnsibleModule on the target host) and the
action plugin (in the controller's worker, when the task runs there). Each hands over the module's logic
(module_utils/modules/<module>.py: NAME and run(options, task)) and the options checked against the
module's argument spec (specs.py). Nothing here knows one module from another."""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.nimguard.k8s.plugins.module_utils import secrets, specs
from ansible_collections.nimguard.k8s.plugins.module_utils.client import client_from_params
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError, unexpected
from ansible_collections.nimguard.k8s.plugins.module_utils.kubeconfig import COMMAND_RUNNER
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import URL_USERINFO, Scrubber, clean, secret_looking


class Task(object):
    """What a module's logic needs from the call besides its options: check and diff mode, the cluster
    client, and (nim_image_scan) the host's commands and a private temporary folder."""

    def __init__(self, check_mode=False, diff=False, reuse=False, module=None, progress=None):
        self.check_mode, self.diff, self.reuse = check_mode, diff, reuse
        self._module = module
        self._progress = progress
        self._tmpdir = None
        self.clients = []

    def client(self, params):
        """reuse: the caller runs many items in this process (a loop): they share the client and its LISTs."""
        client = client_from_params(params, reuse=self.reuse)
        self.clients.append(client)
        return client

    def warnings(self):
        """The connection's warnings (certificate checks off, plain HTTP), once each."""
        out = []
        for client in self.clients:
            out.extend(w for w in client.warnings if w not in out)
        return out

    def progress(self, line):
        """A line on how a long wait stands: displayed by the action plugin; a module has nowhere to print it."""
        if self._progress:
            self._progress(line)

    def run_command(self, argv):
        """(rc, stdout, stderr) of a command on the host the task runs on."""
        return COMMAND_RUNNER["run"](argv)

    def find_binary(self, name):
        """A command's path (a path is taken as it is, if executable), or None."""
        if os.sep in name:
            return name if os.access(name, os.X_OK) else None
        return self._module.get_bin_path(name) if self._module else shutil.which(name)

    @property
    def tmpdir(self):
        if self._module:
            return self._module.tmpdir
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="nimguard-")
        return self._tmpdir

    def close(self):
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def _url_secrets(url, scrub):
    """The user:password@ of a URL (a proxy, a DSN), and the password alone."""
    match = URL_USERINFO.search(url) if isinstance(url, str) else None
    if match:
        scrub.add(match.group("userinfo"))
        scrub.add(match.group("userinfo").partition(":")[2])


def _secret_env(items, scrub):
    for item in items or []:
        if isinstance(item, dict) and item.get("value") is not None:
            if secret_looking(item.get("name"), item["value"]):
                scrub.add(str(item["value"]))
            _url_secrets(item["value"], scrub)


def _leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    elif node is not None:
        yield str(node)


def _definition_secrets(node, scrub):
    """Values of Secrets (data, stringData, however nested) in a nim_apply definition: an API error may echo them."""
    if isinstance(node, list):
        for item in node:
            _definition_secrets(item, scrub)
    elif isinstance(node, dict):
        if node.get("kind") == "Secret":
            for value in _leaves([node.get("data"), node.get("stringData")]):
                scrub.add(value)
        for item in node.get("items") or []:
            _definition_secrets(item, scrub)


def _kubeconfig_secrets(doc, scrub):
    """Credentials of an inline kubeconfig (a dict as the `kubeconfig` option): tokens, passwords, client keys,
    and an exec plugin's secret-looking environment and --name=value arguments."""
    for entry in doc.get("users") or [] if isinstance(doc, dict) else []:
        user = (entry or {}).get("user") or {} if isinstance(entry, dict) else {}
        for field in ("token", "password", "client-key-data"):
            scrub.add(user.get(field))
        exec_ = user.get("exec") or {}
        _secret_env(exec_.get("env"), scrub)
        for arg in exec_.get("args") or []:
            name, sep, value = str(arg).partition("=")
            if sep and secret_looking(name.lstrip("-").replace("-", "_"), value):
                scrub.add(value)


def scrubber(params):
    """Every secret value among the options, to be masked (in every form: redact._forms()) in anything returned."""
    s = Scrubber()
    s.add(params.get("api_key"))
    s.add(params.get("password"))
    for value in secrets.values(params):  # nim_secret's, the list form's elements included
        s.add(value)
    urls = [params.get("api_proxy")]
    for name in ("proxy", "outbound_proxy"):  # nim_service's outbound proxy (a dict), under its new and old name
        value = params.get(name)
        urls.extend(value.values() if isinstance(value, dict) else [value])
    for url in urls:
        _url_secrets(url, s)
    _secret_env(params.get("env"), s)
    for svc in [params.get("service")] + list(params.get("services") or []):
        if isinstance(svc, dict):
            _secret_env(svc.get("env"), s)
    _definition_secrets(params.get("definition"), s)
    _kubeconfig_secrets(params.get("kubeconfig"), s)
    return s


def run(logic, params, task):
    """Run one module's logic. Returns (ok: bool, result dict); never raises: every failure leaves through the
    scrubber, one that is not a NimError with its type and a message that quotes none of its text."""
    scrub = scrubber(params)
    try:
        ok, out = True, logic.run(params, task)
    except NimError as e:
        ok, out = False, dict(msg=e.msg, changed=False)
        out.update(e.details)
    except Exception as e:  # pylint: disable=broad-except
        ok, out = False, dict(msg=unexpected(e, "in " + logic.NAME), changed=False, exception_type=type(e).__name__)
    try:
        connection = task.warnings()
        if connection:
            out["warnings"] = connection + [w for w in out.get("warnings") or [] if w not in connection]
        return ok, scrub.scrub(out)
    finally:
        task.close()


def _invocation(params, scrub):
    """The module_args Ansible shows with a module's result (-vvv): secrets found by the scrubber masked, and a
    nim_apply definition with its Secrets' data redacted (YAML text, which may not even parse, is not shown)."""
    args = dict(params)
    definition = args.get("definition")
    if isinstance(definition, str):
        args["definition"] = "<YAML text of %d characters, not shown: it may hold Secret values>" % len(definition)
    elif isinstance(definition, list):
        args["definition"] = [clean(d) if isinstance(d, dict) else d for d in definition]
    elif isinstance(definition, dict):
        args["definition"] = clean(definition)
    return {"module_args": scrub.scrub(args)}


def run_module(logic):
    """Entry point of the modules (AnsibleModule on the target host)."""
    from ansible.module_utils.basic import AnsibleModule  # not needed in the action plugin's worker
    module = AnsibleModule(**specs.spec(logic.NAME))
    COMMAND_RUNNER["run"] = lambda argv, env_update=None, timeout=None: module.run_command(argv, environ_update=env_update or {})
    # The invocation Ansible adds to the result is masked by no_log values only: the secrets found in options
    # without no_log (an inline kubeconfig, an env value, a proxy's password) join them, and it is built here.
    scrub = scrubber(module.params)
    module.no_log_values.update(v for v in scrub.plain() if len(v) >= 3)
    invocation = _invocation(module.params, scrub)
    ok, result = run(logic, module.params, Task(module.check_mode, module._diff, module=module))
    result["invocation"] = invocation
    if ok:
        module.exit_json(**result)
    module.fail_json(**result)
