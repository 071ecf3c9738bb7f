#!/usr/bin/env python3
"""Checks of the cutover Kubernetes manifests that a schema cannot make.

    python3 deploy/k8s/check.py [DIR]          # DIR defaults to this file's folder

Reads every *.yaml under DIR (kustomization.yaml aside) and checks that the pieces fit:
the cluster files against their StatefulSets, the partitions, the grace periods, the ports
that probes, Services and scrape annotations name, the files the flags name against the
volumes, the flags against `cutover ROLE --help` of the binary in $CUTOVER_BIN, and the plan
against the StatefulSets. Prints each problem as `FILE: KIND/NAME: what is wrong` and exits 1
if there is one. Needs Python 3.11 (tomllib) and PyYAML.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info < (3, 11):
    sys.exit("check.py: needs Python 3.11 or newer (tomllib); this is " + sys.version.split()[0])

import tomllib  # noqa: E402

import yaml  # noqa: E402

# The daemons stop within this grace after SIGTERM; the kubelet must wait longer.
DAEMON_GRACE_SECONDS = 10
CLUSTER_DOMAIN = "svc.cluster.local"
DAEMONS = ("node", "proxy", "orchestrator")
# The flags each daemon binds, and where it binds without them (loopback: unreachable).
LISTEN_FLAGS = {
    "node": {"http": "127.0.0.1:7070", "grpc": "127.0.0.1:7071"},
    "proxy": {"listen": "127.0.0.1:8080", "admin": "127.0.0.1:8081"},
    "orchestrator": {"grpc": "127.0.0.1:7171", "http": "127.0.0.1:7172"},
}
# The flag whose port serves /metrics, /healthz and /readyz.
OPS_FLAG = {"node": "http", "proxy": "admin", "orchestrator": "http"}
# Files a daemon reads, and folders or files it writes (so never on the read-only root).
READ_FLAGS = ("cluster", "token-file")
WRITE_FLAGS = ("data-dir", "journal", "state-file")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
CLUSTER_FILE_KEYS = {"partitions", "node"}
CLUSTER_NODE_KEYS = {"name", "http", "grpc", "owns"}


@dataclass
class Doc:
    file: str
    obj: dict

    @property
    def kind(self):
        return self.obj.get("kind", "?")

    @property
    def name(self):
        return (self.obj.get("metadata") or {}).get("name", "?")

    @property
    def ns(self):
        return (self.obj.get("metadata") or {}).get("namespace")

    @property
    def example(self):
        return "/" in self.file  # in a subfolder: examples/, secrets/

    def __str__(self):
        return f"{self.file}: {self.kind}/{self.name}"


@dataclass
class Container:
    """A container of a workload, with what check.py derives from it."""

    workload: Doc
    spec: dict
    pod: dict
    role: str | None = None
    flags: list = field(default_factory=list)  # [(name, value or None)]

    def flag(self, name):
        return next((v for n, v in self.flags if n == name), None)

    def env(self, name):
        return next((e for e in self.spec.get("env") or [] if e.get("name") == name), None)

    def ports(self):
        return self.spec.get("ports") or []

    def __str__(self):
        return f"{self.workload} container {self.spec.get('name')}"


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.problems = []
        self.docs = []
        self.notes = []

    def problem(self, where, message):
        line = f"{where}: {message}"
        if line not in self.problems:  # two containers mounting one missing Secret: say it once
            self.problems.append(line)

    # Loading -------------------------------------------------------------------------------

    def load(self):
        for path in sorted(self.root.rglob("*.yaml")):
            rel = path.relative_to(self.root).as_posix()
            if path.name == "kustomization.yaml":
                continue
            try:
                for obj in yaml.safe_load_all(path.read_text()):
                    if obj:
                        self.docs.append(Doc(rel, obj))
            except yaml.YAMLError as error:
                self.problem(rel, f"is not YAML: {error}")

    def of_kind(self, kind, ns=None):
        return [d for d in self.docs if d.kind == kind and (ns is None or d.ns == ns)]

    def find(self, kind, name, ns):
        return next((d for d in self.of_kind(kind, ns) if d.name == name), None)

    def workloads(self):
        for doc in self.docs:
            if doc.kind in WORKLOAD_KINDS:
                yield doc, (doc.obj.get("spec") or {}).get("template") or {}

    def containers(self):
        for doc, template in self.workloads():
            pod = template.get("spec") or {}
            for spec in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                yield self.describe(Container(doc, spec, template))

    def describe(self, c):
        image = c.spec.get("image", "")
        if not re.search(r"(^|/)cutover(:|@|$)", image):
            return c
        words = list(c.spec.get("command") or []) + list(c.spec.get("args") or [])
        if c.spec.get("command") and words[0].endswith("cutover"):
            words = words[1:]
        if words and not words[0].startswith("-"):
            c.role = words[0]
        rest = words[1:]
        for i, word in enumerate(rest):
            if not word.startswith("--"):
                continue
            name, eq, value = word[2:].partition("=")
            if not eq:
                following = rest[i + 1] if i + 1 < len(rest) else None
                value = following if following and not following.startswith("--") else None
            c.flags.append((name, value))
        return c

    # The checks ----------------------------------------------------------------------------

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
            self.check_cluster(c)
        self.check_plan(daemons)
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
        env = c.env("CUTOVER_TOKEN_FILE")
        if env and env.get("value"):
            paths.append(("token-file", env["value"]))
        for flag, path in paths:
            found = self.volume_of(c, path)
            if found is None:
                where = "the read-only root filesystem" if flag in WRITE_FLAGS else "no volume"
                self.problem(c, f"--{flag} {path} is on {where}: mount a volume there")
                continue
            mount, volume, rest = found
            if flag in WRITE_FLAGS:
                if mount.get("readOnly") or not writable(volume, c.workload):
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

    def selected(self, doc, selector):
        if not selector:
            return []
        found = []
        for workload, template in self.workloads():
            labels = (template.get("metadata") or {}).get("labels") or {}
            if workload.ns == doc.ns and all(labels.get(k) == v for k, v in selector.items()):
                found.append((workload, template))
        return found

    # Cluster files -------------------------------------------------------------------------

    def check_cluster(self, c):
        sts = c.workload
        if sts.kind != "StatefulSet":
            self.problem(sts, "runs cluster nodes but is not a StatefulSet: the cluster file "
                         "names each node, which needs stable pod names")
            return
        name_env = c.env("CUTOVER_NAME") or {}
        field_path = ((name_env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field_path != "metadata.name" and not c.flag("name"):
            self.problem(c, "does not give the node its pod name: set env CUTOVER_NAME from "
                         "fieldRef metadata.name")
        found = self.volume_of(c, c.flag("cluster"))
        source = found and self.file_source(sts, found[1], found[2])
        if not source:
            return  # check_files said why
        where, text = source
        try:
            cluster = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            self.problem(where, f"cluster file is not TOML: {error}")
            return
        spec = sts.obj.get("spec") or {}
        self.check_members(sts, spec, c, where, cluster)
        check_partitions(self, where, cluster)
        self.check_headless(sts, spec.get("serviceName"))

    def check_members(self, sts, spec, c, where, cluster):
        for key in set(cluster) - CLUSTER_FILE_KEYS:
            self.problem(where, f"cluster file has an unknown field {key!r}")
        members = cluster.get("node") or []
        replicas = spec.get("replicas", 1)
        if replicas != len(members):
            self.problem(sts, f"replicas is {replicas}, but its cluster file ({where.file}) "
                         f"names {len(members)} nodes")
        pods = [f"{sts.name}-{i}" for i in range(replicas)]
        names = [m.get("name") for m in members]
        for pod in pods:
            if pod not in names:
                self.problem(where, f"cluster file has no [[node]] named {pod!r}, a pod of "
                             f"StatefulSet/{sts.name} (it names {names})")
        ports = {f: split_address(c.flag(f) or LISTEN_FLAGS["node"][f])[1] for f in ("http", "grpc")}
        for member in members:
            name = member.get("name")
            for key in set(member) - CLUSTER_NODE_KEYS:
                self.problem(where, f"node {name!r} has an unknown field {key!r}")
            if names.count(name) > 1:
                self.problem(where, f"node name {name!r} appears {names.count(name)} times")
            if name not in pods:
                self.problem(where, f"node {name!r} is no pod of StatefulSet/{sts.name} "
                             f"(its pods: {pods})")
                continue
            for f in ("http", "grpc"):
                want = f"{name}.{spec.get('serviceName')}.{sts.ns}.{CLUSTER_DOMAIN}:{ports[f]}"
                if member.get(f) != want:
                    self.problem(where, f"node {name!r}: {f} = {member.get(f)!r}, but the pod "
                                 f"is reached at {want!r}")

    def check_headless(self, sts, service_name):
        svc = self.find("Service", service_name, sts.ns)
        if svc is None:
            self.problem(sts, f"serviceName {service_name!r} names no Service")
            return
        spec = svc.obj.get("spec") or {}
        if spec.get("clusterIP") != "None":
            self.problem(svc, "governs StatefulSet/{} but is not headless (clusterIP: None): "
                         "its pods get no DNS names".format(sts.name))
        if spec.get("publishNotReadyAddresses") is not True:
            self.problem(svc, "needs publishNotReadyAddresses: true, so peers resolve each "
                         "other before they are ready")
        if (sts, (sts.obj.get("spec") or {}).get("template")) not in self.selected(
                svc, spec.get("selector")):
            self.problem(svc, f"selector does not match the pods of StatefulSet/{sts.name}")

    # The plan ------------------------------------------------------------------------------

    def check_plan(self, daemons):
        plans = [(d, k) for d in self.of_kind("ConfigMap") for k in (d.obj.get("data") or {})
                 if k == "plan.toml"]
        if not plans:
            self.problem(self.root.name, "no ConfigMap holds a plan.toml")
        for doc, key in plans:
            try:
                plan = tomllib.loads(doc.obj["data"][key])
            except tomllib.TOMLDecodeError as error:
                self.problem(doc, f"plan.toml is not TOML: {error}")
                continue
            PlanCheck(self, doc, plan, daemons).run()

    # Flags against the binary --------------------------------------------------------------

    def check_flags(self, daemons, cutover_bin):
        if not cutover_bin:
            self.notes.append(
                "SKIPPED the flag check: CUTOVER_BIN is not set, so no flag or CUTOVER_* "
                "variable the manifests pass was compared with `cutover ROLE --help`. "
                "Set CUTOVER_BIN to a built cutover binary to run it.")
            return
        helps = {}
        for role in sorted({c.role for c in daemons}):
            try:
                helps[role] = read_help(cutover_bin, role)
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                self.problem(f"CUTOVER_BIN={cutover_bin}", f"`{role} --help` failed: {error}")
        for c in daemons:
            if c.role not in helps:
                continue
            flags, envs = helps[c.role]
            for name, _ in c.flags:
                if name not in flags:
                    self.problem(c, f"passes --{name}, which `cutover {c.role} --help` does "
                                 f"not list")
            for e in c.spec.get("env") or []:
                if e.get("name", "").startswith("CUTOVER_") and e["name"] not in envs:
                    self.problem(c, f"sets {e['name']}, which `cutover {c.role} --help` does "
                                 f"not read")

    # Volumes -------------------------------------------------------------------------------

    def volume_of(self, c, path):
        """The mount holding `path` (the deepest), its volume, and the path inside it."""
        if not path:
            return None
        best = None
        for mount in c.spec.get("volumeMounts") or []:
            base = mount.get("mountPath", "").rstrip("/")
            if path == base or path.startswith(base + "/"):
                if best is None or len(base) > len(best[0].get("mountPath", "").rstrip("/")):
                    best = (mount, path[len(base):].lstrip("/"))
        if best is None:
            return None
        mount, rest = best
        volumes = (c.pod.get("spec") or {}).get("volumes") or []
        claims = ((c.workload.obj.get("spec") or {}).get("volumeClaimTemplates")) or []
        volume = next((v for v in volumes if v.get("name") == mount.get("name")), None)
        if volume is None and any((t.get("metadata") or {}).get("name") == mount.get("name")
                                  for t in claims):
            volume = {"name": mount.get("name"), "persistentVolumeClaim": {}}
        if volume is None:
            self.problem(c, f"mounts volume {mount.get('name')!r}, which the pod does not have")
            return None
        return mount, volume, rest

    def file_source(self, workload, volume, rest):
        """(doc, text) of the ConfigMap or Secret key a file of `volume` comes from; None when
        the volume has no such file, False when a problem was reported already."""
        sources = [volume] if "projected" not in volume else volume["projected"].get("sources", [])
        for source in sources:
            for kind, ref in (("ConfigMap", source.get("configMap")),
                              ("Secret", source.get("secret"))):
                if ref is None:
                    continue
                name = ref.get("name") or ref.get("secretName")
                items = ref.get("items")
                key = next((i["key"] for i in items if i.get("path") == rest), None) if items \
                    else rest
                if key is None:
                    continue
                doc = self.find(kind, name, workload.ns)
                if doc is None:
                    self.problem(workload, f"volume {volume.get('name')} uses {kind} {name!r}, "
                                 "which no manifest defines")
                    return False
                data = {**(doc.obj.get("data") or {}), **(doc.obj.get("stringData") or {})}
                if key not in data:
                    self.problem(doc, f"has no key {key!r}, which {workload} mounts")
                    return False
                return doc, data[key]
        return None

    def secret_of(self, c, path):
        """The Secret a file comes from; None when none, False when a problem was reported."""
        found = self.volume_of(c, path)
        if not found:
            return None
        source = self.file_source(c.workload, found[1], found[2])
        if source is False:
            return False
        return source[0].name if source and source[0].kind == "Secret" else None


class PlanCheck:
    """The plan against the StatefulSets and proxies it must name."""

    def __init__(self, checker, doc, plan, daemons):
        self.k, self.doc, self.plan, self.daemons = checker, doc, plan, daemons
        self.node_sets = {}
        for c in daemons:
            if c.role == "node" and c.workload.kind == "StatefulSet" and not c.workload.example:
                self.node_sets[c.workload.name] = c

    def run(self):
        blue = self.side("blue", "sources", "grpc")
        green = self.side("green", "sinks", "grpc")
        if blue and blue == green:
            self.k.problem(self.doc, f"blue and green are both StatefulSet/{blue}")
        self.proxies(blue, green)

    def side(self, color, key, port_flag):
        urls = (self.plan.get(color) or {}).get(key) or []
        where = f"{self.doc}: [{color}] {key}"
        named = self.pods_of(urls, where, port_flag)
        if len(named) != 1:
            self.k.problem(where, "must name the pods of one node StatefulSet, names "
                           f"{sorted(named) or 'none'}")
            return None
        (name,) = named
        self.whole(where, name, named[name])
        self.token(color, (self.plan.get(color) or {}).get("token_file"), [self.node_sets[name]])
        return name

    def pods_of(self, urls, where, port_flag):
        """The ordinals `urls` name of each node StatefulSet, each URL checked."""
        named = {}
        for url in urls:
            m = re.fullmatch(r"http://([a-z0-9-]+)-(\d+)\.([a-z0-9-]+)\.([a-z0-9-]+)\."
                             + re.escape(CLUSTER_DOMAIN) + r":(\d+)", url)
            c = m and self.node_sets.get(m[1])
            if c is None:
                self.k.problem(where, f"{url} is no pod of a node StatefulSet "
                               f"(http://<sts>-<i>.<service>.<namespace>.{CLUSTER_DOMAIN}:PORT)")
                continue
            spec = c.workload.obj.get("spec") or {}
            port = split_address(c.flag(port_flag) or LISTEN_FLAGS["node"][port_flag])[1]
            if (m[3], m[4], int(m[5])) != (spec.get("serviceName"), c.workload.ns, port):
                self.k.problem(where, f"{url}: StatefulSet/{m[1]} is reached at "
                               f"{m[1]}-{m[2]}.{spec.get('serviceName')}.{c.workload.ns}."
                               f"{CLUSTER_DOMAIN}:{port} (--{port_flag})")
            named.setdefault(m[1], set()).add(int(m[2]))
        return named

    def whole(self, where, name, ordinals):
        """`ordinals` are every pod of StatefulSet `name`, and no more."""
        replicas = (self.node_sets[name].workload.obj.get("spec") or {}).get("replicas", 1)
        missing = sorted(set(range(replicas)) - ordinals)
        extra = sorted(ordinals - set(range(replicas)))
        if missing:
            self.k.problem(where, f"leaves out {[f'{name}-{i}' for i in missing]} of "
                           f"StatefulSet/{name} ({replicas} replicas)")
        if extra:
            self.k.problem(where, f"names {[f'{name}-{i}' for i in extra]}, beyond "
                           f"StatefulSet/{name}'s {replicas} replicas")

    def proxies(self, blue, green):
        proxies = [c for c in self.daemons if c.role == "proxy" and not c.workload.example]
        where = f"{self.doc}: [proxies] control"
        control = set((self.plan.get("proxies") or {}).get("control") or [])
        wanted = set()
        for c in proxies:
            sts = c.workload
            if sts.kind != "StatefulSet":
                self.k.problem(sts, "runs a proxy the plan must name, but a "
                               f"{sts.kind}'s pods have no stable names: use a StatefulSet")
                continue
            spec = sts.obj.get("spec") or {}
            port = split_address(c.flag("admin") or LISTEN_FLAGS["proxy"]["admin"])[1]
            for i in range(spec.get("replicas", 1)):
                url = (f"http://{sts.name}-{i}.{spec.get('serviceName')}.{sts.ns}."
                       f"{CLUSTER_DOMAIN}:{port}")
                wanted.add(url)
                if url not in control:
                    self.k.problem(where, f"leaves out {url}: that proxy would not be paused "
                                   "or switched")
            self.backends(c, "blue", blue)
            self.backends(c, "green", green)
        for url in sorted(control - wanted):
            self.k.problem(where, f"{url} is no proxy pod's admin port")
        if proxies:
            self.token("proxies", (self.plan.get("proxies") or {}).get("token_file"), proxies)

    def backends(self, c, color, sts_name):
        if sts_name is None:
            return
        urls = (c.flag(color) or "").split(",")
        where = f"{c}: --{color}"
        named = self.pods_of([u for u in urls if u], where, "http")
        if set(named) != {sts_name}:
            self.k.problem(where, f"names {sorted(named) or 'no node'}, but the plan's "
                           f"{color} is StatefulSet/{sts_name}")
        else:
            self.whole(where, sts_name, named[sts_name])

    def token(self, section, path, checkers):
        """The plan's token file for `section` holds the Secret those daemons check."""
        wants = {self.k.secret_of(c, c.flag("token-file")) for c in checkers if c.flag("token-file")}
        wants -= {None, False}
        if not path:
            if wants:
                self.k.problem(self.doc, f"[{section}] has no token_file, but those daemons "
                               f"require Secret {sorted(wants)}")
            return
        users = [c for c in self.daemons if c.role == "orchestrator"
                 or (c.role == "node" and c.flag("orchestrate"))]
        for c in users:
            secret = self.k.secret_of(c, path)
            if secret is False:
                continue
            if secret is None:
                self.k.problem(c, f"does not mount the plan's [{section}] token_file {path}")
            elif wants and secret not in wants:
                self.k.problem(c, f"the plan's [{section}] token_file {path} comes from Secret "
                               f"{secret}, but those daemons check {sorted(wants)}")


