#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (see
docs/FUZZING.md): the repository's real plans and cluster files, the programs and bodies of
the fast path's tests, real HTTP/1.1 heads, and Pull messages encoded as prost encodes them.
The fuzzers grow the corpora from these; `cargo fuzz cmin` keeps what adds coverage."""

import hashlib
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent.parent
ROOT = FUZZ.parent


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


# Plans: the deploy example and the plans written out in the tests.
put("plan", (ROOT / "deploy/config/plan.toml").read_text())
NODES = '[blue]\nsources = ["http://127.0.0.1:7001"]\n[green]\nsinks = ["http://127.0.0.1:7002"]\n'
put("plan", NODES)
put("plan", 'pause_budget = "250ms"\nmax_cycles = 8\ndeadline = "2h"\n'
    'allowed_transform_failures = 3\npostpone = true\nbatch_documents = 500\n'
    'batch_bytes = 65536\nparallel_pipelines = 2\n'
    '[blue]\nsources = ["http://127.0.0.1:7001", "https://blue-2.internal:7001"]\n'
    'token_file = "/etc/cutover/blue.token"\n[green]\nsinks = ["http://[::1]:7002"]\n'
    '[proxies]\ncontrol = ["http://127.0.0.1:9101"]\ntoken_file = "proxy.token"\n'
    "[collections.users]\nforward = '.schema = 2'\nreverse = 'del(.schema)'\n"
    'rename = "people"\n[collections.orders]\nforward = \'select(.open)\'\n')
for program in [".a |= . + 1", "{id, name: .full_name}", "del(.a", "nope(1)"]:
    put("plan", NODES + "[collections.c]\nforward = '%s'\n" % program)

# Cluster files: the deploy examples and one of names, IPv6 and ranges.
for name in ["blue.toml", "green.toml"]:
    put("cluster", (ROOT / "deploy/config" / name).read_text())
put("cluster", 'partitions = 16\n[[node]]\nname = "a"\nhttp = "[fd00::1]:7070"\n'
    'grpc = "[fd00::1]:7071"\nowns = "0-3,9"\n[[node]]\nname = "b-2.x"\n'
    'http = "b-2.blue.svc.cluster.local:7070"\ngrpc = "B-2.blue.svc.cluster.local:7071"\n'
    'owns = "4-8, 10-15"\n')
put("cluster", 'partitions = 4\n[[node]]\nname = "a"\nhttp = "127.0.0.1:1"\n'
    'grpc = "127.0.0.1:2"\nowns = "0-2"\n')

# Programs and bodies from the fast path's tests, `program 0xff body`.
tests = (ROOT / "formats/src/fields/tests.rs").read_text()
def strings(const):
    block = re.search(r"const %s: &\[&str\] = &\[(.*?)\n\];" % const, tests, re.S).group(1)
    out = []
    for raw, plain in re.findall(r'r#"(.*?)"#|"((?:[^"\\]|\\.)*)"', block, re.S):
        out.append(raw if raw else plain.encode().decode("unicode_escape"))
    return out
programs = strings("PROGRAMS") + strings("OUTSIDE")
bodies = strings("OBJECTS") + strings("FALLBACKS")
for i, program in enumerate(programs):
    put("fields", program)
    put("fields", program.encode() + b"\xff" + bodies[i % len(bodies)].encode())

# HTTP/1.1: requests the relay takes or leaves, responses of every framing with their bodies.
for head in [
    b"GET /docs/a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PUT /docs/users/1 HTTP/1.1\r\nhost: a\r\ncontent-length: 7\r\n"
    b"connection: keep-alive, x-trace\r\nx-trace: 1\r\nx-forwarded-for: 10.0.0.9\r\n\r\n{\"a\":1}",
    b"HEAD / HTTP/1.1\r\nConnection: close\r\nTE: trailers\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\n\r\n",
]:
    put("relay", head)
for response in [
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nbad",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
]:
    put("relay", response)


# Pull messages, written as prost writes them.
def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

def field(number, value):
    if isinstance(value, int):
        return b"" if value == 0 else varint(number << 3) + varint(value)
    return b"" if not value else varint(number << 3 | 2) + varint(len(value)) + value

def document(collection, id, version, seq, body, tombstone=0):
    return (field(1, collection) + field(2, id) + field(3, version) + field(4, seq)
            + field(5, body) + field(6, tombstone))

def batch(documents, last_seq):
    inner = b"".join(field(1, d) for d in documents) + field(2, last_seq)
    return varint(1 << 3 | 2) + varint(len(inner)) + inner

put("pull_wire", batch([document(b"users", b"1", 3, 7, b'{"a":1}')], 7))
put("pull_wire", batch([document(b"c", b"a", 1, 1, b"{}"), document(b"users", b"gone", 2, 2, b"", 1),
                        document(b"x", b"i" * 200, 2**64 - 1, 2**64 - 1, b"b" * 300)], 2**64 - 1))
put("pull_wire", batch([document(b"", b"", 0, 0, b"")], 0))
complete = field(1, 9) + field(2, 3) + field(3, 300)
put("pull_wire", varint(2 << 3 | 2) + varint(len(complete)) + complete)
put("pull_wire", field(1, 42) + varint(2 << 3 | 2) + bytes([3, 0, 1, 200]) + field(3, 2000)
    + field(4, 1 << 20))
