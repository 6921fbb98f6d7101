"""Diagnosis engine, pure: hand-written paths and labs (shaped like real tracer output),
hand-written expectations. No root, no kernel."""

from __future__ import annotations

import json

import pytest
import yaml
from diag_fixtures import CLIENT_IP, HOST_IP, drop, lab, nf, out, path, pkt, rule, rx

from nettrace.diagnosis import (
    Cause,
    Diagnosis,
    EditError,
    EditOp,
    Fix,
    LabEdit,
    apply_edits,
    diagnose,
)
from nettrace.trace.model import Path

# -- fixtures ----------------------------------------------------------------------------

def two_bridges():
    return lab(("front", "10.10.0", True, False), ("back", "10.20.0", True, False),
               containers={"c1": ["front"], "c2": ["front"], "c3": ["back"]})


def forward_drop(L, src, dst_ip, in_dev, out_dev, the_rule):
    p = pkt(L.sandboxes[src].ip(), dst_ip)
    return out(L, src, p, 0) + [
        rx(f"veth{src}0", p, 132),
        nf("PRE_ROUTING", p, 144, in_dev=in_dev,
           rule=rule("nat", "PREROUTING", "policy accept", "accept")),
        rx(in_dev, p, 198),
        nf("FORWARD", p, 204, in_dev=in_dev, out_dev=out_dev, verdict_="drop", rule=the_rule),
        drop("NETFILTER_DROP", p, 219, "nft_do_chain+0x46f")]


# -- cause codes -------------------------------------------------------------------------

def test_isolation_names_both_networks_and_offers_to_connect():
    L = two_bridges()
    front, back = L.network("front").device, L.network("back").device
    hops = forward_drop(L, "c1", "10.20.0.2", front, back,
                        rule("filter", "DOCKER-ISOLATION-STAGE-2", f'oifname "{back}" drop', "drop"))
    d = diagnose(path(L, "c1", "c3", hops), L)
    assert d.cause == Cause.NETWORK_ISOLATION
    assert "c1 is on network front" in d.summary and "c3 is on network back" in d.summary
    assert f"hop 7 (host:{back} FORWARD)" in d.summary
    assert d.evidence == [6]
    assert d.fixes[0].docker == ["docker network connect back c1"]
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=c1].networks", "back")]
    assert d.fixes[1].docker == ["docker network connect front c3"]


def test_icc_off_recreates_the_network_with_icc_on():
    L = lab(("noicc", "10.96.0", False, False), containers={"c1": ["noicc"], "c2": ["noicc"]})
    br = L.network("noicc").device
    hops = forward_drop(L, "c1", "10.96.0.3", br, br, rule(
        "filter", "FORWARD", f'iifname "{br}" oifname "{br}" drop', "drop"))
    d = diagnose(path(L, "c1", "c2", hops), L)
    assert d.cause == Cause.ICC_DISABLED
    assert "noicc" in d.summary and "enable_icc=false" in d.summary
    cmds = d.fixes[0].docker
    assert "docker network rm noicc" in cmds
    assert ("docker network create -d bridge --subnet 10.96.0.0/24 "
            "-o com.docker.network.bridge.enable_icc=true noicc") in cmds
    assert cmds.index("docker network disconnect noicc c1") < cmds.index("docker network rm noicc")
    assert cmds[-2:] == ["docker network connect noicc c1", "docker network connect noicc c2"]
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, "networks[name=noicc].icc", True)]


def test_internal_network_sender_without_a_route():
    L = lab(("internal", "10.97.0", True, True), containers={"c1": ["internal"], "c2": ["internal"]})
    from nettrace.trace.model import DROPPED, Verdict
    p = Path(L.name, "c1", "client", "icmp", verdict=Verdict(
        DROPPED, where="c1", reason="no route to 192.168.50.100 in the sender's namespace "
        "(sendto: Network is unreachable)"), fingerprint={"dst": CLIENT_IP})
    d = diagnose(p, L)
    assert d.cause == Cause.INTERNAL_NETWORK
    assert "internal" in d.summary and d.evidence == []
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=c1].networks", "bridge")]
    assert d.fixes[1].lab == [LabEdit(EditOp.SET, "networks[name=internal].internal", False)]


