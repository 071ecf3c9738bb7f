#!/usr/bin/env python3
"""Checks of the cutover Kubernetes manifests that a schema cannot make.

    python3 deploy/k8s/check.py [DIR]          # DIR defaults to this file's folder

Reads every *.yaml under DIR (kustomization.yaml aside) and checks that the pieces fit:
the cluster files against their StatefulSets, the partitions, the grace periods, the ports
that probes, Services and scrape annotations name, the files the flags name against the
volumes, the flags against `cutover ROLE --help` of the binary in $CUTOVER_BIN, the plan
against the StatefulSets, and mutual TLS everywhere, with certificates that hold every name
their pods are reached at. Prints each problem as `FILE: KIND/NAME: what is wrong` and exits 1
if there is one. Needs Python 3.11 (tomllib) and PyYAML.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

if sys.version_info < (3, 11):
    sys.exit("check.py: needs Python 3.11 or newer (tomllib); this is " + sys.version.split()[0])
sys.dont_write_bytecode = True  # no __pycache__ left beside the manifests

import yaml  # noqa: E402

from cluster_check import check_cluster  # noqa: E402
from manifests import (  # noqa: E402
    DAEMONS, LISTEN_FLAGS, OPS_FLAG, TLS_FLAGS, Manifests, describe_ports, pod_containers,
    port_number, split_address, writable)
from plan_check import check_plan  # noqa: E402
from tls_check import check_tls  # noqa: E402

# The daemons stop within this grace after SIGTERM; the kubelet must wait longer.
DAEMON_GRACE_SECONDS = 10
# Files a daemon reads, and folders or files it writes (so never on the read-only root).
READ_FLAGS = ("cluster", "token-file", *TLS_FLAGS)
WRITE_FLAGS = ("data-dir", "journal", "state-file")
# The variables a daemon reads as some of those flags, also read by `cutover upgrade` run in
# the orchestrator's pod.
READ_VARIABLES = {"CUTOVER_TOKEN_FILE": "token-file", **{v: f for f, v in TLS_FLAGS.items()}}


class Checker(Manifests):
    """The checks of one folder of manifests."""

    def run(self, cutover_bin):
        self.load()
        self.check_kustomization()
        self.check_namespaces()
        containers = list(self.containers())
        daemons = [c for c in containers if c.role in DAEMONS]
        for doc, template in self.workloads():
            self.check_selector(doc, template)
        for c in containers:
            self.check_probes(c)
        for c in daemons:
            self.check_grace(c)
            self.check_listeners(c)
            self.check_files(c)
        self.check_scrape(containers)
        self.check_services()
        self.check_pdbs()
        nodes = [c for c in daemons if c.role == "node" and c.flag("cluster")]
        for c in nodes:
            check_cluster(self, c)
        check_plan(self, daemons)
        check_tls(self, daemons)
        self.check_flags(daemons, cutover_bin)

    def check_kustomization(self):
        path = self.root / "kustomization.yaml"
        if not path.exists():
            self.problem("kustomization.yaml", "is missing")
            return
        listed = (yaml.safe_load(path.read_text()) or {}).get("resources") or []
        for name in listed:
            if not (self.root / name).exists():
                self.problem("kustomization.yaml", f"lists {name}, which does not exist")
        for path in sorted(self.root.glob("*.yaml")):
            if path.name != "kustomization.yaml" and path.name not in listed:
                self.problem(path.name, "is not listed in kustomization.yaml's resources")

    def check_namespaces(self):
        namespaces = {d.name for d in self.of_kind("Namespace")}
        for doc in self.docs:
            if doc.kind != "Namespace" and doc.ns not in namespaces:
                self.problem(doc, f"namespace {doc.ns!r} is not one of {sorted(namespaces)}")

    def check_selector(self, doc, template):
        wanted = ((doc.obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        for key, value in wanted.items():
            if labels.get(key) != value:
                self.problem(doc, f"selector {key}={value} does not match the pod labels {labels}")

    def check_grace(self, c):
        grace = (c.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if grace is None:
            self.problem(c.workload, f"sets no terminationGracePeriodSeconds: set it above "
                         f"the daemons' {DAEMON_GRACE_SECONDS} s grace (say why in a comment)")
        elif grace <= DAEMON_GRACE_SECONDS:
            self.problem(c.workload, f"terminationGracePeriodSeconds {grace} is not above the "
                         f"daemons' {DAEMON_GRACE_SECONDS} s grace: the kubelet would kill "
                         "them before they finish draining")

    def check_probes(self, c):
        declared = c.ports()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.spec.get(kind)
            if not probe:
                continue
            action = next((probe[a] for a in ("httpGet", "tcpSocket", "grpc") if a in probe), {})
            port = action.get("port")
            number = port_number(port, declared)
            if number is None:
                self.problem(c, f"{kind} port {port!r} is not a port the container declares "
                             f"({describe_ports(declared)})")
                continue
            if c.role in DAEMONS:
                ops = c.flag(OPS_FLAG[c.role]) or LISTEN_FLAGS[c.role][OPS_FLAG[c.role]]
                if number != split_address(ops)[1]:
                    self.problem(c, f"{kind} probes port {number}, but /healthz and /readyz "
                                 f"are on --{OPS_FLAG[c.role]} {ops}")

    def check_listeners(self, c):
        bound = {}
        for flag, default in LISTEN_FLAGS[c.role].items():
            address = c.flag(flag) or default
            host, port = split_address(address)
            if port is None:
                self.problem(c, f"--{flag}={address} is not HOST:PORT")
                continue
            bound[port] = (flag, address, host in ("127.0.0.1", "localhost", "::1", "[::1]"))
        for p in c.ports():
            number = p.get("containerPort")
            flag, address, loopback = bound.get(number, (None, None, False))
            if flag is None:
                self.problem(c, f"declares port {number} ({p.get('name')}), which no flag "
                             f"binds (it binds {sorted(bound)})")
            elif loopback:
                self.problem(c, f"declares port {number} ({p.get('name')}), but --{flag} "
                             f"binds {address}: nothing outside the pod reaches it")
        declared = {p.get("containerPort") for p in c.ports()}
        for number, (flag, address, loopback) in bound.items():
            if not loopback and number not in declared:
                self.problem(c, f"--{flag} binds {address}, but port {number} is not declared")

    def check_files(self, c):
        paths = [(f, c.flag(f)) for f in READ_FLAGS + WRITE_FLAGS if c.flag(f)]
        for variable, flag in READ_VARIABLES.items():
            env = c.env(variable)
            if env and env.get("value"):
                paths.append((flag, env["value"]))
        for flag, path in paths:
            found = self.volume_of(c, path)
            if found is None:
                where = "the read-only root filesystem" if flag in WRITE_FLAGS else "no volume"
                self.problem(c, f"--{flag} {path} is on {where}: mount a volume there")
                continue
            mount, volume, rest = found
            if flag in WRITE_FLAGS:
                if mount.get("readOnly") or not writable(volume):
                    self.problem(c, f"--{flag} {path} must be writable, but volume "
                                 f"{mount.get('name')} mounted at {mount.get('mountPath')} is not")
            elif self.file_source(c.workload, volume, rest) is None:  # False: said already
                self.problem(c, f"--{flag} {path}: volume {mount.get('name')} mounted at "
                             f"{mount.get('mountPath')} provides no file {rest!r}")

    def check_scrape(self, containers):
        by_workload = {}
        for c in containers:
            by_workload.setdefault(id(c.workload), []).append(c)
        for group in by_workload.values():
            doc, pod = group[0].workload, group[0].pod
            notes = (pod.get("metadata") or {}).get("annotations") or {}
            if notes.get("prometheus.io/scrape") != "true":
                if any(c.role in DAEMONS for c in group):
                    self.problem(doc, 'has no prometheus.io/scrape: "true" annotation')
                continue
            port, path = notes.get("prometheus.io/port"), notes.get("prometheus.io/path")
            if path != "/metrics":
                self.problem(doc, f"prometheus.io/path is {path!r}; the daemons serve /metrics")
            metrics_ports = {split_address(c.flag(OPS_FLAG[c.role]) or "")[1]
                             for c in group if c.role in DAEMONS}
            declared = {p.get("containerPort") for c in group for p in c.ports()}
            if not (port or "").isdigit() or int(port) not in declared:
                self.problem(doc, f"prometheus.io/port {port!r} is not a declared container "
                             f"port ({sorted(declared)})")
            elif metrics_ports and int(port) not in metrics_ports:
                self.problem(doc, f"prometheus.io/port {port} does not serve /metrics (the "
                             f"daemons' metrics are on {sorted(metrics_ports)})")

    def check_services(self):
        for svc in self.of_kind("Service"):
            spec = svc.obj.get("spec") or {}
            pods = self.selected(svc, spec.get("selector"))
            if not pods:
                self.problem(svc, f"selector {spec.get('selector')} matches no pod template")
                continue
            for p in spec.get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                for doc, template in pods:
                    declared = [q for c in pod_containers(template) for q in c.get("ports") or []]
                    if port_number(target, declared) is None:
                        self.problem(svc, f"port {p.get('name')} targets {target!r}, which "
                                     f"{doc.kind}/{doc.name} does not declare "
                                     f"({describe_ports(declared)})")

    def check_pdbs(self):
        for pdb in self.of_kind("PodDisruptionBudget"):
            selector = ((pdb.obj.get("spec") or {}).get("selector") or {}).get("matchLabels")
            if not self.selected(pdb, selector):
                self.problem(pdb, f"selector {selector} matches no pod template")

    def check_flags(self, daemons, cutover_bin):
        if not cutover_bin:
            self.notes.append(
                "SKIPPED the flag check: CUTOVER_BIN is not set, so no flag or CUTOVER_* "
                "variable the manifests pass was compared with `cutover ROLE --help`. "
                "Set CUTOVER_BIN to a built cutover binary to run it.")
            return
        helps = {}
        # Operators run `cutover upgrade` in the orchestrator's pod (kubectl exec), so its
        # variables may be set there too.
        operated = [c for c in daemons if c.role == "orchestrator" or c.has("orchestrate")]
        for role in sorted({c.role for c in daemons} | ({"upgrade"} if operated else set())):
            try:
                helps[role] = read_help(cutover_bin, role)
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                self.problem(f"CUTOVER_BIN={cutover_bin}", f"`{role} --help` failed: {error}")
        for c in daemons:
            if c.role not in helps:
                continue
            flags, envs = helps[c.role]
            readers = f"`cutover {c.role} --help` does not read"
            if any(c is o for o in operated) and "upgrade" in helps:
                envs = envs | helps["upgrade"][1]
                readers = f"neither `cutover {c.role} --help` nor `cutover upgrade --help` reads"
            for name, _ in c.flags:
                if name not in flags:
                    self.problem(c, f"passes --{name}, which `cutover {c.role} --help` does "
                                 f"not list")
            for e in c.spec.get("env") or []:
                if e.get("name", "").startswith("CUTOVER_") and e["name"] not in envs:
                    self.problem(c, f"sets {e['name']}, which {readers}")


def read_help(cutover_bin, role):
    """The long flags and CUTOVER_* variables `cutover ROLE --help` lists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    out = subprocess.run([cutover_bin, role, "--help"], capture_output=True, text=True,
                         timeout=30, env=env, check=True).stdout
    # Option lines only: "      --data-dir <DATA_DIR>" or "  -h, --help", not descriptions.
    flags = set(re.findall(r"^  (?:-\w, |    )--([a-z0-9][a-z0-9-]*)", out, re.M))
    if not flags:
        raise ValueError(f"no flags in its output:\n{out}")
    return flags, set(re.findall(r"\[env: ([A-Z0-9_]+)=", out))


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent).resolve()
    checker = Checker(root)
    checker.run(os.environ.get("CUTOVER_BIN"))
    for note in checker.notes:
        print(f"\ncheck.py: *** {note} ***\n", file=sys.stderr)
    for problem in checker.problems:
        print(f"check.py: {problem}", file=sys.stderr)
    if checker.problems:
        print(f"check.py: {len(checker.problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"check.py: {len(checker.docs)} resources in {root}: every structural check holds"
          + (" (flag check skipped)" if checker.notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
