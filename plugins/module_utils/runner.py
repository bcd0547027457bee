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

from ansible_collections.nimguard.k8s.plugins.module_utils import specs
from ansible_collections.nimguard.k8s.plugins.module_utils.client import client_from_params
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.kubeconfig import COMMAND_RUNNER
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import Scrubber


class Task(object):
    """What a module's logic needs from the call besides its options: check and diff mode, the cluster
    client, and (nim_image_scan) the host's commands and a private temporary folder."""

    def __init__(self, check_mode=False, diff=False, reuse=False, module=None):
        self.check_mode, self.diff, self.reuse = check_mode, diff, reuse
        self._module = module
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


def scrubber(params):
    """Every secret value among the options, to be masked (plain and base64) in anything returned."""
    s = Scrubber()
    s.add(params.get("api_key"))
    s.add(params.get("password"))
    s.add(params.get("value"))
    for v in (params.get("data") or {}).values():
        s.add(str(v))
    reg = params.get("registry") or {}
    if reg.get("password"):
        s.add(reg["password"])
        s.add("%s:%s" % (reg["username"], reg["password"]))
    tls = params.get("tls") or {}
    s.add(tls.get("key"))
    return s


def run(logic, params, task):
    """Run one module's logic. Returns (ok: bool, result dict); never raises for user errors."""
    scrub = scrubber(params)
    try:
        ok, out = True, logic.run(params, task)
    except NimError as e:
        ok, out = False, dict(msg=e.msg, changed=False)
        out.update(e.details)
    try:
        connection = task.warnings()
        if connection:
            out["warnings"] = connection + [w for w in out.get("warnings") or [] if w not in connection]
        return ok, scrub.scrub(out)
    finally:
        task.close()


def run_module(logic):
    """Entry point of the modules (AnsibleModule on the target host)."""
    from ansible.module_utils.basic import AnsibleModule  # not needed in the action plugin's worker
    module = AnsibleModule(**specs.spec(logic.NAME))
    COMMAND_RUNNER["run"] = lambda argv, env_update=None, timeout=None: module.run_command(argv, environ_update=env_update or {})
    ok, result = run(logic, module.params, Task(module.check_mode, module._diff, module=module))
    if ok:
        module.exit_json(**result)
    module.fail_json(**result)