def test_no_listener_behind_a_published_port():
    L = lab(containers={"web": ["bridge"]}, published={"web": ["8080:80/tcp"]})
    L.sandboxes["web"].listen = []
    p1 = pkt(CLIENT_IP, HOST_IP, "tcp", 53685, 8080)
    p2 = pkt(CLIENT_IP, "172.17.0.2", "tcp", 53685, 80)
    web = L.sandboxes["web"].netns
    hops = out(L, "client", p1, 0) + [
        rx("eth0", p1, 200),
        nf("PRE_ROUTING", p2, 210, in_dev="eth0", changes=["dst 192.168.50.11:8080 -> 172.17.0.2:80 (DNAT)"],
           rule=rule("nat", "DOCKER", "tcp dport 8080 dnat to 172.17.0.2:80", "accept")),
        nf("FORWARD", p2, 220, in_dev="eth0", out_dev="docker0", rule=rule(
            "filter", "DOCKER", 'iifname != "docker0" oifname "docker0" ip daddr 172.17.0.2 '
            'tcp dport 80 accept', "accept")),
        rx("eth0", p2, 240, netns=web, sandbox="web"),
        nf("LOCAL_IN", p2, 250, in_dev="eth0", netns=web, sandbox="web"),
        drop("NO_SOCKET", p2, 260, "tcp_v4_rcv+0x99", netns=web, sandbox="web")]
    rst = pkt("172.17.0.2", CLIENT_IP, "tcp", 80, 53685, info="RST-ACK")
    reply = [nf("LOCAL_OUT", rst, 300, out_dev="eth0", netns=web, sandbox="web")]
    d = diagnose(path(L, "client", "host:8080", hops, reply, proto="tcp", dport=8080,
                      answered="RST-ACK", dst_ip=HOST_IP), L)
    assert d.cause == Cause.NO_LISTENER
    assert "tcp/80" in d.summary and "DNATed" in d.summary and "RST" in d.summary
    assert len(hops) in d.evidence                       # the RST, first reply hop
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=web].listen", "tcp/80")]


def test_unpublished_port_reaches_the_host_stack():
    L = lab(containers={"web": ["bridge"]}, published={"web": ["8080:80/tcp"]})
    L.sandboxes["web"].listen = ["tcp/9090"]
    p1 = pkt(CLIENT_IP, HOST_IP, "tcp", 35826, 9090)
    hops = out(L, "client", p1, 0) + [
        rx("eth0", p1, 200),
        nf("PRE_ROUTING", p1, 210, in_dev="eth0", rule=rule("nat", "PREROUTING", "policy accept",
                                                            "accept")),
        nf("LOCAL_IN", p1, 220, in_dev="eth0", rule=rule("nat", "INPUT", "policy accept", "accept")),
        drop("NO_SOCKET", p1, 230, "tcp_v4_rcv+0x99")]
    rst = pkt(HOST_IP, CLIENT_IP, "tcp", 9090, 35826, info="RST-ACK")
    reply = [nf("LOCAL_OUT", rst, 300, out_dev="eth0")]
    d = diagnose(path(L, "client", "host:9090", hops, reply, proto="tcp", dport=9090,
                      answered="RST-ACK", dst_ip=HOST_IP), L)
    assert d.cause == Cause.PORT_NOT_PUBLISHED
    assert "tcp/9090" in d.summary and "host host" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=web].publish", "9090:9090/tcp")]
    assert "-p 9090:9090/tcp" in d.fixes[0].docker[-1]


# -- serialisation and lab edits ------------------------------------------------------------

def test_diagnosis_round_trips_through_path_json():
    L = two_bridges()
    hops = forward_drop(L, "c1", "10.20.0.2", L.network("front").device, L.network("back").device,
                        rule("filter", "DOCKER-ISOLATION-STAGE-2", 'oifname "x" drop', "drop"))
    p = path(L, "c1", "c3", hops)
    p.diagnosis = diagnose(p, L)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["diagnosis"]["cause"] == "network-isolation"
    assert d["diagnosis"]["fixes"][0] == {
        "docker": ["docker network connect back c1"],
        "lab": [{"op": "add", "path": "containers[name=c1].networks", "value": "back"}]}
    back = Path.from_dict(d)
    assert isinstance(back.diagnosis, Diagnosis) and back.diagnosis == p.diagnosis
    assert Path.from_dict({**d, "diagnosis": None}).diagnosis is None


SPEC = yaml.safe_load("""
hosts: [h1, h2]
networks:
  - name: noicc
    driver: bridge
    options: {com.docker.network.bridge.enable_icc: "false"}
containers:
  - name: c1
    host: h1
    networks: [front, {name: bridge, ip: 172.17.0.9}]
""")


def test_apply_edits_set_add_remove_and_selectors():
    edits = [LabEdit(EditOp.SET, "networks[name=noicc].icc", True),
             LabEdit(EditOp.ADD, "containers[name=c1].networks", "back"),
             LabEdit(EditOp.ADD, "containers[name=c1].networks", "back"),     # no duplicate
             LabEdit(EditOp.REMOVE, "containers[name=c1].networks", "bridge"),  # by name
             LabEdit(EditOp.SET, 'hosts[name=h2].sysctls["net.ipv4.ip_forward"]', 1),
             LabEdit(EditOp.ADD, "hosts[name=h1].firewall", "-I DOCKER-USER -j DROP"),
             LabEdit(EditOp.REMOVE, "hosts[name=h1].firewall", "-I DOCKER-USER -j DROP"),
             LabEdit(EditOp.REMOVE, "containers[name=c1].publish", "80:80/tcp")]  # absent: no-op
    out = apply_edits(SPEC, edits)
    assert out["networks"][0] == {"name": "noicc", "driver": "bridge", "options": {}, "icc": True}
    assert out["containers"][0]["networks"] == ["front", "back"]
    assert out["hosts"] == [{"name": "h1", "firewall": []},
                            {"name": "h2", "sysctls": {"net.ipv4.ip_forward": 1}}]
    assert SPEC["hosts"] == ["h1", "h2"]                 # the input is not changed


