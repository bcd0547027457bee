"""playbooks/awx_setup.yml in check mode against a stand-in controller on loopback that answers every lookup with
an existing object (a controller set up before, with other settings): every task runs, reports the change it would
make, and the controller receives no request but GETs. The stand-in is not AWX: it shows that the playbook and the
awx.awx modules write nothing in check mode, not that AWX would accept the requests (see docs/awx.md)."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

import awxjob


RELATED = ("survey_spec", "credentials", "labels", "instance_groups", "hosts", "children", "input_inventories",
           "notification_templates_started", "notification_templates_success", "notification_templates_error")


class Controller(BaseHTTPRequestHandler):
    requests = []

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _answer(self):
        self.requests.append((self.command, self.path))
        url = urlparse(self.path)
        query = parse_qs(url.query)
        name = (query.get("name") or query.get("or__name") or query.get("username") or ["existing"])[0]
        parts = [p for p in url.path.split("/") if p]
        if len(parts) <= 2:  # /api/ or /api/v2/
            body = {"current_version": "/api/v2/", "available_versions": {"v2": "/api/v2/"}}
        elif len(parts) == 3:  # a list view: one existing object of that name
            body = {"count": 1, "next": None, "previous": None, "results": [{
                "id": 1, "name": name, "type": parts[2].rstrip("s"), "description": "set up before",
                "url": "%s1/" % url.path, "kind": "", "summary_fields": {},
                "related": dict((r, "%s1/%s/" % (url.path, r)) for r in RELATED)}]}
        else:  # a detail or related view
            body = {"count": 0, "next": None, "previous": None, "results": [], "id": 1, "name": name, "url": url.path,
                    "related": {}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-API-Product-Name", "AWX")
        self.send_header("X-API-Product-Version", "24.6.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _answer


@pytest.fixture
def controller():
    Controller.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Controller)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def test_check_mode_reads_only(controller, tmp_path):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CONTROLLER_", "TOWER_")))
    env.update(CONTROLLER_HOST=controller, CONTROLLER_OAUTH_TOKEN="check-mode-token", CONTROLLER_VERIFY_SSL="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", HOME=str(tmp_path))
    extra = {"nimguard_awx_project_url": "https://git.example.invalid/nim.git",
             "nimguard_awx_ee_image": "registry.example.invalid/nimguard-ee:0.1.0",
             "nimguard_awx_credentials": [{"name": "prod", "type": "kubernetes_cluster",
                                           "inputs": {"kubeconfig": "secret-kubeconfig-canary"}}]}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "--check", "-i",
                           "localhost,", os.path.join(awxjob.ROOT, "playbooks", "awx_setup.yml"), "-e",
                           json.dumps(extra), "-e", "ansible_python_interpreter=%s" % sys.executable],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "failed=0" in out and "changed=0" not in out, out[-3000:]
    methods = set(r[0] for r in Controller.requests)
    assert methods == {"GET"}, sorted(set(Controller.requests) - set(r for r in Controller.requests if r[0] == "GET"))
    paths = " ".join(r[1] for r in Controller.requests)
    for resource in ("credential_types", "credentials", "execution_environments", "projects", "inventories", "hosts",
                     "groups", "job_templates"):
        assert "/api/v2/%s/" % resource in paths, resource
    assert "secret-kubeconfig-canary" not in out
