# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin shared by every module of the collection.

Starting a module costs a new Python interpreter and an AnsiballZ payload per task, which is most of
a converge's time (the API work is milliseconds). When the task runs on the controller itself
(connection local, no become), the same module_utils code runs here, in the worker process; on any
other host the module runs there as usual, so a bastion host that alone reaches the API keeps working.

Each action plugin names its module (MODULE); its logic is module_utils/modules/<MODULE>.py and its
argument spec specs.MODULES[MODULE]. What differs between modules is an override in that plugin
(nim_service's `service` dict: module_args()), never a branch here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import subprocess
import sys

from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

# Set NIMGUARD_REMOTE_MODULE=1 to always run the module the classic way (for comparisons and debugging).
_FORCE_MODULE = "NIMGUARD_REMOTE_MODULE"
_ENV_PREFIXES = ("K8S_AUTH_", "KUBECONFIG", "KUBERNETES_SERVICE_")
_MODULE_UTILS = "ansible_collections.nimguard.k8s.plugins.module_utils"
_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")


class _BytecodeFinder(object):
    """Finds the collection's module_utils files for Python's own file loader, which keeps their bytecode in
    __pycache__. Ansible's collection loader compiles a collection's code from source at every import, and
    each task's worker process imports it anew: about 20 ms a task on a 2-core machine, most of a rerun's
    Ansible cost beyond the first task. Being an import hook, it loads whatever a module imports, in the
    order the imports ask for it: no list to keep. Folders (packages) are left to the collection loader."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if not fullname.startswith(_MODULE_UTILS + "."):
            return None
        source = os.path.join(_FOLDER, *fullname[len(_MODULE_UTILS) + 1:].split(".")) + ".py"
        return importlib.util.spec_from_file_location(fullname, source) if os.path.isfile(source) else None


def module_utils(name):
    """A module_utils module, imported in the worker through _BytecodeFinder (the controller does not
    import module_utils: the client's imports, ssl and http.client, would add 5 MB to its peak memory)."""
    if _BytecodeFinder not in sys.meta_path:
        sys.meta_path.insert(0, _BytecodeFinder)
    return importlib.import_module("%s.%s" % (_MODULE_UTILS, name))


def _run_command(argv, env_update=None, timeout=None):
    """Commands (kubeconfig exec plugins, Trivy) started here in the worker: module_utils' kubeconfig.COMMAND_RUNNER.
    The module path uses AnsibleModule.run_command instead."""
    proc = subprocess.run(argv, env=dict(os.environ, **(env_update or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class NimAction(ActionBase):
    MODULE = ""
    TRANSFERS_FILES = False

    def module_args(self, args):
        """The task's arguments as the module takes them (an override's ValueError fails the task)."""
        return args

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
        result = super(NimAction, self).run(tmp, task_vars)
        try:
            args = self.module_args(dict(self._task.args))
        except ValueError as e:
            result.update(failed=True, changed=False, msg=str(e))
            return result
        if not self._in_controller():
            result.update(self._execute_module(module_name="nimguard.k8s." + self.MODULE,
                                               module_args=args, task_vars=task_vars))
            return result
        runner, specs = module_utils("runner"), module_utils("specs")
        module_utils("kubeconfig").COMMAND_RUNNER["run"] = _run_command
        logic = module_utils("modules." + self.MODULE)
        no_log_values = set()
        try:
            with self._task_environment():
                validated = specs.validator_for(self.MODULE).validate(args)
                no_log_values = validated._no_log_values
                if validated.error_messages:
                    out = dict(failed=True, msg=self._argument_error(validated))
                else:
                    looping = bool(self._task.loop or self._task.loop_with)
                    host = (task_vars or {}).get("inventory_hostname", "localhost")
                    task = runner.Task(bool(self._task.check_mode), bool(self._task.diff), reuse=looping,
                                       progress=lambda line: Display().display("%s | %s" % (host, line)))
                    ok, out = runner.run(logic, validated.validated_parameters, task)
                    if not ok:
                        out["failed"] = True
                out = self._argument_notes(validated, out)
        except Exception as e:  # pylint: disable=broad-except
            # runner.run catches the module's own failures; this is the rest (the task's environment, the spec
            # check), which Ansible would print as "Unexpected failure during task execution: <its text>".
            out = runner.scrubber(args).scrub(dict(failed=True, changed=False, exception_type=type(e).__name__,
                                                   msg=module_utils("errors").unexpected(e, "in " + self.MODULE)))
        result.update(remove_values(out, no_log_values))
        return result

    def _argument_error(self, validated):
        """The error AnsibleModule fails with on the module path, word for word: its first error, and ansible-core's
        prefix for an unknown option."""
        msg = validated.errors.msg
        if isinstance(validated.errors[0], UnsupportedError):
            msg = "Unsupported parameters for (nimguard.k8s.%s) module: %s" % (self.MODULE, msg)
        return msg

    @staticmethod
    def _argument_notes(validated, out):
        """What ansible-core's ModuleArgumentSpecValidator tells on the module path besides errors: an option set
        together with its alias (a warning) and deprecated options or aliases (deprecations)."""
        warnings = ["Both option %s and its alias %s are set." % (w["option"], w["alias"]) for w in validated._warnings]
        deprecations = [dict((k, d.get(k)) for k in ("msg", "version", "date", "collection_name"))
                        for d in validated._deprecations]
        if warnings:
            out = dict(out, warnings=warnings + list(out.get("warnings") or []))
        if deprecations:
            out = dict(out, deprecations=deprecations + list(out.get("deprecations") or []))
        return out
