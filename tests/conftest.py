# Makes `ansible_collections.nimguard.k8s` importable when pytest runs from a plain checkout
# (ansible-test does this itself).
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import ansible_collections.nimguard.k8s.plugins  # noqa: F401  pylint: disable=unused-import
except ImportError:
    base = os.path.join(tempfile.gettempdir(), "nimguard-pytest-collections")
    link = os.path.join(base, "ansible_collections", "nimguard", "k8s")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != ROOT:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(ROOT, link)
    sys.path.insert(0, base)
