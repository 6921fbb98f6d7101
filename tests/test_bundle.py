"""Trace bundles: recorded live (root, real kernel and eBPF), assembled offline equal to
what the live tracer returned; the CLI writes and shows them; bad files are refused."""

from __future__ import annotations

import gzip
import json
import os
import re

import pytest

from conftest import needs_root, run_cli
from nettrace.errors import SpecError
from nettrace.trace import bundle
from nettrace.inject.request import InjectRequest


@needs_root
def test_offline_assembly_of_a_live_bundle_equals_the_live_paths(labs, tmp_path):
    """The bridge lab (delivered, with a reply and nft rules), user-bridges (dropped by
    isolation, the rule named) and published-port (DNAT): each traced live, saved, loaded
    in a fresh object, assembled again: the same paths, field for field."""
    from nettrace.trace import Tracer
    cases = [("bridge", "c1", "c2", "icmp", "delivered"),
             ("user-bridges", "c1", "c3", "icmp", "dropped"),
             ("published-port", "client", "host:8080", "tcp", None)]
    for lab_name, src, dst, proto, kind in cases:
        lab = labs(lab_name, as_name=f"bu-{lab_name}")
        with Tracer(lab) as tr:
            tr.records = []
            live = tr.path(InjectRequest(src, dst, proto=proto, count=2))
        saved = bundle.Bundle.of_lab(lab, tr.names)
        saved.traces = tr.records
        file = str(tmp_path / f"{lab_name}.bundle.json.gz")
        bundle.save(saved, file)
        again = bundle.load(file)
        offline = again.paths()
        assert [p.to_dict() for p in offline] == [p.to_dict() for p in live], lab_name
        assert len(again.traces[0].events) > 3 and again.names.places
        if kind:
            assert {p.verdict.kind for p in offline} == {kind}, lab_name
        if kind == "dropped":       # the rule survived the trip, from the recorded nft lines
            assert offline[0].verdict.rule is not None and again.traces[0].lines
        if lab_name == "published-port":
            changes = [c for h in offline[0].hops for c in h.changes]
            assert any("(DNAT)" in c for c in changes), changes
        assert again.the_lab().name == lab.name


@needs_root
def test_cli_path_save_then_show_prints_the_same_paths(labs, tmp_path):
    lab = labs("bridge", as_name="bu-cli")
    file = str(tmp_path / "c1-c2.bundle.json")
    live = run_cli("path", lab.name, "c1", "c2", "--json", "--save", file, check=True)
    shown = run_cli("show", file, "--json", check=True)
    assert [json.loads(x) for x in shown.stdout.splitlines()] == \
        [json.loads(x) for x in live.stdout.splitlines()]
    with open(file) as f:
        doc = json.load(f)
    assert (doc["format"], doc["version"]) == ("nettrace-bundle", 1)
    assert all(isinstance(v, (int, str)) for row in doc["traces"][0]["events"] for v in row)
    table = run_cli("show", file, check=True).stdout
    assert "request delivered at c2" in table and "c1:eth0" in table


def _minimal(**over) -> dict:
    doc = {"format": "nettrace-bundle", "version": 1, "names": {}, "traces": []}
    doc.update(over)
    return doc


def test_bad_bundles_are_refused_naming_file_and_field(tmp_path):
    cases = {"not-json.json": (b"{oops", "not JSON"),
             "other.json": (json.dumps({"format": "pcap"}).encode(), "format"),
             "future.json": (json.dumps(_minimal(version=99)).encode(), "version"),
             "badevent.json.gz": (gzip.compress(json.dumps(_minimal(traces=[{
                 "request": {"lab": "l", "src": "a", "dst": "b",
                             "fingerprint": {"trace_id": 1, "proto": "icmp", "src": "1.1.1.1",
                                             "dst": "2.2.2.2"}},
                 "events": [[1, 2, 3]]}])).encode()), "traces[0]")}
    for name, (data, word) in cases.items():
        file = tmp_path / name
        file.write_bytes(data)
        with pytest.raises(SpecError, match=re.escape(word)) as err:
            bundle.load(str(file))
        assert str(file) in str(err.value)
        proc = run_cli("show", str(file))
        assert proc.returncode == 2 and word in proc.stderr and "Traceback" not in proc.stderr
    assert run_cli("show", str(tmp_path / "missing.json")).returncode == 2


def test_an_empty_bundle_round_trips(tmp_path):
    from nettrace.trace.names import Names
    b = bundle.Bundle("x", Names(reasons={2: "NOT_SPECIFIED"}))
    file = str(tmp_path / "empty.json")
    bundle.save(b, file)
    back = bundle.load(file)
    assert back.paths() == [] and back.names.reasons == {2: "NOT_SPECIFIED"}
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


@needs_root
def test_record_save_writes_observed_packets_that_show_offline(labs, tmp_path):
    """`nettrace record --save` while c1 pings c2: the bundle holds each observed packet's
    events, and `show --json` rebuilds their paths offline."""
    import subprocess
    import threading
    import time
    from conftest import NETTRACE
    from nettrace.topology import netns
    lab = labs("bridge", as_name="bu-rec")
    file = str(tmp_path / "rec.bundle.json")
    rec = subprocess.Popen([NETTRACE, "record", lab.name, "icmp", "-c", "2", "-d", "30",
                            "--save", file], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    stop = threading.Event()

    def ping() -> None:
        while not stop.is_set() and rec.poll() is None:
            netns.run(lab.sandboxes["c1"].netns, ["ping", "-c1", "-W1", "172.17.0.3"],
                      check=False)
            time.sleep(0.3)
    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        out, err = rec.communicate(timeout=60)
    finally:
        stop.set()
        pinger.join()
    assert rec.returncode == 0, err
    assert f"wrote 2 paths to {file}" in err
    saved = bundle.load(file)
    assert len(saved.observed) >= 2 and not saved.traces
    shown = [json.loads(x) for x in run_cli("show", file, "--json", check=True).stdout.splitlines()]
    assert [p["direction"] for p in shown] == ["observed"] * len(saved.observed)
    first = shown[0]
    assert first["src"] == "172.17.0.2" and first["dst"] == "172.17.0.3"
    assert first["hops"][0]["sandbox"] == "c1"