def check_partitions(k, where, cluster):
    """Every partition 0..P-1 owned exactly once."""
    count = cluster.get("partitions")
    if not isinstance(count, int) or not 1 <= count <= 65536:
        k.problem(where, f"cluster file partitions = {count!r}: give a number from 1 to 65536")
        return
    owner = {}
    for member in cluster.get("node") or []:
        name, text = member.get("name"), str(member.get("owns", ""))
        try:
            owns = parse_ranges(text)
        except ValueError as error:
            k.problem(where, f"node {name!r}: owns = {text!r}: {error}")
            continue
        outside = [p for p in owns if p >= count]
        if outside:
            k.problem(where, f"node {name!r} owns {ranges(outside)}, beyond partitions = {count}")
        shared = {}
        for p in owns:
            if p in owner and owner[p] != name:
                shared.setdefault(owner[p], []).append(p)
            owner.setdefault(p, name)
        for first, parts in shared.items():
            k.problem(where, f"partitions {ranges(parts)} are owned by {first!r} and {name!r}")
    gaps = [p for p in range(count) if p not in owner]
    if gaps:
        k.problem(where, f"partitions {ranges(gaps)} have no owner")


def parse_ranges(text):
    """`0-3,9` as the node reads it."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("an empty item")
        first, dash, last = item.partition("-")
        if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise ValueError(f"{item!r} is not a number or a range")
        a, b = int(first), int(last) if dash else int(first)
        if a > b:
            raise ValueError(f"{item!r} runs backwards")
        out.extend(range(a, b + 1))
    return out


def ranges(numbers):
    numbers, out = sorted(set(numbers)), []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def split_address(address):
    host, _, port = (address or "").rpartition(":")
    return host, int(port) if port.isdigit() else None


def port_number(port, declared):
    """The number a port reference (a name or a number) stands for in `declared`, or None."""
    for p in declared:
        if port in (p.get("name"), p.get("containerPort")):
            return p.get("containerPort")
    return None


def describe_ports(declared):
    return ", ".join(f"{p.get('name')}={p.get('containerPort')}" for p in declared) or "none"


def pod_containers(template):
    spec = template.get("spec") or {}
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def writable(volume, workload):
    return "emptyDir" in volume or "persistentVolumeClaim" in volume or "ephemeral" in volume


def read_help(cutover_bin, role):
    """The long flags and CUTOVER_* variables `cutover ROLE --help` lists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    out = subprocess.run([cutover_bin, role, "--help"], capture_output=True, text=True,
                         timeout=30, env=env, check=True).stdout
    flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", out, re.M))
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
