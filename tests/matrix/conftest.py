"""The integration slice of `scripts/test matrix` runs on tests/integration's fixtures and helpers (the local
cluster, a namespace per test, ansible-playbook runs, the leak scan): imported from there, not copied."""

import importlib.util
import os
import sys

INTEGRATION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration")
sys.path.insert(0, INTEGRATION)  # playbook.py, test_security.py

_spec = importlib.util.spec_from_file_location("nimguard_integration_conftest", os.path.join(INTEGRATION, "conftest.py"))
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)

cluster = _integration.cluster
namespace = _integration.namespace
