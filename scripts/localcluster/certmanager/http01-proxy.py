"""Stand-in for an ingress controller in front of cert-manager's ACME http01 solver (tests only).

cert-manager checks that http://<domain>/.well-known/acme-challenge/<token> serves the key before it
asks the ACME server to validate. The local cluster has no ingress controller and its pods only look
Running, so the controller runs with HTTP_PROXY pointing here: this proxy answers a challenge path
with the key of the Challenge object carrying that token (read from the API server), and 404 to
anything else. pebble itself validates nothing (PEBBLE_VA_ALWAYS_VALID=1).

  http01-proxy.py KUBECONFIG_DIR(pki) API_PORT PORT_FILE
Binds 127.0.0.1 on a free port and writes the port to PORT_FILE once it listens.
"""

import http.server
import json
import ssl
import sys
import urllib.parse
import urllib.request

PREFIX = "/.well-known/acme-challenge/"


def main():
    pki, api_port, port_file = sys.argv[1], sys.argv[2], sys.argv[3]
    ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
    ctx.load_cert_chain(pki + "/cert-manager.crt", pki + "/cert-manager.key")
    url = "https://127.0.0.1:%s/apis/acme.cert-manager.io/v1/challenges" % api_port

    def key_for(token):
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            items = json.load(resp).get("items", [])
        keys = [c["spec"].get("key") for c in items if c.get("spec", {}).get("token") == token]
        return keys[0] if keys else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # pylint: disable=invalid-name
            # Through a proxy the request line carries the absolute URL.
            path = urllib.parse.urlsplit(self.path).path
            key = key_for(path[len(PREFIX):]) if path.startswith(PREFIX) else None
            body = (key or "not found").encode()
            self.send_response(200 if key else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
