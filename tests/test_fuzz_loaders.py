"""Property-based fuzzing (hypothesis) of every loader of user files: lab files, pcap/pcapng
captures (reader, link layer, scapy dissection as replay does it), golden files, trace
bundles and saved paths. Whatever the input, the loader returns a result or raises a
NettraceError (SpecError, CaptureError: exit 2 with the file named), never another exception.

Inputs are random text and bytes, structured documents built from the real keys with
hostile values, and mutations (bit flips, truncation, splices, replaced fields) of the real
files in nettrace/topology/labs and captures/. No root, no kernel objects.

The number of examples per property comes from the hypothesis profile in tests/conftest.py:
NETTRACE_FUZZ_EXAMPLES (default 100) runs longer, e.g.
    NETTRACE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_loaders.py
Crashes found so far are kept as explicit cases in tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import tempfile

import yaml
from hypothesis import given, strategies as st

from nettrace.errors import NettraceError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = sorted(glob.glob(os.path.join(ROOT, "nettrace", "topology", "labs", "*.yaml")))
GOLDENS = sorted(glob.glob(os.path.join(ROOT, "captures", "*.paths.yaml")))
BUNDLES = sorted(glob.glob(os.path.join(ROOT, "captures", "*.bundle.json.gz")))
PCAPS = sorted(glob.glob(os.path.join(ROOT, "captures", "*.pcap")))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


LAB_SEEDS = [_read(p) for p in LABS]
GOLDEN_SEEDS = [_read(p) for p in GOLDENS]
PCAP_SEEDS = [_read(p) for p in PCAPS]
BUNDLE_SEEDS = [json.loads(gzip.decompress(_read(p))) for p in BUNDLES]


def _pcapng_seed() -> bytes:
    """A pcapng with two interfaces and options, written by scapy (an independent writer)."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcapng
    pkts = [Ether() / IP(src="172.17.0.2", dst="172.17.0.3") / ICMP(seq=i) for i in range(3)]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "seed.pcapng")
        wrpcapng(path, pkts)
        return _read(path)


PCAPNG_SEEDS = [_pcapng_seed()]


# -- strategies ------------------------------------------------------------------------------

@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A real file with a few random edits: flips, overwrites, cuts, duplicated slices."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "int32", "cut", "truncate", "splice", "insert"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "int32":
            value = draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 12, 262145,
                                          len(data), draw(st.integers(0, 2 ** 32 - 1))]))
            data[i:i + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[i:]
        elif op == "splice":
            j = draw(st.integers(0, len(data) - 1))
            data[i:i] = data[j:j + draw(st.integers(1, 64))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["bridge", "host", "none", "macvlan", "overlay", "ipvlan", "c1", "c2",
                     "host1", "10.99.0.0/24", "10.99.0.1", "10.99.0.255", "0.0.0.0/0",
                     "172.17.0.0/16", "x/32", "8080:80/tcp", "127.0.0.1:8080:80/udp", "80",
                     "1500", "true", "false", "lo", "eth0", "tcp/80", "udp/53", "l2", "nat",
                     "routed", "fd00::/64", "29", "20.10", "nftables", "iptables"]))

VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def keyed(keys: list[str]) -> st.SearchStrategy:
    """Mappings whose keys are mostly the real ones."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=10)), VALUES,
                           max_size=len(keys))


def _lab_doc() -> st.SearchStrategy:
    from nettrace.topology import spec
    net = keyed(sorted(spec.NETWORK_KEYS | set(spec.OPTION_ALIASES)))
    ctr = keyed(sorted(spec.CONTAINER_KEYS))
    top = st.fixed_dictionaries({}, optional={
        "name": SCALARS, "hosts": st.one_of(VALUES, st.lists(st.one_of(SCALARS, keyed(
            ["name", "sysctls", "firewall"])), max_size=3)),
        "clients": VALUES, "networks": st.one_of(VALUES, st.lists(net, max_size=4)),
        "containers": st.one_of(VALUES, st.lists(ctr, max_size=5)),
        "engine": st.one_of(VALUES, keyed(["version", "firewall", "userland_proxy"])),
        "underlay": st.one_of(VALUES, keyed(["mtu"])),
        "trace": st.one_of(VALUES, keyed(["src", "dst", "proto", "dport", "size", "df"])),
        "expect": st.one_of(VALUES, keyed(["cause", "reason"])),
        "description": SCALARS})
    return top


def _dump(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# -- properties ------------------------------------------------------------------------------

def _lab_from_text(text: str) -> None:
    from nettrace.topology import spec
    try:
        lab = spec.parse(text, file="fuzz.yaml", default_name="fuzz")
    except NettraceError:
        return
    assert lab.name and isinstance(lab.containers, list)


def _lab_from_bytes(data: bytes) -> None:
    from nettrace.topology import spec
    with tempfile.NamedTemporaryFile(suffix=".yaml") as f:
        f.write(data)
        f.flush()
        try:
            spec.load(f.name)
        except NettraceError as exc:
            assert f.name in str(exc) or "--name" in str(exc)


@given(st.text(max_size=3000))
def test_lab_loader_random_text(text):
    _lab_from_text(text)


@given(st.one_of(mutated(LAB_SEEDS), st.binary(max_size=2000)))
def test_lab_loader_mutated_and_random_bytes(data):
    _lab_from_bytes(data)


@given(_lab_doc())
def test_lab_loader_structured_documents(doc):
    _lab_from_text(_dump(doc))


def _capture(data: bytes) -> None:
    from nettrace.capture.frames import link_payload, to_packet
    from nettrace.capture.reader import CaptureReader
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(data)
        f.flush()
        try:
            with CaptureReader(f.name) as cap:
                for frame in cap:
                    assert len(frame.data) <= frame.wirelen
                    payload = link_payload(frame, f.name)
                    try:
                        to_packet(payload)
                    except ValueError:          # documented: replay names the frame for it
                        pass
        except NettraceError as exc:
            assert f.name in str(exc)


@given(st.one_of(mutated(PCAP_SEEDS), mutated(PCAPNG_SEEDS)))
def test_capture_reader_mutated_files(data):
    _capture(data)


@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                        b"\x0a\x0d\x0d\x0a"]), st.binary(max_size=600))
def test_capture_reader_random_bytes_after_a_magic(magic, rest):
    _capture(magic + rest)


def _golden(data: bytes) -> None:
    from nettrace.capture.golden import load_golden
    with tempfile.NamedTemporaryFile(suffix=".paths.yaml") as f:
        f.write(data)
        f.flush()
        try:
            case = load_golden(f.name)
        except NettraceError as exc:
            assert f.name in str(exc)
            return
        assert isinstance(case.frames, list) and case.timeout > 0


GOLDEN_DOC = st.fixed_dictionaries({}, optional={
    k: VALUES for k in ("description", "capture", "lab", "from", "rewrite", "layer", "timeout",
                        "listen", "bundle", "expect")} | {
    "frames": st.lists(st.one_of(VALUES, keyed(["frame", "packet", "verdict", "hops", "reply",
                                                 "error"])), max_size=3)})


@given(st.one_of(mutated(GOLDEN_SEEDS), GOLDEN_DOC.map(lambda d: _dump(d).encode())))
def test_golden_loader(data):
    _golden(data)


def _mutate_json(draw, node, depth=0):
    """Replace one random subtree of a JSON document with a hostile value."""
    if isinstance(node, dict) and node and depth < 6 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        node = dict(node)
        node[key] = _mutate_json(draw, node[key], depth + 1)
        return node
    if isinstance(node, list) and node and depth < 6 and draw(st.booleans()):
        i = draw(st.integers(0, len(node) - 1))
        node = list(node)
        node[i] = _mutate_json(draw, node[i], depth + 1)
        return node
    return draw(VALUES.filter(lambda v: not isinstance(v, float) or v == v))


@st.composite
def bundle_files(draw) -> bytes:
    doc = draw(st.sampled_from(BUNDLE_SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        doc = _mutate_json(draw, doc)
    data = json.dumps(doc).encode()
    return gzip.compress(data, mtime=0) if draw(st.booleans()) else data


@given(st.one_of(bundle_files(), mutated([gzip.compress(json.dumps(BUNDLE_SEEDS[0]).encode(),
                                                       mtime=0)])))
def test_bundle_loader(data):
    from nettrace.trace import bundle
    with tempfile.NamedTemporaryFile(suffix=".bundle.json.gz") as f:
        f.write(data)
        f.flush()
        try:
            b = bundle.load(f.name)
            b.paths()
            b.the_lab()
        except NettraceError as exc:
            assert f.name in str(exc)


@given(st.one_of(st.text(max_size=500), st.lists(VALUES, max_size=3).map(json.dumps),
                 st.lists(keyed(["verdict", "hops", "reply", "request", "src", "dst"]),
                          max_size=3).map(json.dumps)))
def test_saved_paths_loader(text):
    from nettrace.cli.tui import load_paths
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(text)
        f.flush()
        try:
            load_paths(f.name)
        except NettraceError as exc:
            assert f.name in str(exc)


def test_seeds_are_valid():
    """The unmutated seeds load: the properties start from real, working files."""
    from nettrace.capture.golden import load_golden
    from nettrace.capture.reader import read_frames
    from nettrace.topology import spec
    from nettrace.trace import bundle
    assert len(LABS) >= 9 and len(GOLDENS) >= 10 and BUNDLES and PCAPS
    for p in LABS:
        spec.load(p)
    for p in GOLDENS:
        load_golden(p)
    for p in BUNDLES:
        assert bundle.load(p).paths()
    for p in PCAPS:
        assert list(read_frames(p))
    with tempfile.NamedTemporaryFile(suffix=".pcapng") as f:
        f.write(PCAPNG_SEEDS[0])
        f.flush()
        assert len(list(read_frames(f.name))) == 3

