#!/usr/bin/env python3
"""Proves that each check of validate.sh and check.py bites: every case breaks one thing in a
temporary copy of deploy/k8s and expects a failure naming the file and the problem.

    bash deploy/k8s/validate.sh --self-test     # how to run it (validate.sh provides PyYAML)

The flag cases need CUTOVER_BIN (a built cutover binary) and are skipped without it.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLUE_2 = '      "https://blue-2.blue.cutover.svc.cluster.local:7071",\n'
PROXY_1 = '      "https://proxy-1.proxy.cutover.svc.cluster.local:8081",\n'
BLUE_URLS = ("https://blue-0.blue.cutover.svc.cluster.local:7070,"
             "https://blue-1.blue.cutover.svc.cluster.local:7070,"
             "https://blue-2.blue.cutover.svc.cluster.local:7070")
# The placeholder certificates of blue and green, as secrets/tls.yaml holds them.
BLUE_CERT, GREEN_CERT = re.findall(r"  tls\.crt: \|\n(?:    .*\n)+",
                                   (HERE / "secrets/tls.yaml").read_text())[:2]
TLS_MOUNT = """            - name: tls
              mountPath: /run/secrets/cutover-tls
              readOnly: true
"""

# (what breaks, file, text, replacement, what the failure must say)
STRUCTURAL = [
    ("replicas differ from the cluster file", "blue.yaml", "  replicas: 3", "  replicas: 4",
     "blue.yaml: StatefulSet/blue: replicas is 4, but its cluster file (blue.yaml) names 3 nodes"),
    ("a pod without a cluster entry", "blue.yaml", 'name = "blue-2"', 'name = "blue-two"',
     "blue.yaml: ConfigMap/blue-cluster: cluster file has no [[node]] named 'blue-2'"),
    ("a partition without owner", "blue.yaml", 'owns = "42-63"', 'owns = "43-63"',
     "blue.yaml: ConfigMap/blue-cluster: partitions 42 have no owner"),
    ("a partition owned twice", "green.yaml", 'owns = "32-63"', 'owns = "30-63"',
     "green.yaml: ConfigMap/green-cluster: partitions 30-31 are owned by 'green-0' and 'green-1'"),
    ("a peer address that is not the pod's", "blue.yaml",
     'http = "blue-1.blue.cutover.svc.cluster.local:7070"',
     'http = "blue-1.blue.cutover.svc.cluster.local:7080"',
     "node 'blue-1': http = 'blue-1.blue.cutover.svc.cluster.local:7080', but the pod is "
     "reached at 'blue-1.blue.cutover.svc.cluster.local:7070'"),
    ("a grace period the daemon's drain does not fit in", "proxy.yaml",
     "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds: 10",
     "proxy.yaml: StatefulSet/proxy: terminationGracePeriodSeconds 10 is not above"),
    ("no grace period", "orchestrator.yaml", "      terminationGracePeriodSeconds: 20\n", "",
     "orchestrator.yaml: Deployment/orchestrator: sets no terminationGracePeriodSeconds"),
    ("a probe on an undeclared port", "blue.yaml",
     "path: /readyz\n              port: http", "path: /readyz\n              port: web",
     "blue.yaml: StatefulSet/blue container node: readinessProbe port 'web' is not a port"),
    ("a probe on the gRPC port", "green.yaml",
     "path: /healthz\n              port: http\n              scheme: HTTPS\n"
     "            periodSeconds: 10",
     "path: /healthz\n              port: grpc\n              scheme: HTTPS\n"
     "            periodSeconds: 10",
     "livenessProbe probes port 7071, but /healthz and /readyz are on --http 0.0.0.0:7070"),
    ("a Service targeting an undeclared port", "orchestrator.yaml",
     "port: 7171\n      targetPort: grpc", "port: 7171\n      targetPort: 7777",
     "orchestrator.yaml: Service/orchestrator: port grpc targets 7777, which "
     "Deployment/orchestrator does not declare"),
    ("a scrape annotation on an undeclared port", "blue.yaml",
     'prometheus.io/port: "7070"', 'prometheus.io/port: "9090"',
     "blue.yaml: StatefulSet/blue: prometheus.io/port '9090' is not a declared container port"),
    ("a scrape annotation on the gRPC port", "orchestrator.yaml",
     'prometheus.io/port: "7172"', 'prometheus.io/port: "7171"',
     "prometheus.io/port 7171 does not serve /metrics"),
    ("a declared port bound to loopback", "proxy.yaml",
     "--admin=0.0.0.0:8081", "--admin=127.0.0.1:8081",
     "declares port 8081 (admin), but --admin binds 127.0.0.1:8081: nothing outside the pod"),
    ("a data folder on the read-only root", "green.yaml",
     "--data-dir=/var/lib/cutover/data", "--data-dir=/data",
     "green.yaml: StatefulSet/green container node: --data-dir /data is on the read-only root"),
    ("a cluster file the volume does not hold", "blue.yaml",
     "--cluster=/etc/cutover/cluster.toml", "--cluster=/etc/cutover/blue.toml",
     "--cluster /etc/cutover/blue.toml: volume config mounted at /etc/cutover provides no file"),
    ("a node without its pod name", "blue.yaml", "name: CUTOVER_NAME", "name: CUTOVER_NODE",
     "blue.yaml: StatefulSet/blue container node: does not give the node its pod name"),
    ("a headless Service hiding pods that are not ready", "green.yaml",
     "publishNotReadyAddresses: true", "publishNotReadyAddresses: false",
     "green.yaml: Service/green: needs publishNotReadyAddresses: true"),
    ("a plan leaving out a blue node", "plan.yaml", BLUE_2, "",
     "plan.yaml: ConfigMap/upgrade-plan: [blue] sources: leaves out ['blue-2'] of "
     "StatefulSet/blue (3 replicas)"),
    ("a plan source on the HTTP port", "plan.yaml",
     "blue-0.blue.cutover.svc.cluster.local:7071", "blue-0.blue.cutover.svc.cluster.local:7070",
     "StatefulSet/blue is reached at blue-0.blue.cutover.svc.cluster.local:7071 (--grpc)"),
    ("a plan sink that is a blue node", "plan.yaml",
     '"https://green-1.green.cutover.svc.cluster.local:7071"',
     '"https://blue-1.blue.cutover.svc.cluster.local:7071"',
     "[green] sinks: must name the pods of one node StatefulSet, names ['blue', 'green']"),
    ("a plan leaving out a proxy", "plan.yaml", PROXY_1, "",
     "[proxies] control: leaves out https://proxy-1.proxy.cutover.svc.cluster.local:8081"),
    ("a plan sending a token in clear text", "plan.yaml",
     '"https://blue-0.blue.cutover.svc.cluster.local:7071"',
     '"http://blue-0.blue.cutover.svc.cluster.local:7071"',
     "[blue] sources: http://blue-0.blue.cutover.svc.cluster.local:7071 is http://, but "
     "[blue] has a token_file, which `cutover upgrade start` refuses to send in clear text"),
    ("a plan calling a proxy's TLS port in clear text", "plan.yaml",
     '"https://proxy-0.proxy.cutover.svc.cluster.local:8081"',
     '"http://proxy-0.proxy.cutover.svc.cluster.local:8081"',
     "[proxies] control: http://proxy-0.proxy.cutover.svc.cluster.local:8081: "
     "StatefulSet/proxy serves TLS on --admin: write https://"),
    ("a plan token that is not the one the nodes check", "plan.yaml",
     'token_file = "/run/secrets/cutover/green.token"',
     'token_file = "/run/secrets/cutover/blue.token"',
     "the plan's [green] token_file /run/secrets/cutover/blue.token comes from Secret "
     "cutover-blue-token, but those daemons check ['cutover-green-token']"),
    ("a proxy leaving out a blue node", "proxy.yaml",
     BLUE_URLS, BLUE_URLS.rsplit(",", 1)[0],
     "proxy.yaml: StatefulSet/proxy container proxy: --blue: leaves out ['blue-2']"),
    ("a proxy sending blue's traffic to green", "proxy.yaml",
     "--blue=" + BLUE_URLS, "--blue=https://green-0.green.cutover.svc.cluster.local:7070",
     "--blue: names ['green'], but the plan's blue is StatefulSet/blue"),
    ("a proxy calling a node's TLS port in clear text", "proxy.yaml",
     "--blue=https://blue-0", "--blue=http://blue-0",
     "--blue: http://blue-0.blue.cutover.svc.cluster.local:7070: StatefulSet/blue serves TLS "
     "on --http: write https://"),
    ("a node without a CA to verify its peers", "blue.yaml",
     "            - --tls-ca=/run/secrets/cutover-tls/ca.crt\n", "",
     "blue.yaml: StatefulSet/blue container node: passes no --tls-ca"),
    ("a daemon allowed to send tokens in clear text", "orchestrator.yaml",
     "- --log-format=json", "- --insecure-token\n            - --log-format=json",
     "orchestrator.yaml: Deployment/orchestrator container orchestrator: passes "
     "--insecure-token"),
    ("a certificate on a subPath mount", "proxy.yaml", TLS_MOUNT,
     TLS_MOUNT.replace("cutover-tls\n", "cutover-tls/tls.crt\n              subPath: tls.crt\n"),
     "--tls-cert /run/secrets/cutover-tls/tls.crt is mounted by subPath, which the kubelet "
     "never updates"),
    ("a probe in clear text to a TLS port", "green.yaml",
     "path: /readyz\n              port: http\n              scheme: HTTPS\n",
     "path: /readyz\n              port: http\n",
     "green.yaml: StatefulSet/green container node: readinessProbe asks over HTTP, but --http "
     "serves TLS: set scheme: HTTPS"),
    ("a scrape in clear text of a TLS port", "orchestrator.yaml",
     "prometheus.io/scheme: https", "prometheus.io/scheme: http",
     "orchestrator.yaml: Deployment/orchestrator: prometheus.io/scheme is http, but port 7172 "
     "serves /metrics over TLS: set it to https"),
    ("a placeholder certificate for another role", "secrets/tls.yaml", BLUE_CERT, GREEN_CERT,
     "secrets/tls.yaml: Secret/cutover-blue-tls: tls.crt holds no "
     "blue-0.blue.cutover.svc.cluster.local, at which StatefulSet/blue is reached"),
    ("a cert-manager certificate missing a pod", "examples/certificates.yaml",
     "    - blue-2.blue.cutover.svc.cluster.local\n", "",
     "examples/certificates.yaml: Certificate/cutover-blue: holds no "
     "blue-2.blue.cutover.svc.cluster.local, at which StatefulSet/blue is reached: add it to "
     "dnsNames"),
    ("an orchestrator certificate without 127.0.0.1", "examples/certificates.yaml",
     "  ipAddresses: [127.0.0.1]\n", "",
     "Certificate/cutover-orchestrator: holds no 127.0.0.1, at which Deployment/orchestrator "
     "is reached: add it to ipAddresses"),
    ("a misspelt cert-manager field", "examples/certificates.yaml", "  dnsNames:", "  dnsName:",
     "examples/certificates.yaml: Certificate/cutover-blue: spec has an unknown field "
     "'dnsName'"),
    ("a resource in another namespace", "plan.yaml", "namespace: cutover", "namespace: default",
     "plan.yaml: ConfigMap/upgrade-plan: namespace 'default' is not one of ['cutover']"),
    ("a file kustomization.yaml leaves out", "kustomization.yaml", "  - proxy.yaml\n", "",
     "proxy.yaml: is not listed in kustomization.yaml's resources"),
    ("a Secret no manifest defines", "secrets/tokens.yaml",
     "name: cutover-proxy-token", "name: cutover-proxies-token",
     "uses Secret 'cutover-proxy-token', which no manifest defines"),
]

FLAGS = [
    ("a misspelt flag", "blue.yaml", "--log-format=json", "--log-fromat=json",
     "blue.yaml: StatefulSet/blue container node: passes --log-fromat, which "
     "`cutover node --help` does not list"),
    ("another role's flag", "green.yaml", "--log-format=json", "--workers=1",
     "green.yaml: StatefulSet/green container node: passes --workers, which "
     "`cutover node --help` does not list"),
    ("a sidecar's misspelt flag", "examples/sidecar.yaml", "--workers=1", "--worker=1",
     "examples/sidecar.yaml: Deployment/your-app container cutover-proxy: passes --worker,"),
    ("a variable the daemon does not read", "orchestrator.yaml",
     "name: CUTOVER_TOKEN_FILE", "name: CUTOVER_TOKEN",
     "sets CUTOVER_TOKEN, which neither `cutover orchestrator --help` nor `cutover upgrade "
     "--help` reads"),
    ("a variable a node does not read", "blue.yaml", "name: RUST_LOG", "name: CUTOVER_TLS",
     "sets CUTOVER_TLS, which `cutover node --help` does not read"),
]

SCHEMA = [
    ("a misspelt field (strict schema)", "green.yaml",
     "terminationGracePeriodSeconds: 20", "terminationGracePeriod: 20",
     "green.yaml did not validate for resource statefulset/green against version 1.29"),
    ("a value of the wrong type", "proxy.yaml", "  replicas: 2", '  replicas: "2"',
     "proxy.yaml did not validate for resource statefulset/proxy"),
    ("an apiVersion Kubernetes 1.29 no longer serves", "blue.yaml",
     "apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n",
     "blue.yaml Couldn't find schema for kind PodDisruptionBudget with api version "
     "policy/v1beta1"),
    ("a cert-manager apiVersion check.py does not check", "examples/certificates.yaml",
     "apiVersion: cert-manager.io/v1\n", "apiVersion: cert-manager.io/v1alpha2\n",
     "examples/certificates.yaml Couldn't find schema for kind Issuer with api version "
     "cert-manager.io/v1alpha2"),
]


def broken_copy(tmp, file, old, new):
    copy = Path(tmp) / "k8s"
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / file
    text = path.read_text()
    assert old in text, f"{file} no longer holds {old!r}: update this case"
    path.write_text(text.replace(old, new, 1))
    return copy


def run(args, env=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


class Bites(unittest.TestCase):
    def test_the_manifests_as_committed_pass(self):
        result = run([sys.executable, str(HERE / "check.py"), str(HERE)])
        self.assertEqual(result.returncode, 0, result.stderr)

    def expect(self, cases, command, env=None):
        for what, file, old, new, message in cases:
            with self.subTest(what), tempfile.TemporaryDirectory() as tmp:
                copy = broken_copy(tmp, file, old, new)
                result = run(command(copy), env)
                self.assertNotEqual(result.returncode, 0, f"{what}: passed\n{result.stdout}")
                self.assertIn(message, result.stdout + result.stderr, what)

    def test_structural_checks_bite(self):
        self.expect(STRUCTURAL, lambda copy: [sys.executable, str(HERE / "check.py"), str(copy)])

    @unittest.skipUnless(os.environ.get("CUTOVER_BIN"), "CUTOVER_BIN is not set")
    def test_the_flag_check_bites(self):
        self.expect(FLAGS, lambda copy: [sys.executable, str(HERE / "check.py"), str(copy)])

    def test_the_schema_check_bites(self):
        self.expect(SCHEMA, lambda copy: ["bash", str(HERE / "validate.sh"), str(copy)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
