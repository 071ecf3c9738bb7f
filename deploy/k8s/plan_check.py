"""The plan against the manifests: its sources and sinks are every pod of one node StatefulSet
each, its proxies every proxy pod, its token files the Secrets those daemons check, each
endpoint https:// where the daemon serves TLS and wherever a token goes; and the proxies'
--blue and --green are the plan's colours."""

import ipaddress
import re
import tomllib
from urllib.parse import urlsplit

from manifests import CLUSTER_DOMAIN, LISTEN_FLAGS, split_address


def check_plan(m, daemons):
    """Every ConfigMap key `plan.toml`, against the daemons of the manifests."""
    plans = [(d, k) for d in m.of_kind("ConfigMap") for k in (d.obj.get("data") or {})
             if k == "plan.toml"]
    if not plans:
        m.problem(m.root.name, "no ConfigMap holds a plan.toml")
    for doc, key in plans:
        try:
            plan = tomllib.loads(doc.obj["data"][key])
        except tomllib.TOMLDecodeError as error:
            m.problem(doc, f"plan.toml is not TOML: {error}")
            continue
        PlanCheck(m, doc, plan, daemons).run()


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
        self.clear_text(color, key, urls)
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
            m = re.fullmatch(r"(https?)://([a-z0-9-]+)-(\d+)\.([a-z0-9-]+)\.([a-z0-9-]+)\."
                             + re.escape(CLUSTER_DOMAIN) + r":(\d+)", url)
            c = m and self.node_sets.get(m[2])
            if c is None:
                self.k.problem(where, f"{url} is no pod of a node StatefulSet (https://"
                               f"<sts>-<i>.<service>.<namespace>.{CLUSTER_DOMAIN}:PORT)")
                continue
            spec = c.workload.obj.get("spec") or {}
            port = split_address(c.flag(port_flag) or LISTEN_FLAGS["node"][port_flag])[1]
            if (m[4], m[5], int(m[6])) != (spec.get("serviceName"), c.workload.ns, port):
                self.k.problem(where, f"{url}: StatefulSet/{m[2]} is reached at "
                               f"{m[2]}-{m[3]}.{spec.get('serviceName')}.{c.workload.ns}."
                               f"{CLUSTER_DOMAIN}:{port} (--{port_flag})")
            self.scheme(where, url, c, port_flag)
            named.setdefault(m[2], set()).add(int(m[3]))
        return named

    def scheme(self, where, url, c, port_flag):
        """`url` speaks what the port of daemon `c` serves: TLS (https://) or plain HTTP."""
        tls = c.tls_on(port_flag)
        if url.startswith("https://" if not tls else "http://"):
            self.k.problem(where, f"{url}: {c.workload.kind}/{c.workload.name} serves "
                           f"{'TLS' if tls else 'plain HTTP'} on --{port_flag}: write "
                           f"{'https' if tls else 'http'}://")

    def clear_text(self, section, key, urls):
        """The orchestrator refuses to send a token in clear text beyond loopback."""
        if not (self.plan.get(section) or {}).get("token_file"):
            return
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme == "http" and not loopback(parts.hostname or ""):
                self.k.problem(f"{self.doc}: [{section}] {key}", f"{url} is http://, but "
                               f"[{section}] has a token_file, which `cutover upgrade start` "
                               "refuses to send in clear text beyond loopback: serve TLS "
                               "there and write https://")

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
        control = (self.plan.get("proxies") or {}).get("control") or []
        given = {url.partition("://")[2]: url for url in control}  # by address, any scheme
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
                address = (f"{sts.name}-{i}.{spec.get('serviceName')}.{sts.ns}."
                           f"{CLUSTER_DOMAIN}:{port}")
                wanted.add(address)
                if address in given:
                    self.scheme(where, given[address], c, "admin")
                else:
                    scheme = "https" if c.tls_on("admin") else "http"
                    self.k.problem(where, f"leaves out {scheme}://{address}: that proxy would "
                                   "not be paused or switched")
            self.backends(c, "blue", blue)
            self.backends(c, "green", green)
        for address in sorted(set(given) - wanted):
            self.k.problem(where, f"{given[address]} is no proxy pod's admin port")
        self.clear_text("proxies", "control", control)
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
        wants = {self.k.secret_of(c, c.flag("token-file")) for c in checkers}
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


def loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
