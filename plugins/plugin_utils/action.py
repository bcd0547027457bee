# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin shared by every module of the collection.

Starting a module costs a new Python interpreter and an AnsiballZ payload per task, which is most of
a converge's time (the API work is milliseconds). When the task runs on the controller itself
(connection local, no become), the same module_utils code runs here, in the worker process; on any
other host the module runs there as usual, so a bastion host that alone reaches the API keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import subprocess
import sys

from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

# Set NIMGUARD_REMOTE_MODULE=1 to always run the module the classic way (for comparisons and debugging).
_FORCE_MODULE = "NIMGUARD_REMOTE_MODULE"
_ENV_PREFIXES = ("K8S_AUTH_", "KUBECONFIG", "KUBERNETES_SERVICE_")
_MODULE_UTILS = "ansible_collections.nimguard.k8s.plugins.module_utils"
# What run() needs, each after the ones it imports.
_LOAD_ORDER = ("client", "redact", "render", "apply", "specs", "runner")


def _load_module_utils():
    """Import the module_utils that run() needs through Python's own loader, which keeps their bytecode
    in __pycache__. Ansible's collection loader compiles a collection's code from source at every import,
    and each task's worker process imports it anew (the controller does not import it: that would add
    5 MB to its peak memory): about 20 ms a task on a 2-core machine, and most of a rerun's Ansible cost
    beyond the first task."""
    package = importlib.import_module(_MODULE_UTILS)
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
    for name in _LOAD_ORDER:
        fullname = "%s.%s" % (_MODULE_UTILS, name)
        if fullname in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(fullname, os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[fullname] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[fullname]
            raise
        setattr(package, name, module)


def _run_command(argv, env_update):
    """kubeconfig exec plugins, started here in the worker (module_utils' client.COMMAND_RUNNER): the module path
    uses AnsibleModule.run_command instead."""
    proc = subprocess.run(argv, env=dict(os.environ, **env_update), capture_output=True, timeout=60, check=False)
    return proc.returncode, proc.stdout.decode("utf-8")


class NimAction(ActionBase):
    MODULE = ""
    TRANSFERS_FILES = False

    def _in_controller(self):
        transport = getattr(self._connection, "transport", "") or ""
        return (transport.split(".")[-1] == "local" and not self._play_context.become
                and os.environ.get(_FORCE_MODULE) != "1")

    @contextlib.contextmanager
    def _task_environment(self):
        """The task's `environment:` keyword, limited to the variables the client reads."""
        overlay = {}
        for entry in self._task.environment or []:
            entry = self._templar.template(entry)
            if isinstance(entry, dict):
                overlay.update((str(k), str(v)) for k, v in entry.items() if str(k).startswith(_ENV_PREFIXES))
        saved = dict((k, os.environ.get(k)) for k in overlay)
        os.environ.update(overlay)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def run(self, tmp=None, task_vars=None):
        # Imported here, in the worker: the controller loads this class for every task (to read its
        # class attributes), and the client's imports (ssl, http.client) would add 5 MB to it.
        _load_module_utils()
        from ansible_collections.nimguard.k8s.plugins.module_utils.client import COMMAND_RUNNER
        from ansible_collections.nimguard.k8s.plugins.module_utils.runner import run
        from ansible_collections.nimguard.k8s.plugins.module_utils.specs import expand_service, validator_for

        result = super(NimAction, self).run(tmp, task_vars)
        args = dict(self._task.args)
        if self.MODULE == "nim_service":
            try:
                args = expand_service(args)
            except ValueError as e:
                result.update(failed=True, changed=False, msg=str(e))
                return result
        if not self._in_controller():
            result.update(self._execute_module(module_name="nimguard.k8s." + self.MODULE,
                                               module_args=args, task_vars=task_vars))
            return result
        COMMAND_RUNNER["run"] = _run_command
        validator = validator_for(self.MODULE)
        with self._task_environment():
            validated = validator.validate(args)
            no_log_values = validated._no_log_values
            if validated.error_messages:
                out = dict(failed=True, msg="; ".join(validated.error_messages))
            else:
                looping = bool(self._task.loop or self._task.loop_with)
                ok, out = run(self.MODULE, validated.validated_parameters, check_mode=bool(self._task.check_mode),
                              diff=bool(self._task.diff), reuse=looping)
                if not ok:
                    out["failed"] = True
        result.update(remove_values(out, no_log_values))
        return result
