"""Mutual TLS in the manifests: every daemon serves it and verifies whom it calls, from the
files of a Secret mounted whole (a subPath mount never sees a renewed certificate); its probes
and its scrape ask over HTTPS; and each certificate (the placeholders of secrets/, the
cert-manager Certificates of examples/) holds every name its pods are reached at, and was
signed by the CA beside it, the same CA for all."""

import base64
import ipaddress
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from manifests import CLUSTER_DOMAIN, LISTEN_FLAGS, OPS_FLAG, TLS_FLAGS, port_number, \
    split_address

WHY = {
    "tls-cert": "its certificate, served on its ports and presented to the daemons it calls",
    "tls-key": "the key of --tls-cert",
    "tls-client-ca": "the CA its clients' certificates must be signed by: mutual TLS",
    "tls-ca": "the CA to verify the daemons it calls at https://",
}
# A placeholder certificate this close to its end fails here, before it fails a cluster.
EXPIRY_MARGIN = timedelta(days=30)
# validate.sh has no schema for cert-manager's kinds: their fields as cert-manager.io/v1 has
# them, checked here.
CERT_MANAGER_FIELDS = {
    "Certificate": {
        "additionalOutputFormats", "commonName", "dnsNames", "duration", "emailAddresses",
        "encodeUsagesInRequest", "ipAddresses", "isCA", "issuerRef", "keystores",
        "literalSubject", "nameConstraints", "otherNames", "privateKey", "renewBefore",
        "renewBeforePercentage", "revisionHistoryLimit", "secretName", "secretTemplate",
        "signatureAlgorithm", "subject", "uris", "usages"},
    "Issuer": {"acme", "ca", "selfSigned", "vault", "venafi"},
    "ClusterIssuer": {"acme", "ca", "selfSigned", "vault", "venafi"},
}
CERTIFICATE_PARTS = {"privateKey": {"algorithm", "encoding", "rotationPolicy", "size"},
                     "issuerRef": {"name", "kind", "group"}}
USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc"}
SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17, subjectAltName


def check_tls(m, daemons):
    for c in daemons:
        check_flags(m, c)
        check_probes(m, c)
        check_scrape(m, c)
    certificates = check_cert_manager(m)
    check_certificates(m, daemons, certificates)


def tls_file(c, flag):
    return c.setting(flag, TLS_FLAGS[flag])


def check_flags(m, c):
    for flag in TLS_FLAGS:
        path = tls_file(c, flag)
        if not path:
            m.problem(c, f"passes no --{flag} ({WHY[flag]}): every daemon here speaks mutual "
                      "TLS, so that no token crosses the pod network in clear text")
            continue
        found = m.volume_of(c, path)
        if found and found[0].get("subPath"):
            m.problem(c, f"--{flag} {path} is mounted by subPath, which the kubelet never "
                      "updates: a renewed certificate would not reach the daemon; mount the "
                      "Secret's volume whole")
    if c.has("insecure-token") or c.env("CUTOVER_INSECURE_TOKEN"):
        m.problem(c, "passes --insecure-token, which lets a bearer token cross the pod network "
                  "in clear text (a lab only)")


def ports_of(c):
    """{port number: the flag that binds it}."""
    return {split_address(c.flag(f) or default)[1]: f
            for f, default in LISTEN_FLAGS[c.role].items()}


def check_probes(m, c):
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        action = (c.spec.get(kind) or {}).get("httpGet")
        flag = action and ports_of(c).get(port_number(action.get("port"), c.ports()))
        if not flag:
            continue  # not an HTTP probe, or check.py said what is wrong with its port
        scheme = action.get("scheme", "HTTP")
        if c.tls_on(flag) and scheme != "HTTPS":
            m.problem(c, f"{kind} asks over {scheme}, but --{flag} serves TLS: set scheme: "
                      "HTTPS (the kubelet does not verify the certificate, and /healthz and "
                      "/readyz ask for no client certificate)")
        elif not c.tls_on(flag) and scheme == "HTTPS":
            m.problem(c, f"{kind} asks over HTTPS, but --{flag} serves plain HTTP")


