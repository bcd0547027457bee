"""Shared by the packaging tests (a module of its own: pytest imports every conftest.py as `conftest`)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def run(args, env=None, cwd=None, timeout=300):
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s exited %s:\n%s\n%s" % (
        " ".join(args), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout
