"""The plan against the manifests: its sources and sinks are every pod of one node StatefulSet
each, its proxies every proxy pod, its token files the Secrets those daemons check; and the
proxies' --blue and --green are the plan's colours."""

import re
import tomllib

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