def test_apply_edits_default_host_and_bad_paths():
    out = apply_edits({"containers": []}, [
        LabEdit(EditOp.SET, 'hosts[name=host].sysctls["net.ipv4.ip_forward"]', 1)])
    assert out["hosts"] == [{"name": "host", "sysctls": {"net.ipv4.ip_forward": 1}}]
    with pytest.raises(EditError, match=r"no item named 'c9' \(there are: c1\)"):
        apply_edits(SPEC, [LabEdit(EditOp.ADD, "containers[name=c9].networks", "x")])
    with pytest.raises(EditError, match="cannot read it"):
        apply_edits(SPEC, [LabEdit(EditOp.SET, "networks[name=noicc]..icc", 1)])


def test_fix_edits_applied_to_a_real_lab_file_parse_and_say_what_they_say():
    """The isolation fix, applied to the embedded user-bridges lab, validates and puts c1
    on both networks."""
    from nettrace.topology import spec as spec_mod
    with open(spec_mod.embedded_labs()["user-bridges"]) as fh:
        doc = yaml.safe_load(fh)
    fixed = apply_edits(doc, [LabEdit(EditOp.ADD, "containers[name=c1].networks", "back")])
    parsed = spec_mod.parse(yaml.safe_dump(fixed), file="fixed.yaml")
    c1 = next(c for c in parsed.containers if c.name == "c1")
    assert [a.network for a in c1.networks] == ["front", "back"]


def test_cause_codes_are_the_issue_list():
    assert {c.value for c in Cause} >= {
        "ok", "network-isolation", "icc-disabled", "internal-network", "port-not-published",
        "no-listener", "docker-user-rule", "host-firewall-input", "forward-policy",
        "ip-forward-disabled", "bridge-netfilter-disabled", "direct-access-blocked",
        "mtu-blackhole", "vxlan-blocked", "macvlan-host-isolation", "no-route",
        "arp-unresolved", "hairpin", "conntrack-invalid", "rp-filter", "ttl-expired", "unknown"}
    assert str(Fix(["x"]).lab) == "[]"


# -- views ----------------------------------------------------------------------------------

def _icc_path():
    L = lab(("noicc", "10.96.0", False, False), containers={"c1": ["noicc"], "c2": ["noicc"]})
    br = L.network("noicc").device
    hops = forward_drop(L, "c1", "10.96.0.3", br, br, rule(
        "filter", "FORWARD", f'iifname "{br}" oifname "{br}" drop', "drop"))
    p = path(L, "c1", "c2", hops)
    p.diagnosis = diagnose(p, L)
    return L, p


def test_why_fix_block_fits_80_columns_and_lists_every_fix_command():
    from nettrace.views.paths import diagnosis_lines
    _, p = _icc_path()
    lines = diagnosis_lines(p.diagnosis)
    assert lines[0].startswith("why: [icc-disabled] ")
    assert all(len(line) <= 80 for line in lines), [ln for ln in lines if len(ln) > 80]
    text = "\n".join(lines)
    assert "fix: docker network disconnect noicc c1" in text
    assert "lab: set networks[name=noicc].icc true" in text
    assert diagnosis_lines(None) == []


def test_compact_render_fits_100_columns_and_wide_render_is_kept_for_pipes():
    import io

    from rich.console import Console

    from nettrace.views.paths import render
    _, p = _icc_path()
    buf = io.StringIO()
    render(Console(file=buf, width=100, no_color=True), p)      # narrow: compact by itself
    out = buf.getvalue().splitlines()
    assert max(len(line) for line in out) <= 100
    assert any("why: [icc-disabled]" in line for line in out)
    assert not any("+us" in line for line in out)               # compact: no timing column
    wide = io.StringIO()
    render(Console(file=wide, width=250, no_color=True), p)
    assert any("+us" in line for line in wide.getvalue().splitlines())


def test_the_engine_imports_nothing_from_the_kernel_side():
    import subprocess
    import sys
    code = ("import sys, nettrace.diagnosis, nettrace.views.paths; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bcc', 'pyroute2', 'scapy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_documents_every_cause_code_and_no_other():
    import os
    import re
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme) as f:
        text = f.read()
    section = text[text.index("## Why, and what to do"):]
    section = section[:section.index("\n## ", 5)]
    documented = re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M)
    assert sorted(documented) == sorted(c.value for c in Cause)