def check_scrape(m, c):
    notes = (c.pod.get("metadata") or {}).get("annotations") or {}
    flag = OPS_FLAG[c.role]
    port = split_address(c.flag(flag) or LISTEN_FLAGS[c.role][flag])[1]
    if (notes.get("prometheus.io/scrape"), notes.get("prometheus.io/port")) != ("true", str(port)):
        return  # check.py said so if it should
    scheme, want = notes.get("prometheus.io/scheme"), "https" if c.tls_on(flag) else "http"
    if (scheme or "http") != want:
        m.problem(c.workload, f"prometheus.io/scheme is {scheme or 'unset (http)'}, but port "
                  f"{port} serves /metrics over {'TLS' if want == 'https' else 'plain HTTP'}: "
                  f"set it to {want}")


def check_cert_manager(m):
    """cert-manager's resources; their Certificates by (namespace, Secret)."""
    by_secret = {}
    for doc in m.docs:
        fields = CERT_MANAGER_FIELDS.get(doc.kind)
        if doc.obj.get("apiVersion") != "cert-manager.io/v1" or fields is None:
            continue  # validate.sh refuses any other kind or version of cert-manager's
        spec = doc.obj.get("spec") or {}
        for key in sorted(set(doc.obj) - {"apiVersion", "kind", "metadata", "spec"}):
            m.problem(doc, f"has an unknown field {key!r}")
        for key in sorted(set(spec) - fields):
            m.problem(doc, f"spec has an unknown field {key!r}")
        if doc.kind != "Certificate":
            continue
        for part, known in CERTIFICATE_PARTS.items():
            for key in sorted(set(spec.get(part) or {}) - known):
                m.problem(doc, f"spec.{part} has an unknown field {key!r}")
        for usage in spec.get("usages") or []:
            if usage not in USAGES:
                m.problem(doc, f"usage {usage!r} is not one of cert-manager's")
        ref = spec.get("issuerRef") or {}
        if ref.get("kind", "Issuer") == "Issuer" and m.find("Issuer", ref.get("name"),
                                                             doc.ns) is None:
            m.problem(doc, f"issuerRef names Issuer {ref.get('name')!r}, which no manifest "
                      "defines")
        by_secret.setdefault((doc.ns, spec.get("secretName")), []).append(doc)
    return by_secret


def names_of(m, c):
    """Every name daemon `c` is reached at: its pods under their headless Service, the other
    Services in front of a port that speaks TLS, the address `cutover upgrade` is given."""
    doc, spec = c.workload, c.workload.obj.get("spec") or {}
    tls_ports = {port for port, flag in ports_of(c).items() if c.tls_on(flag)}
    names = set()
    for svc in m.of_kind("Service", doc.ns):
        svc_spec = svc.obj.get("spec") or {}
        if not any(d is doc for d, _ in m.selected(svc, svc_spec.get("selector"))):
            continue
        targets = {port_number(p.get("targetPort", p.get("port")), c.ports())
                   for p in svc_spec.get("ports") or []}
        if not targets & tls_ports:
            continue
        if svc_spec.get("clusterIP") != "None":
            names |= {f"{svc.name}.{doc.ns}.svc", f"{svc.name}.{doc.ns}.{CLUSTER_DOMAIN}"}
        elif doc.kind == "StatefulSet" and spec.get("serviceName") == svc.name:
            names |= {f"{doc.name}-{i}.{svc.name}.{doc.ns}.{CLUSTER_DOMAIN}"
                      for i in range(spec.get("replicas", 1))}
    url = (c.env("CUTOVER_ORCHESTRATOR") or {}).get("value") or ""
    if url.startswith("https://"):
        names.add(urlsplit(url).hostname)
    return names


def check_certificates(m, daemons, certificates):
    wanted, cas = {}, []  # (namespace, Secret) -> {name: workload}; [(Secret, its CA)]
    for c in daemons:
        secret = m.secret_of(c, tls_file(c, "tls-cert"))
        if secret:
            names = {} if c.workload.example else dict.fromkeys(names_of(m, c), c.workload)
            wanted.setdefault((c.workload.ns, secret), {}).update(names)
    for (ns, secret), names in sorted(wanted.items()):
        doc = m.find("Secret", secret, ns)
        if doc is not None:
            cas.append((doc, check_secret(m, doc, names)))
        for cert in certificates.get((ns, secret), []):
            spec = cert.obj.get("spec") or {}
            held = [held_name("dns", n) for n in spec.get("dnsNames") or []]
            held += [held_name("ip", a) for a in spec.get("ipAddresses") or []]
            for name, workload in sorted(names.items()):
                if not holds(held, name):
                    field = "ipAddresses" if held_name("dns", name)[0] == "ip" else "dnsNames"
                    m.problem(cert, f"holds no {name}, at which {workload.kind}/"
                              f"{workload.name} is reached: add it to {field}")
            if not {"server auth", "client auth"} <= set(spec.get("usages") or []):
                m.problem(cert, "usages must hold server auth and client auth: each daemon "
                          "presents its certificate as a server and as a client")
    known = [ca for _, ca in cas if ca is not None]
    common = max(known, key=known.count, default=None)
    for doc, ca in cas:
        if ca not in (None, common):
            m.problem(doc, "ca.crt is not the CA the other Secrets hold: every daemon must "
                      "trust the one CA that signed them all")


