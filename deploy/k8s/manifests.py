"""The manifests as check.py reads them: every resource of a folder, the workloads and their
containers, what each cutover container runs (its role and flags), and which volume, ConfigMap
or Secret a file inside a container comes from. Problems found on the way are collected, not
raised, so one run names them all."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
# Every daemon's TLS flags, and the variable it reads for each when the flag is not given.
TLS_FLAGS = {"tls-cert": "CUTOVER_TLS_CERT", "tls-key": "CUTOVER_TLS_KEY",
             "tls-client-ca": "CUTOVER_TLS_CLIENT_CA", "tls-ca": "CUTOVER_TLS_CA"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


@dataclass
class Doc:
    """One resource, and the file (relative to the folder) it came from."""

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
        """In a subfolder (examples/, secrets/): not part of what the plan describes."""
        return "/" in self.file

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

    def has(self, name):
        """Whether the flag is passed (a switch such as --listen-tls has no value)."""
        return any(n == name for n, _ in self.flags)

    def setting(self, name, variable):
        """A flag's value, or else that of the CUTOVER_* variable the daemon reads for it."""
        value = self.flag(name)
        return value if value is not None else (self.env(variable) or {}).get("value")

    def tls_on(self, port_flag):
        """Whether the port --port_flag binds speaks TLS: every port of a daemon given a
        certificate, but a proxy's client port only with --listen-tls."""
        if not self.setting("tls-cert", TLS_FLAGS["tls-cert"]):
            return False
        return not (self.role == "proxy" and port_flag == "listen" and not self.has("listen-tls"))

    def env(self, name):
        return next((e for e in self.spec.get("env") or [] if e.get("name") == name), None)

    def ports(self):
        return self.spec.get("ports") or []

    def __str__(self):
        return f"{self.workload} container {self.spec.get('name')}"


class Manifests:
    """Every resource under `root` (kustomization.yaml aside), and the problems found."""

    def __init__(self, root: Path):
        self.root = root
        self.problems = []
        self.docs = []
        self.notes = []

    def problem(self, where, message):
        line = f"{where}: {message}"
        if line not in self.problems:  # two containers mounting one missing Secret: say it once
            self.problems.append(line)

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
        """Fills in the role and flags of a container of the cutover image."""
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

    def selected(self, doc, selector):
        """The workloads in `doc`'s namespace whose pods `selector` (labels) matches."""
        if not selector:
            return []
        found = []
        for workload, template in self.workloads():
            labels = (template.get("metadata") or {}).get("labels") or {}
            if workload.ns == doc.ns and all(labels.get(k) == v for k, v in selector.items()):
                found.append((workload, template))
        return found

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
        if mount.get("subPath"):  # the volume's file or folder mounted at mountPath
            rest = "/".join(p for p in (mount["subPath"], rest) if p)
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


def split_address(address):
    """`0.0.0.0:7070` as ("0.0.0.0", 7070); the port is None when there is none."""
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


def writable(volume):
    """Whether a volume can be written (ConfigMaps, Secrets and projections cannot)."""
    return "emptyDir" in volume or "persistentVolumeClaim" in volume or "ephemeral" in volume
