"""Issue 9 lab format on the real kernel: host sysctls and firewall entries, the underlay MTU,
`listen:` sockets, and the injected packet's --size/--df."""

from __future__ import annotations

import os
import socket

import pytest

from conftest import needs_root, our_namespaces
from nettrace.errors import SpecError
from nettrace.inject.fingerprint import FingerprintFactory
from nettrace.inject.frames import build_l3, min_size

LAB = """
hosts:
  - name: h1
    sysctls: {net.ipv4.conf.all.rp_filter: 1, net.bridge.bridge-nf-call-iptables: 0}
    firewall:
      - -I DOCKER-USER -s 172.17.0.2 -j DROP
      - -t raw -A PREROUTING -p udp --dport 4789 -j DROP
      - -P INPUT DROP
clients: [client]
underlay: {mtu: 1400}
containers:
  - name: c1
    listen: [tcp/80, udp/53]
  - name: c2
"""


@pytest.mark.parametrize("proto", ["icmp", "udp", "tcp"])
def test_size_and_df_shape_the_packet(proto):
    fp = FingerprintFactory(seed=1).new(proto, "10.0.0.1", "10.0.0.2", 80 if proto != "icmp" else None)
    pkt = build_l3(fp, size=1450, df=True)
    raw = bytes(pkt)
    assert len(raw) == 1450
    assert int.from_bytes(raw[2:4], "big") == 1450          # IP total length
    assert raw[6] & 0x40                                    # DF bit
    assert fp.marker.encode() in raw
    plain = bytes(build_l3(fp))
    assert not plain[6] & 0x40 and len(plain) == min_size(fp)
    with pytest.raises(Exception, match="too small"):
        build_l3(fp, size=min_size(fp) - 1)


@needs_root
def test_host_settings_underlay_and_listeners(make_lab):
    from nettrace.topology import firewall, netns
    from nettrace.topology.builder import down
    from nettrace.topology.state import pidfile
    lab = make_lab(text=LAB, name="fmt1")
    h1 = lab.hosts["h1"]
    assert netns.sysctl_read(h1.netns, "net.ipv4.conf.all.rp_filter") == "1"
    assert netns.sysctl_read(h1.netns, "net.bridge.bridge-nf-call-iptables") == "0"
    assert netns.sysctl_read(h1.netns, "net.ipv4.ip_forward") == "1"      # Docker's, untouched
    assert h1.sysctls["net.ipv4.conf.all.rp_filter"] == "1"
    assert len(h1.firewall) == 3
    rules = firewall.dump(h1.netns).splitlines()
    # the DOCKER-USER entry is inserted above anything Docker put there; raw and policy applied
    user = [r for r in rules if r.startswith("-A DOCKER-USER")]
    assert user[0] == "-A DOCKER-USER -s 172.17.0.2/32 -j DROP"
    assert "-A PREROUTING -p udp -m udp --dport 4789 -j DROP" in rules
    assert ":INPUT DROP" in rules
    # underlay MTU on both ends of every uplink
    out = netns.run(lab.clients["client"].netns, ["ip", "-o", "link", "show", "eth0"]).stdout
    assert " mtu 1400 " in out
    out = netns.run(lab.underlay_netns, ["ip", "-o", "link", "show", "lan0"]).stdout
    assert " mtu 1400 " in out
    assert lab.underlay_mtu == 1400
    # real sockets in c1: a TCP connect from c2 completes, a UDP datagram comes back
    c1_ip = lab.sandboxes["c1"].ip()
    with netns.entered(lab.sandboxes["c2"].netns):
        t = socket.create_connection((c1_ip, 80), timeout=3)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        refused = socket.socket()
    t.close()
    u.settimeout(3)
    u.sendto(b"hello", (c1_ip, 53))
    assert u.recvfrom(100)[0] == b"hello"
    u.close()
    refused.settimeout(3)
    with pytest.raises(ConnectionRefusedError):             # no listener: RST
        refused.connect((c1_ip, 81))
    refused.close()
    pid = int(open(pidfile("fmt1", "listen")).read())
    assert os.path.exists(f"/proc/{pid}")
    report = down("fmt1")
    assert report.processes == 1
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}") or \
                open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            break
        import time
        time.sleep(0.05)
    else:
        raise AssertionError("the listener process survived lab down")
    assert not os.path.exists(pidfile("fmt1", "listen"))


