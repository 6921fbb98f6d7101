"""Crash cases found by fuzzing and by issue 11's hostile-user campaign, kept as explicit
tests: each raised something other than a NettraceError (a traceback for the user) before
its fix. No root needed."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from nettrace.errors import NettraceError, SpecError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "captures", "bridge-ping.bundle.json.gz")


def _bundle_doc() -> dict:
    with open(BUNDLE, "rb") as f:
        return json.loads(gzip.decompress(f.read()))


def _load_bundle(tmp_path, data: bytes):
    from nettrace.trace import bundle
    path = tmp_path / "b.bundle.json.gz"
    path.write_bytes(data)
    b = bundle.load(str(path))
    b.paths()
    b.the_lab()
    return b


def _edited(**changes) -> bytes:
    doc = _bundle_doc()
    for dotted, value in changes.items():
        node = doc
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data, words", [
    # zlib.error: a deflate block of the reserved type
    (gzip.compress(b"{}", mtime=0)[:10] + b"\x07" + b"\0" * 40, "corrupt gzip stream"),
    # EOFError: the stream stops half-way
    (gzip.compress(json.dumps({"format": "nettrace-bundle"}).encode() * 20, mtime=0)[:30],
     "truncated gzip stream"),
    # AttributeError: 'NoneType' object has no attribute 'items' (Names.from_dict)
    (_edited(names__places=None), "malformed"),
    # AttributeError: 'bool' object has no attribute 'get' (the lab's name)
    (_edited(lab=True), "malformed"),
    # TypeError: Host() argument after ** must be a mapping (Lab.from_dict, on the_lab())
    (_edited(lab__hosts__host=None), "malformed"),
    # ValueError: None is not a valid FirewallBackend
    (_edited(lab__engine__firewall=None), "malformed"),
    # TypeError: unhashable type: 'list' (a drop reason that is not text, in assembly)
    (_edited(names__reasons__2=["x"]), "name of 2 must be text"),
    # an event field that is not a number
    (_edited(traces__0__events__0__4="eth0"), "event field ifindex must be an unsigned integer"),
    # RecursionError in json.loads
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
])
def test_bundle_crash_cases(tmp_path, data, words):
    with pytest.raises(SpecError, match=words) as err:
        _load_bundle(tmp_path, data)
    assert str(tmp_path / "b.bundle.json.gz") in str(err.value)


def test_bundle_gzip_bomb_stops_at_the_limit():
    from nettrace.inputs import gunzip
    bomb = gzip.compress(b"\0" * (4 << 20), mtime=0)      # 4 MiB of zeros in ~4 KiB
    with pytest.raises(SpecError, match="decompresses to more than 1,048,576 bytes"):
        gunzip(bomb, "trace bundle", lambda m, line=None: SpecError(m, file="b.gz"),
               max_bytes=1 << 20)
    assert len(gunzip(bomb, "x", lambda m, line=None: SpecError(m), max_bytes=8 << 20)) == 4 << 20


def test_saved_paths_nested_json_is_a_clear_error(tmp_path):
    from nettrace.cli.tui import load_paths
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        p = tmp_path / "deep.json"
        p.write_text(text)
        with pytest.raises(NettraceError, match="nested too deeply"):
            load_paths(str(p))


@pytest.mark.parametrize("text, words", [
    ("containers:\n  - name: c1\n    publish: 8080\n", "must be a list of published ports"),
    ("name: !!int x\ncontainers: []\n", "bad value 'x' for tag int"),
    ("name: !foo x\ncontainers: []\n", "YAML tag !foo is not allowed"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\ncontainers: []\n", "nested more than 64 levels"),
    ("networks:\n  - name: n\n    mtu: .inf\ncontainers: []\n", "whole number"),
    ("networks:\n  - name: n\n    subnet: 10.9.0.0/32\ncontainers: [{name: c, networks: [n]}]\n",
     "too small"),
])
def test_lab_loader_crash_cases(text, words):
    """TypeError, ValueError, ConstructorError, RecursionError, OverflowError and (after the
    kernel was touched) a TypeError from IPAM, before the fixes."""
    from nettrace.topology import spec
    with pytest.raises(SpecError, match=words):
        spec.parse(text, file="lab.yaml")


@pytest.mark.parametrize("linktype, data", [(101, b"\x60\x00\x00\x00"),      # IPv6, 4 bytes
                                             (101, b"\x45\x00")])              # IPv4, 2 bytes
def test_truncated_ip_header_in_a_capture_is_a_value_error(linktype, data):
    """struct.error from scapy (found by test_capture_reader_mutated_files): replay turns
    ValueError into a CaptureError naming the frame; struct.error was a traceback."""
    from nettrace.capture.frames import link_payload, to_packet
    from nettrace.capture.reader import Frame
    payload = link_payload(Frame(1, 0, linktype, data, len(data)), "x.pcap")
    with pytest.raises(ValueError, match="header cut short"):
        to_packet(payload)
