"""checks.py's pure rules."""
import copy

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from ansible_collections.nimguard.k8s.plugins.module_utils.checks import new_pods

from .helpers import service


def deployment(**options):
    return [o for o in render.render_service(service(**options), "sha256:abc") if o["kind"] == "Deployment"][0]


def test_new_pods_for_the_gpu_check():
    """A GPU is needed free only when pods start: all of them for a new Deployment, a surge pod beside the running
    ones when the template changes or the Deployment grows, none for a rerun or a change to its metadata."""
    dep = deployment()
    live = copy.deepcopy(dep)
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"  # server defaults do not count
    assert new_pods(dep, None) == "all"
    assert new_pods(dep, live) is None
    relabelled = copy.deepcopy(dep)
    relabelled["metadata"].setdefault("annotations", {})["example.com/owner"] = "x"
    assert new_pods(relabelled, live) is None
    changed = copy.deepcopy(dep)
    changed["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    assert new_pods(changed, live) == "surge"
    grown = copy.deepcopy(dep)
    grown["spec"]["replicas"] = 2
    assert new_pods(grown, live) == "surge"
    shrunk = copy.deepcopy(live)
    shrunk["spec"]["replicas"] = 2
    assert new_pods(dep, shrunk) is None
