"""The tracer on every embedded lab: real namespaces, real eBPF probes, real packets.

Each test asserts the path (devices crossed, hooks, rules, rewrites), not just the
outcome; every Tracer is checked to leave no BPF program and no nft trace table behind.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import needs_root, run_cli
from nettrace.views.paths import verdict_line
from nettrace.inject.request import InjectRequest

pytestmark = [needs_root, pytest.mark.slow]


def _prog_alive(prog_id: int) -> bool:
    return subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)],
                          capture_output=True).returncode == 0


def _links_of(prog_ids: list[int]) -> list[dict]:
    out = subprocess.run(["bpftool", "link", "show", "-j"], capture_output=True, text=True).stdout
    return [link for link in json.loads(out or "[]") if link.get("prog_id") in prog_ids]


def _progs_gone(prog_ids: list[int], within: float = 3.0) -> bool:
    """The kernel frees a program after an RCU grace period once its last fd/link is gone."""
    import time
    deadline = time.monotonic() + within
    while any(_prog_alive(i) for i in prog_ids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _nft_tables(ns: str) -> str:
    from nettrace.topology import netns
    return netns.run(ns, ["nft", "list", "tables"]).stdout


@pytest.fixture(scope="module")
def traced(labs):
    """`traced(lab_name)` -> an open Tracer on the embedded lab (one per lab, per module).

    On teardown: no program of ours is loaded, no nftrace table is left in any host."""
    from nettrace.trace import Tracer
    open_tracers: dict[str, tuple] = {}

    def get(name: str, engine: str | None = None):
        key = (name, engine)
        if key not in open_tracers:
            suffix = "" if engine is None else "-v" + engine.replace(".", "")
            lab = labs(name, as_name=f"tr-{name}{suffix}", engine=engine)
            tr = Tracer(lab).__enter__()
            open_tracers[key] = (tr, lab, tr.probes.prog_ids())
        return open_tracers[key][0]

    yield get
    for tr, lab, prog_ids in open_tracers.values():
        tr.__exit__(None, None, None)
        assert not _links_of(prog_ids), "BPF links left attached"
        assert prog_ids and _progs_gone(prog_ids), "BPF programs left loaded"
        for host in lab.hosts.values():
            assert "nettrace_trace" not in _nft_tables(host.netns), f"nftrace table left in {host.name}"


def one(paths):
    assert len(paths) == 1
    return paths[0]


def hop(path, point, sandbox_or_host=None):
    found = [h for h in path.hops if h.point == point and
             (sandbox_or_host is None or sandbox_or_host in (h.sandbox, h.host))]
    assert found, f"no {point} hop at {sandbox_or_host} in {[(h.place, h.point) for h in path.hops]}"
    return found[0]


def veth_of(lab, container: str) -> str:
    return lab.sandboxes[container].endpoints[0].host_ifname


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_bridge_hop_sequence_and_reply(traced, engine):
    from nettrace.trace.assemble import device_sequence
    tr = traced("bridge", engine)
    lab = tr.lab
    p = one(tr.path(InjectRequest("c1", "c2", proto="icmp")))
    assert p.verdict.kind == "delivered" and p.verdict.where == "c2"
    assert device_sequence(p) == ["c1:eth0", f"host:{veth_of(lab, 'c1')}", "host:docker0",
                                  f"host:{veth_of(lab, 'c2')}", "c2:eth0"]
    fwd = hop(p, "nf:FORWARD", "host")
    assert fwd.verdict == "accept" and fwd.in_dev == "docker0" and fwd.out_dev == "docker0"
    assert fwd.rule is not None and fwd.rule.verdict == "accept"
    # 29: DOCKER-FORWARD's "-i docker0 -j ACCEPT"; 20.10: FORWARD's ICC accept
    assert fwd.rule.chain == {"29": "DOCKER-FORWARD", "20.10": "FORWARD"}[engine]
    fw = lab.rule_for("host", "ip", "filter", fwd.rule.chain, fwd.rule.handle)
    assert fw is not None and fw.purpose.value == {"29": "outgoing", "20.10": "icc"}[engine]
    roles = [h.role for h in p.hops if h.point.startswith("tp:")]
    assert roles == ["container", "veth-host", "veth-host", "container"]
    assert p.reply is not None and p.reply.verdict.kind == "delivered"
    assert device_sequence(p.reply) == list(reversed(device_sequence(p)))
    back = hop(p.reply, "nf:FORWARD", "host").rule
    assert back.rule.endswith("ct state related,established accept")
    assert back.chain == {"29": "DOCKER-CT", "20.10": "FORWARD"}[engine]
    assert p.events_lost == 0 and tr.events_lost == 0
    status = {s.name: s for s in tr.probe_status()}
    assert all(status[f"tp:{tp}"].live for tp in ("net_dev_queue", "netif_receive_skb", "kfree_skb"))
    assert status["nf:first/last"].live and status["nft:trace"].live
    optional = [s for s in status.values() if s.name.startswith("optional:")]
    assert optional and all(s.live or s.reason for s in optional)    # reported, never fatal
    assert p.probes_missing == []


def test_bridge_udp_and_tcp_reply_kinds(traced):
    import subprocess as sp
    import time
    from nettrace.topology import netns
    tr = traced("bridge")
    tcp = one(tr.path(InjectRequest("c1", "c2", proto="tcp", dport=80)))
    assert tcp.verdict.kind == "delivered" and tcp.verdict.reason == "answered: RST-ACK"
    assert tcp.reply is not None and tcp.reply.hops[0].packet.info == "RST-ACK"
    server = netns.popen(tr.lab.sandboxes["c2"].netns, ["busybox", "nc", "-l", "-p", "8081"],
                         stdout=sp.DEVNULL, stderr=sp.DEVNULL)
    try:
        time.sleep(0.2)
        syn = one(tr.path(InjectRequest("c1", "c2", proto="tcp", dport=8081)))
        assert syn.verdict.reason == "answered: SYN-ACK"
        # the SYN is consumed by c2's listening socket (a later event of the same flow, such
        # as c1's kernel resetting the SYN-ACK it never asked for, may follow it under load)
        assert any(h.point == "consume" and h.sandbox == "c2" for h in syn.hops), \
            [(h.point.value, h.sandbox, h.packet and h.packet.info) for h in syn.hops]
        assert [h.packet.info for h in syn.reply.hops if h.packet][0] == "SYN-ACK"
    finally:
        server.kill()
        server.wait()
    udp = one(tr.path(InjectRequest("c1", "c2", proto="udp", dport=9999)))
    assert udp.verdict.kind == "delivered"
    assert udp.reply is not None and udp.reply.hops[0].packet.info == "dest-unreach"


def test_bridge_further_path_is_fast(traced):
    import time
    tr = traced("bridge")
    tr.path(InjectRequest("c1", "c2"))
    t0 = time.monotonic()
    p = one(tr.path(InjectRequest("c1", "c2")))
    assert p.verdict.kind == "delivered"
    assert time.monotonic() - t0 < 0.1 * 3      # target 0.1 s; margin for a loaded CI machine


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_user_bridges_isolation_drop_names_the_rule(traced, engine):
    tr = traced("user-bridges", engine)
    p = one(tr.path(InjectRequest("c1", "c3")))
    assert p.verdict.kind == "dropped"
    rule = p.verdict.rule
    assert rule is not None and rule.verdict == "drop"
    fw = tr.lab.rule_for("host", rule.family, rule.table, rule.chain, rule.handle)
    if engine == "29":
        # 28.2+: a packet routed to another bridge's container address is a direct access,
        # dropped in raw PREROUTING before any filter rule
        assert (rule.table, rule.chain) == ("raw", "PREROUTING")
        assert fw.purpose.value == "direct-access" and fw.network == "back"
    else:
        assert rule.chain.startswith("DOCKER-ISOLATION-STAGE")
        assert fw.purpose.value == "isolation"
        assert hop(p, "nf:FORWARD", "host").verdict == "drop"
    assert any(h.point == "drop" and h.drop_reason == "NETFILTER_DROP" for h in p.hops)
    assert p.reply is None


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_icc_off_drop_names_its_rule(traced, engine):
    tr = traced("icc-off", engine)
    lab = tr.lab
    bridge = lab.network("noicc").device
    p = one(tr.path(InjectRequest("c1", "c2")))
    assert p.verdict.kind == "dropped"
    rule = p.verdict.rule
    assert rule is not None and rule.verdict == "drop"
    assert rule.chain == {"29": "DOCKER-FORWARD", "20.10": "FORWARD"}[engine]
    assert f'iifname "{bridge}" oifname "{bridge}"' in rule.rule
    fw = lab.rule_for("host", "ip", "filter", rule.chain, rule.handle)
    assert fw.purpose.value == "icc" and fw.network == "noicc"
    assert fw.text.endswith(f"-i {bridge} -o {bridge} -j DROP")


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_internal_egress_dropped(traced, engine):
    tr = traced("internal", engine)
    p = one(tr.path(InjectRequest("c1", "client")))
    assert p.verdict.kind == "dropped"
    if engine == "29":      # no default route in an internal network: the stack refuses
        assert "no route" in p.verdict.reason
    else:                   # 20.10 gives one (via the gateway): the firewall drops it
        assert p.verdict.rule is not None and p.verdict.rule.chain == "DOCKER-ISOLATION-STAGE-1"
    # a frame sent to the bridge anyway is dropped by the internal network's rule
    p = one(tr.path(InjectRequest("c1", "client", layer="l2")))
    assert p.verdict.kind == "dropped"
    rule = p.verdict.rule
    assert rule is not None
    assert rule.chain == {"29": "DOCKER-INTERNAL", "20.10": "DOCKER-ISOLATION-STAGE-1"}[engine]
    assert "ip daddr != 10.97.0.0/24" in rule.rule
    fw = tr.lab.rule_for("host", "ip", "filter", rule.chain, rule.handle)
    assert fw.purpose.value == "internal"


def test_published_port_dnat_and_un_nat(traced):
    tr = traced("published-port")
    lab = tr.lab
    web_ip = lab.sandboxes["web"].ip()
    host_ip = lab.hosts["host"].address
    p = one(tr.path(InjectRequest("client", "host:8080", proto="tcp")))
    pre = hop(p, "nf:PRE_ROUTING", "host")
    assert f"dst {host_ip}:8080 -> {web_ip}:80 (DNAT)" in pre.changes
    assert pre.rule is not None and pre.rule.table == "nat" and "dnat to" in pre.rule.rule
    assert p.verdict.kind == "delivered" and p.verdict.where == "web"
    assert p.reply is not None and p.reply.verdict.kind == "delivered"
    assert p.reply.verdict.where == "client"
    assert any(f"src {web_ip}:80 -> {host_ip}:8080 (un-DNAT)" in h.changes for h in p.reply.hops)


def test_egress_masquerade(traced):
    tr = traced("published-port")
    lab = tr.lab
    p = one(tr.path(InjectRequest("c1", "client")))
    post = [h for h in p.hops if h.point == "nf:POST_ROUTING" and h.host == "host" and h.changes]
    assert post, [(h.place, h.point, h.changes) for h in p.hops]
    c1_ip, host_ip = lab.sandboxes["c1"].ip(), lab.hosts["host"].address
    assert f"src {c1_ip} -> {host_ip} (SNAT/MASQUERADE)" in post[0].changes
    assert p.verdict.kind == "delivered" and p.verdict.where == "client"
    assert p.reply is not None and p.reply.verdict.kind == "delivered"


def test_overlay_vxlan_across_the_underlay(traced):
    tr = traced("overlay")
    lab = tr.lab
    p = one(tr.path(InjectRequest("c1", "c2")))
    assert p.verdict.kind == "delivered" and p.verdict.where == "c2"
    vx = [h for h in p.hops if h.device == "vxlan0"]
    assert [h.point for h in vx] == ["tp:net_dev_queue", "tp:netif_receive_skb"]
    assert vx[0].host == "host1" and vx[1].host == "host2"
    outer = [h for h in p.hops if h.packet and h.packet.outer]
    assert outer and all(h.packet.outer.dport == 4789 and h.packet.outer.proto == "udp" for h in outer)
    assert {h.host for h in outer} >= {"host1", "host2"}
    assert any(h.sandbox == "underlay" for h in outer), "outer packet not seen on the underlay"
    assert outer[0].packet.outer.src == lab.hosts["host1"].address
    assert any(c.startswith("encapsulated: VXLAN vni") for h in p.hops for c in h.changes)
    assert any(c.startswith("decapsulated") for h in p.hops for c in h.changes)
    assert p.reply is not None and p.reply.verdict.kind == "delivered"


def test_macvlan_receive_hop_and_arp(traced):
    tr = traced("macvlan")
    p = one(tr.path(InjectRequest("m1", "m2")))
    assert p.verdict.kind == "delivered"
    rx = hop(p, "tc:ingress", "m2")                 # invisible to tracepoints
    assert rx.device == "eth0" and rx.role == "container"
    arp = one(tr.path(InjectRequest("m1", "m2", proto="arp")))
    assert arp.verdict.kind == "delivered"
    assert any(h.sandbox == "m2" for h in arp.hops)
    assert arp.hops[0].packet.info.startswith("who-has")
    assert arp.reply is not None and arp.reply.verdict.kind == "delivered"
    assert "is-at" in arp.reply.hops[0].packet.info
    assert tr.events_lost == 0


def test_trace_packet_replays_a_scapy_frame(traced):
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    tr = traced("bridge")
    lab = tr.lab
    pkt = IP(src=lab.sandboxes["c1"].ip(), dst=lab.sandboxes["c2"].ip(), id=4242) / \
        UDP(sport=40404, dport=7) / Raw(b"nettrace-replay")
    p = tr.trace_packet("c1", pkt)
    assert p.verdict.kind == "delivered" and p.fingerprint["ip_id"] == 4242
    raw = bytes(IP(src=lab.sandboxes["c1"].ip(), dst=lab.sandboxes["c2"].ip(), id=4343) /
                UDP(sport=40405, dport=7) / Raw(b"nettrace-4343"))
    p = tr.trace_packet("c1", raw)                  # raw bytes through the IP stack
    assert p.verdict.kind == "delivered" and p.fingerprint["marker"] == "nettrace-4343"


def test_live_expression_sees_real_traffic(traced):
    import threading
    import time
    from nettrace.topology import netns
    tr = traced("bridge")
    c2 = tr.lab.sandboxes["c2"].ip()
    deadline = time.monotonic() + 30
    seen = []
    done = threading.Event()

    def ping():                     # until seen: the live probes compile first (~1 s)
        while not done.is_set() and time.monotonic() < deadline:
            netns.run(tr.lab.sandboxes["c1"].netns, ["ping", "-c1", "-W1", c2], check=False)
            time.sleep(0.3)

    threading.Thread(target=ping, daemon=True).start()
    try:
        for p in tr.live("icmp and host c2", stop=lambda: time.monotonic() > deadline or len(seen) >= 2):
            seen.append(p)
    finally:
        done.set()
    kinds = sorted(h.packet.info for p in seen for h in p.hops[:1] if h.packet)
    assert kinds == ["echo-reply", "echo-request"], [p.hops[:1] for p in seen]
    assert all(p.verdict.kind == "delivered" for p in seen), \
        [(verdict_line(p), [(h.place, h.point, h.drop_reason) for h in p.hops]) for p in seen]
    assert tr.events_lost == 0


def test_cli_path_json_and_exit_codes(labs):
    lab = labs("user-bridges", as_name="tr-cli")
    ok = run_cli("path", lab.name, "c1", "c2", "--json")
    assert ok.returncode == 0, ok.stderr
    obj = json.loads(ok.stdout.splitlines()[0])
    assert obj["verdict"]["kind"] == "delivered" and obj["reply"]["direction"] == "reply"
    assert {"ts_ns", "point", "device", "role", "changes"} <= set(obj["hops"][0])
    dropped = run_cli("path", lab.name, "c1", "c3")
    assert dropped.returncode == 1 and "dropped" in dropped.stdout
    # Docker 29 (default): the raw table's direct-access drop, named in iptables-save syntax
    assert "by raw PREROUTING rule " in dropped.stdout
    assert f"! -i {lab.network('back').device} -j DROP" in dropped.stdout
    assert run_cli("path", lab.name, "c1", "c3", "--expect", "dropped").returncode == 0
    bad = run_cli("path", lab.name, "c1", "nosuch")
    assert bad.returncode == 2 and "DST 'nosuch'" in bad.stderr


def test_exception_inside_tracer_removes_nftrace_rules_and_probes(labs):
    from nettrace.topology import netns
    from nettrace.trace import Tracer
    lab = labs("bridge", as_name="tr-bridge")
    host_ns = lab.hosts["host"].netns
    with pytest.raises(RuntimeError):
        with Tracer(lab) as tr:
            prog_ids = tr.probes.prog_ids()
            table = tr.nft.table
            assert table in _nft_tables(host_ns)
            raise RuntimeError("boom")
    # (another tracer of this module may hold a table of its own on the same lab)
    assert table not in _nft_tables(host_ns)
    assert _progs_gone(prog_ids)
    # a table left by an older tracer killed with -9 (its pid is gone) is removed by the next
    netns.run(host_ns, ["nft", "add", "table", "inet", "nettrace_trace_999999"])
    with Tracer(lab) as tr:
        assert "nettrace_trace_999999" not in _nft_tables(host_ns)
        table = tr.nft.table
    assert table not in _nft_tables(host_ns)


def test_host_and_none_network_modes(traced, labs):
    from nettrace.errors import NettraceError
    tr = traced("host")
    p = one(tr.path(InjectRequest("hostc", "c1")))              # sent from the Docker host's namespace
    assert p.verdict.kind == "delivered" and p.verdict.where == "c1"
    assert p.hops[0].host == "host" and p.hops[0].sandbox is None
    back = one(tr.path(InjectRequest("c1", "hostc")))
    assert back.verdict.kind == "delivered" and back.verdict.where == "host"
    tr_none = traced("none")
    with pytest.raises(NettraceError, match="no network interface"):
        tr_none.path(InjectRequest("lonely", "c1"))


def test_two_tracers_share_the_netfilter_hooks(traced, labs):
    """A second tracer (the TUI and a CLI at once) in the same process takes the next free
    hook priorities and an nft trace table of its own: closing it leaves the first's."""
    from nettrace.trace import Tracer
    first = traced("bridge")
    host_ns = first.lab.hosts["host"].netns
    first_table = first.nft.table
    first._attach(first.probes)                 # as while it traces a packet
    try:
        with Tracer(first.lab) as second:
            assert second.nft.table != first_table
            tables = _nft_tables(host_ns)
            assert first_table in tables and second.nft.table in tables
            p = one(second.path(InjectRequest("c1", "c2")))
            assert p.verdict.kind == "delivered"
            assert [h.verdict for h in p.hops if h.point == "nf:FORWARD"] == ["accept"]
            assert any(h.rule for h in p.hops if h.point == "nf:FORWARD"), "no rule attributed"
            assert second.missing_probes() == []
            second_table = second.nft.table
        tables = _nft_tables(host_ns)
        assert first_table in tables and second_table not in tables
    finally:
        first.probes.detach(("tp", "nf"))
    again = one(first.path(InjectRequest("c1", "c2")))         # the first still attributes rules
    assert any(h.rule for h in again.hops if h.point == "nf:FORWARD"), "first lost its table"
