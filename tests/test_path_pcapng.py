"""`nettrace path --pcapng FILE`: the traced packet at every hop, readable by plain tshark."""

from __future__ import annotations

import json
import subprocess

from conftest import needs_root, run_cli

pytestmark = needs_root


def test_path_writes_every_hop_to_pcapng(labs, tmp_path):
    lab = labs("bridge", as_name="pcap-path")
    out = tmp_path / "c1-c2.pcapng"
    proc = run_cli("path", lab.name, "c1", "c2", "--json", "--pcapng", str(out))
    assert proc.returncode == 0, proc.stderr
    path = json.loads(proc.stdout.splitlines()[0])
    hops = len(path["hops"]) + len(path["reply"]["hops"])
    assert f"wrote {hops} packets" in proc.stderr
    fields = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name",
                             "-e", "ip.src", "-e", "ip.dst", "-e", "frame.comment"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(fields) == hops
    names = [f.split("\t")[0] for f in fields]
    assert names[0] == "c1/eth0" and "host/docker0" in names and "c2/eth0" in names
    first = fields[0].split("\t")
    assert first[1:3] == ["172.17.0.2", "172.17.0.3"]
    assert first[3].startswith("nettrace hop 1/")
    assert fields[-1].split("\t")[1:3] == ["172.17.0.3", "172.17.0.2"]   # the reply comes back