def check_secret(m, doc, names):
    """The certificate of a Secret the manifests hold (a placeholder); its ca.crt."""
    try:
        data = {k: text(v) for k, v in (doc.obj.get("data") or {}).items()}
        data.update(doc.obj.get("stringData") or {})
        cert = read_certificate(data.get("tls.crt", ""))
        ca = read_certificate(data.get("ca.crt", ""))
    except (ValueError, IndexError, StopIteration) as error:  # base64's and UTF-8's too
        m.problem(doc, f"tls.crt and ca.crt must be PEM certificates: {error or 'they are not'}")
        return None
    again = f"make it again (the commands at the top of {doc.file})"
    for name, workload in sorted(names.items()):
        if not holds(cert["names"], name):
            m.problem(doc, f"tls.crt holds no {name}, at which {workload.kind}/{workload.name} "
                      f"is reached: {again}")
    if cert["issuer"] != ca["subject"]:
        m.problem(doc, f"tls.crt names another issuer than ca.crt: that CA did not sign it; "
                  f"{again}")
    for what, found in (("tls.crt", cert), ("ca.crt", ca)):
        if found["not_after"] < datetime.now(timezone.utc) + EXPIRY_MARGIN:
            m.problem(doc, f"{what} expires on {found['not_after']:%Y-%m-%d}: {again}")
    return data["ca.crt"].strip()


def text(value):
    return base64.b64decode(value).decode()


def held_name(kind, value):
    """A subject alternative name as compared: IPs in one spelling, DNS names in lower case."""
    try:
        return "ip", str(ipaddress.ip_address(value))
    except ValueError:
        return ("ip" if kind == "ip" else "dns"), value.lower()


def holds(held, name):
    """Whether names `held` cover `name`, a leftmost wildcard matching one label."""
    kind, value = held_name("dns", name)
    if kind == "ip":
        return (kind, value) in held
    wildcard = "*." + value.partition(".")[2]
    return ("dns", value) in held or ("dns", wildcard) in held


def read_certificate(pem):
    """The first certificate of `pem`: its names, issuer, subject and end of validity."""
    found = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if not found:
        raise ValueError("no -----BEGIN CERTIFICATE----- block")
    ((_, certificate),) = der_items(base64.b64decode("".join(found[1].split())))
    _, tbs = next(der_items(certificate))
    fields = list(der_items(tbs))
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [1] [2] [3]
    _, (time_tag, end) = der_items(fields[3][1])  # notBefore, notAfter
    names = []
    for tag, value in fields[6:]:
        if tag != 0xA3:  # [3] extensions
            continue
        ((_, extensions),) = der_items(value)
        for _, extension in der_items(extensions):
            parts = list(der_items(extension))
            if parts[0][1] == SAN_OID:
                ((_, general),) = der_items(parts[-1][1])
                names += [held_name("dns", v.decode()) if t == 0x82 else
                          ("ip", str(ipaddress.ip_address(v)))
                          for t, v in der_items(general) if t in (0x82, 0x87)]
    form = "%y%m%d%H%M%SZ" if time_tag == 0x17 else "%Y%m%d%H%M%SZ"  # UTCTime, or Generalized
    not_after = datetime.strptime(end.decode(), form).replace(tzinfo=timezone.utc)
    return {"names": names, "issuer": fields[2][1], "subject": fields[4][1],
            "not_after": not_after}


def der_items(data):
    """The (tag, content) of each DER item in `data`, one level deep."""
    i = 0
    while i < len(data):
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            size = length & 0x7F
            length, i = int.from_bytes(data[i:i + size], "big"), i + size
        yield tag, data[i:i + length]
        i += length