@needs_root
@pytest.mark.parametrize("bad, field, words", [
    ("firewall: ['-A NO-SUCH-CHAIN -j DROP']", "hosts[0].firewall[0]", "iptables -A NO-SUCH"),
    ("sysctls: {net.ipv4.conf.nosuchif.rp_filter: 1}", "hosts[0].sysctls.net.ipv4.conf."
     "nosuchif.rp_filter", "no sysctl"),
])
def test_kernel_rejects_host_entry_nothing_left(bad, field, words):
    from nettrace.topology import builder, spec
    from nettrace.topology.model import STATE_DIR
    s = spec.parse(f"hosts:\n  - name: h1\n    {bad}\ncontainers:\n  - name: c1\n"
                   f"    listen: [tcp/80]\n", file="bad.yaml", default_name="fmtbad")
    before = our_namespaces()
    with pytest.raises(SpecError) as err:
        builder.up(s)
    assert err.value.field == field and err.value.file == "bad.yaml" and err.value.line == 3
    assert words in str(err.value)
    assert our_namespaces() == before
    assert not [f for f in os.listdir(STATE_DIR) if f.startswith("fmtbad.")] \
        if os.path.isdir(STATE_DIR) else True


@needs_root
def test_routes_and_client_settings(make_lab):
    from nettrace.topology import netns
    lab = make_lab(text="""
hosts:
  - name: h1
    routes: ["10.60.0.0/24 via h2", "10.70.0.0/16 via 192.168.50.100"]
  - h2
clients:
  - name: cl
    sysctls: {net.ipv4.ip_forward: 1}
    firewall: ["-A INPUT -p udp --dport 9 -j DROP"]
    routes: ["172.17.0.0/16 via h1"]
containers: []
""", name="fmtr")
    h1, h2, cl = lab.hosts["h1"], lab.hosts["h2"], lab.clients["cl"]
    out = netns.run(h1.netns, ["ip", "-4", "route", "show"]).stdout
    assert f"10.60.0.0/24 via {h2.address} dev eth0" in out
    assert f"10.70.0.0/16 via {cl.address} dev eth0" in out
    assert h1.routes == ["10.60.0.0/24 via h2", "10.70.0.0/16 via 192.168.50.100"]
    out = netns.run(cl.netns, ["ip", "-4", "route", "show"]).stdout
    assert f"172.17.0.0/16 via {h1.address} dev eth0" in out
    assert netns.sysctl_read(cl.netns, "net.ipv4.ip_forward") == "1"
    assert "-A INPUT -p udp -m udp --dport 9 -j DROP" in \
        netns.run(cl.netns, ["iptables-save"]).stdout


@needs_root
def test_route_the_kernel_refuses_names_its_line():
    from nettrace.topology import builder, spec
    s = spec.parse("hosts:\n  - name: h1\n    routes:\n      - 10.60.0.0/24 via 10.9.9.9\n"
                   "  - h2\ncontainers: []\n", file="r.yaml", default_name="fmtrbad")
    before = our_namespaces()
    with pytest.raises(SpecError) as err:          # the gateway is not on any link of h1
        builder.up(s)
    assert (err.value.file, err.value.line, err.value.field) == \
        ("r.yaml", 4, "hosts[0].routes[0]")
    assert "cannot add route 10.60.0.0/24 via 10.9.9.9" in str(err.value)
    assert our_namespaces() == before


@needs_root
def test_lab_show_names_the_lab_settings(make_lab):
    from nettrace.cli.views import lab_tree
    import io
    from rich.console import Console
    lab = make_lab(text=LAB, name="fmts")
    con = Console(width=200, record=True, file=io.StringIO())
    con.print(lab_tree(lab))
    text = con.export_text()
    for words in ("sysctl net.ipv4.conf.all.rp_filter=1", "iptables -P INPUT DROP",
                  "iptables -t raw -A PREROUTING -p udp --dport 4789 -j DROP",
                  "listen tcp/80 udp/53", "mtu 1400"):
        assert words in text, words


@needs_root
def test_path_with_lab_alone_traces_its_flow():
    """`nettrace path LAB` traces the flow the lab file names (trace:), with its size/df."""
    from conftest import run_cli
    run_cli("lab", "up", "faults/mtu-underlay", "--name", "fmtpath", check=True)
    try:
        proc = run_cli("path", "fmtpath", "--json")
        assert proc.returncode == 1, proc.stderr          # dropped: not the default "delivered"
        import json
        first = json.loads(proc.stdout.splitlines()[0])
        assert first["diagnosis"]["cause"] == "mtu-blackhole"
        hops = first["hops"]
        assert any(h.get("packet", {}).get("length") == 1450 for h in hops if h.get("packet"))
        assert run_cli("path", "fmtpath", "--expect-cause", "mtu-blackhole").returncode == 0
    finally:
        run_cli("lab", "down", "fmtpath")
    proc = run_cli("lab", "up", "bridge", "--name", "fmtpath2", check=True)
    try:
        proc = run_cli("path", "fmtpath2")
        assert proc.returncode == 2 and "has no trace: key; give SRC DST" in proc.stderr
    finally:
        run_cli("lab", "down", "fmtpath2")
