"""The diagnosis on real traces: embedded and hand-written labs in real namespaces, real
packets, real eBPF and nft trace; the cause asserted from what the kernel did. Where a fix
is asserted, it is applied to the lab file with apply_edits, the fixed lab is brought up,
and the same flow traced again must be `ok`."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import needs_root, run_cli

pytestmark = [needs_root, pytest.mark.slow]


@pytest.fixture(scope="module")
def trace(labs):
    """`trace(lab, src, dst, **kw)` -> the request Path with its diagnosis (one Tracer per lab)."""
    from nettrace.diagnosis import attach
    from nettrace.trace import Tracer
    open_: dict[str, object] = {}

    def run(lab, src, dst, **kw):
        if lab.name not in open_:
            open_[lab.name] = Tracer(lab).__enter__()
        from nettrace.inject.request import InjectRequest
        timeout = kw.pop("timeout", 2.0)          # proto None, as the CLI: tcp when DST has a port
        paths = open_[lab.name].path(InjectRequest(src, dst, **kw), timeout=timeout)
        attach(paths, lab)
        assert len(paths) == 1
        return paths[0]

    yield run
    for tr in open_.values():
        tr.__exit__(None, None, None)


@pytest.fixture
def fixed(make_lab, trace):
    """`fixed(doc, fix, src, dst, **kw)`: apply a fix's lab edits to the lab document, bring
    the result up, trace the flow again; returns the new path."""
    from nettrace.diagnosis import apply_edits

    def run(doc: dict, fix, src, dst, name: str, **kw):
        assert fix.lab, f"fix has no lab edit: {fix}"
        text = yaml.safe_dump(apply_edits(doc, fix.lab))
        lab = make_lab(text=text, name=name)
        return trace(lab, src, dst, **kw)

    return run


def embedded(name: str) -> dict:
    from nettrace.topology import spec
    with open(spec.embedded_labs()[name]) as f:
        return yaml.safe_load(f)


def up(labs, make_lab, ref=None, *, doc=None, name):
    if doc is not None:
        return make_lab(text=yaml.safe_dump(doc), name=name)
    return labs(ref, as_name=name)


# -- Docker's own rules ----------------------------------------------------------------------

def test_user_bridges_isolation_and_its_fix(labs, trace, fixed):
    lab = labs("user-bridges", as_name="dg-ub")
    p = trace(lab, "c1", "c3")
    d = p.diagnosis
    assert d.cause.value == "network-isolation", d.summary
    assert "c1 is on network front" in d.summary and "c3 is on network back" in d.summary
    deciding = p.hops[d.evidence[0]]
    # Docker 29 (default): the raw table's direct-access drop, before routing (20.10: FORWARD)
    assert deciding.hook == "PRE_ROUTING" and deciding.verdict == "drop"
    assert d.fixes[0].docker == ["docker network connect back c1"]
    again = fixed(embedded("user-bridges"), d.fixes[0], "c1", "c3", "dg-ubfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_same_network_is_ok_and_names_the_accepting_rule(labs, trace):
    lab = labs("user-bridges", as_name="dg-ub")
    d = trace(lab, "c1", "c2").diagnosis
    assert d.cause.value == "ok"
    assert "let it through" in d.summary and "-j ACCEPT" in d.summary    # iptables-save text
    assert "the answer came back" in d.summary


def test_icc_off_and_its_fix(labs, trace, fixed):
    lab = labs("icc-off", as_name="dg-icc")
    d = trace(lab, "c1", "c2").diagnosis
    assert d.cause.value == "icc-disabled", d.summary
    assert "noicc" in d.summary
    again = fixed(embedded("icc-off"), d.fixes[0], "c1", "c2", "dg-iccfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_internal_network_has_no_way_out_and_connecting_a_bridge_fixes_it(labs, trace, fixed):
    lab = labs("internal", as_name="dg-int")
    d = trace(lab, "c1", "client").diagnosis
    assert d.cause.value == "internal-network", d.summary
    again = fixed(embedded("internal"), d.fixes[0], "c1", "client", "dg-intfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_published_port_without_a_listener_and_with_one(labs, trace, fixed):
    lab = labs("published-port", as_name="dg-pp")
    p = trace(lab, "client", "host:8080")
    d = p.diagnosis
    assert d.cause.value == "no-listener", d.summary
    assert "tcp/80" in d.summary and "RST" in d.summary
    assert any(i >= len(p.hops) for i in d.evidence)          # the RST in the reply
    again = fixed(embedded("published-port"), d.fixes[0], "client", "host:8080", "dg-ppfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_unpublished_port_and_publishing_it(make_lab, trace, fixed):
    doc = {"clients": ["client"],
           "containers": [{"name": "web", "networks": ["bridge"], "listen": ["tcp/9090"]}]}
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-unpub")
    d = trace(lab, "client", "host:9090").diagnosis
    assert d.cause.value == "port-not-published", d.summary
    assert d.fixes[0].lab[0].value == "9090:9090/tcp"
    again = fixed(doc, d.fixes[0], "client", "host:9090", "dg-unpubfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


# -- the host's own settings -----------------------------------------------------------------

ONE_BRIDGE = {"clients": ["client"], "containers": [{"name": "c1", "networks": ["bridge"]}]}


def with_host(**host) -> dict:
    return {**ONE_BRIDGE, "hosts": [{"name": "host", **host}]}


def test_forwarding_off_and_on_again(make_lab, trace, fixed):
    doc = with_host(sysctls={"net.ipv4.ip_forward": 0})
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-fwd")
    p = trace(lab, "c1", "client")
    d = p.diagnosis
    assert d.cause.value == "ip-forward-disabled", d.summary
    assert p.hops[d.evidence[0]].drop_reason == "IP_INADDRERRORS"
    assert d.fixes[0].docker == ["sysctl -w net.ipv4.ip_forward=1"]
    again = fixed(doc, d.fixes[0], "c1", "client", "dg-fwdfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_docker_user_rule_and_removing_it(make_lab, trace, fixed):
    doc = with_host(firewall=["-I DOCKER-USER -i docker0 -p icmp -j DROP"])
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-duser")
    d = trace(lab, "c1", "client").diagnosis
    assert d.cause.value == "docker-user-rule", d.summary
    assert d.fixes[0].docker == ["iptables -D DOCKER-USER -i docker0 -p icmp -j DROP"]
    again = fixed(doc, d.fixes[0], "c1", "client", "dg-duserfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_host_service_dropped_in_input(make_lab, trace):
    doc = with_host(firewall=["-I INPUT -i docker0 -p tcp --dport 5432 -j DROP"])
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-input")
    d = trace(lab, "c1", "host:5432").diagnosis
    assert d.cause.value == "host-firewall-input", d.summary
    assert "iptables -D INPUT -i docker0 -p tcp --dport 5432 -j DROP" in \
        [c for f in d.fixes for c in f.docker]


def test_ttl_lowered_by_a_rule_and_removing_it(make_lab, trace, fixed):
    doc = with_host(firewall=["-t mangle -A PREROUTING -i docker0 -j TTL --ttl-set 1"])
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-ttl")
    d = trace(lab, "c1", "client").diagnosis
    assert d.cause.value == "ttl-expired", d.summary
    again = fixed(doc, d.fixes[0], "c1", "client", "dg-ttlfix")
    assert again.diagnosis.cause.value == "ok", again.diagnosis.summary


def test_df_packet_larger_than_the_underlay_mtu(make_lab, trace):
    doc = {**ONE_BRIDGE, "underlay": {"mtu": 1400}}
    lab = make_lab(text=yaml.safe_dump(doc), name="dg-mtu")
    p = trace(lab, "c1", "client", size=1450, df=True)
    d = p.diagnosis
    assert d.cause.value == "mtu-blackhole", d.summary
    assert "1450-byte" in d.summary and "underlay 1400" in d.summary


def test_nobody_answers_arp(make_lab, trace):
    lab = make_lab(text=yaml.safe_dump(ONE_BRIDGE), name="dg-arp")
    d = trace(lab, "c1", "172.17.0.99", timeout=4).diagnosis
    assert d.cause.value == "arp-unresolved", d.summary
    assert "172.17.0.99" in d.summary


# -- the command line --------------------------------------------------------------------------

def test_cli_why_fix_json_and_expect_cause(labs):
    lab = labs("user-bridges", as_name="dg-cli")
    out = run_cli("path", lab.name, "c1", "c3", "--expect-cause", "network-isolation",
                  env={"COLUMNS": "100"})
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    why = next(i for i, ln in enumerate(lines) if ln.startswith("why: [network-isolation]"))
    block = lines[why:]
    assert all(len(ln) <= 80 for ln in block), block
    assert "fix: docker network connect back c1" in block
    assert run_cli("path", lab.name, "c1", "c3", "--expect-cause", "icc-disabled").returncode == 1
    bad = run_cli("path", lab.name, "c1", "c3", "--expect-cause", "nonsense")
    assert bad.returncode == 2 and "unknown cause code 'nonsense'" in bad.stderr
    assert "Traceback" not in bad.stderr
    js = run_cli("path", lab.name, "c1", "c2", "--json")
    assert js.returncode == 0
    diag = json.loads(js.stdout.splitlines()[0])["diagnosis"]
    assert diag["cause"] == "ok" and diag["evidence"] and diag["fixes"] == []
    compact = run_cli("path", lab.name, "c1", "c3", "--compact", "--expect", "dropped")
    assert compact.returncode == 0
    assert max(len(ln) for ln in compact.stdout.splitlines()) <= 100
