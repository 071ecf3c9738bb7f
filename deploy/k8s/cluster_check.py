"""A node StatefulSet against its cluster file: one [[node]] per pod, named as the pod, at the
pod's DNS name and ports; every partition owned exactly once; a headless governing Service."""

import tomllib

from manifests import CLUSTER_DOMAIN, LISTEN_FLAGS, split_address

CLUSTER_FILE_KEYS = {"partitions", "node"}
CLUSTER_NODE_KEYS = {"name", "http", "grpc", "owns"}


def check_cluster(m, c):
    """Node container `c`, which runs with --cluster, against that file."""
    sts = c.workload
    if sts.kind != "StatefulSet":
        m.problem(sts, "runs cluster nodes but is not a StatefulSet: the cluster file "
                  "names each node, which needs stable pod names")
        return
    name_env = c.env("CUTOVER_NAME") or {}
    field_path = ((name_env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    if field_path != "metadata.name" and not c.flag("name"):
        m.problem(c, "does not give the node its pod name: set env CUTOVER_NAME from "
                  "fieldRef metadata.name")
    found = m.volume_of(c, c.flag("cluster"))
    source = found and m.file_source(sts, found[1], found[2])
    if not source:
        return  # check_files said why
    where, text = source
    try:
        cluster = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        m.problem(where, f"cluster file is not TOML: {error}")
        return
    spec = sts.obj.get("spec") or {}
    check_members(m, sts, spec, c, where, cluster)
    check_partitions(m, where, cluster)
    check_headless(m, sts, spec.get("serviceName"))


def check_members(m, sts, spec, c, where, cluster):
    """One [[node]] per pod of `sts`, named as the pod, at its DNS name and ports."""
    for key in set(cluster) - CLUSTER_FILE_KEYS:
        m.problem(where, f"cluster file has an unknown field {key!r}")
    members = cluster.get("node") or []
    replicas = spec.get("replicas", 1)
    if replicas != len(members):
        m.problem(sts, f"replicas is {replicas}, but its cluster file ({where.file}) "
                  f"names {len(members)} nodes")
    pods = [f"{sts.name}-{i}" for i in range(replicas)]
    names = [node.get("name") for node in members]
    for pod in pods:
        if pod not in names:
            m.problem(where, f"cluster file has no [[node]] named {pod!r}, a pod of "
                      f"StatefulSet/{sts.name} (it names {names})")
    ports = {f: split_address(c.flag(f) or LISTEN_FLAGS["node"][f])[1] for f in ("http", "grpc")}
    for member in members:
        name = member.get("name")
        for key in set(member) - CLUSTER_NODE_KEYS:
            m.problem(where, f"node {name!r} has an unknown field {key!r}")
        if names.count(name) > 1:
            m.problem(where, f"node name {name!r} appears {names.count(name)} times")
        if name not in pods:
            m.problem(where, f"node {name!r} is no pod of StatefulSet/{sts.name} "
                      f"(its pods: {pods})")
            continue
        for f in ("http", "grpc"):
            want = f"{name}.{spec.get('serviceName')}.{sts.ns}.{CLUSTER_DOMAIN}:{ports[f]}"
            if member.get(f) != want:
                m.problem(where, f"node {name!r}: {f} = {member.get(f)!r}, but the pod "
                          f"is reached at {want!r}")


def check_headless(m, sts, service_name):
    """The Service that gives the pods of `sts` their DNS names."""
    svc = m.find("Service", service_name, sts.ns)
    if svc is None:
        m.problem(sts, f"serviceName {service_name!r} names no Service")
        return
    spec = svc.obj.get("spec") or {}
    if spec.get("clusterIP") != "None":
        m.problem(svc, "governs StatefulSet/{} but is not headless (clusterIP: None): "
                  "its pods get no DNS names".format(sts.name))
    if spec.get("publishNotReadyAddresses") is not True:
        m.problem(svc, "needs publishNotReadyAddresses: true, so peers resolve each "
                  "other before they are ready")
    if not any(doc is sts for doc, _ in m.selected(svc, spec.get("selector"))):
        m.problem(svc, f"selector does not match the pods of StatefulSet/{sts.name}")


def check_partitions(m, where, cluster):
    """Every partition 0..P-1 owned exactly once."""
    count = cluster.get("partitions")
    if not isinstance(count, int) or not 1 <= count <= 65536:
        m.problem(where, f"cluster file partitions = {count!r}: give a number from 1 to 65536")
        return
    owner = {}
    for member in cluster.get("node") or []:
        name, text = member.get("name"), str(member.get("owns", ""))
        try:
            owns = parse_ranges(text)
        except ValueError as error:
            m.problem(where, f"node {name!r}: owns = {text!r}: {error}")
            continue
        outside = [p for p in owns if p >= count]
        if outside:
            m.problem(where, f"node {name!r} owns {ranges(outside)}, beyond partitions = {count}")
        shared = {}
        for p in owns:
            if p in owner and owner[p] != name:
                shared.setdefault(owner[p], []).append(p)
            owner.setdefault(p, name)
        for first, parts in shared.items():
            m.problem(where, f"partitions {ranges(parts)} are owned by {first!r} and {name!r}")
    gaps = [p for p in range(count) if p not in owner]
    if gaps:
        m.problem(where, f"partitions {ranges(gaps)} have no owner")


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
    """`[0, 1, 2, 9]` as `0-2,9`."""
    numbers, out = sorted(set(numbers)), []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)
