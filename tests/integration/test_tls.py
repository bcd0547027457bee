"""TLS everywhere against the real API server: nim_service refuses a plain-HTTP Ingress before any write, and
the doctor lists every service exposed without TLS, both the ones about to be deployed (options) and the
managed ones found live, once each."""

from playbook import run_play, writes

IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}


def service(ns, name, **kw):
    args = dict(name=name, namespace=ns, auth_secret="ngc-api-secret", image=IMAGE)
    args.update(kw)
    return args


def test_plain_ingress_refused_before_any_write(cluster, namespace):
    ns = namespace
    run_play(cluster, [{"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc",
                                                    "value": "nvapi-tls-test-not-a-key"}}])
    mark = cluster.audit_mark()
    play = run_play(cluster, [{"nimguard.k8s.nim_service": service(
        ns, "plain", expose={"ingress": {"enabled": True, "host": "plain.example.com"}})}])
    assert play[0].get("failed") and "tls_secret_name" in play[0]["msg"], play[0]
    assert "cert-manager.io/cluster-issuer" in play[0]["msg"]
    assert writes(cluster, mark, ns) == []


def test_doctor_lists_each_service_exposed_without_tls(cluster, namespace):
    ns = namespace
    deployed = [
        service(ns, "nodeport", expose={"service": {"type": "NodePort"}}),
        service(ns, "plain-http", expose={"ingress": {"enabled": True, "host": "plain.example.com",
                                                      "allow_plain_http": True}}),
        service(ns, "lb-tls", expose={"service": {"type": "LoadBalancer", "annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": "arn:aws:acm:eu-west-1:123:certificate/x"}}}),
        service(ns, "gateway", expose={"service": {"type": "NodePort", "annotations": {
            "nimguard.io/tls-in-front": "Envoy gateway nim-gw terminates TLS"}}}),
        service(ns, "tls-ingress", expose={"ingress": {"enabled": True, "host": "tls.example.com",
                                                       "tls_secret_name": "nim-tls"}}),
    ]
    tasks = [{"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc",
                                          "value": "nvapi-tls-test-not-a-key"}}]
    tasks += [{"nimguard.k8s.nim_service": s} for s in deployed]
    play = run_play(cluster, tasks)
    assert all(not r.get("failed") for r in play.results), play
    # the doctor, given one deployed service again and one not yet deployed
    planned = [{"name": "nodeport", "expose": {"service": {"type": "NodePort"}}},
               {"name": "new-lb", "expose": {"service": {"type": "LoadBalancer"}}}]
    doctor = {"namespace": ns, "services": planned, "checks": ["tls"]}
    play = run_play(cluster, [{"nimguard.k8s.nim_doctor": dict(doctor, fail_on="never")},
                              {"nimguard.k8s.nim_doctor": dict(doctor, fail_on="warn")},
                              {"nimguard.k8s.nim_doctor": dict(doctor, fail_on="fail")}])
    report, strict, lenient = play.results
    messages = sorted(f["message"] for f in report["findings"])
    assert messages == sorted([
        "Ingress %s/plain-http serves plain HTTP" % ns,
        "Service %s/new-lb is a LoadBalancer: it exposes the NIM API without TLS in front" % ns,
        "Service %s/nodeport is a NodePort: it exposes the NIM API without TLS in front" % ns,
    ]), messages
    assert all(f["status"] == "warn" and "Fix" not in f["message"] and f["fix"] for f in report["findings"])
    assert strict.get("failed") and "nimguard.io/tls-in-front" in strict["msg"], strict
    assert not lenient.get("failed") and lenient["warnings_count"] == 3, lenient
