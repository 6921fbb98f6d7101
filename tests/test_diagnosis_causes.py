"""Every cause code from hand-written paths shaped like real traces (hop kinds, drop
reasons and kernel locations as `nettrace path --json` shows them on this kernel), with
hand-written expectations. Pure: no root."""

from __future__ import annotations

import struct

from diag_fixtures import CLIENT_IP, HOST_IP, drop, lab, nf, out, path, pkt, rule, rx

from nettrace.diagnosis import Cause, EditOp, Fix, LabEdit, diagnose
from nettrace.topology.firewall.purposes import RulePurpose
from nettrace.topology.model import FwRule, Host
from nettrace.trace.model import DROPPED, Hop, Path, Verdict


def bridge_lab(**kw):
    L = lab(containers={"c1": ["bridge"], "web": ["bridge"]}, **kw)
    return L


def to_client(L, hops_after_out, *, src="c1", p=None):
    p = p or pkt(L.sandboxes[src].ip(), CLIENT_IP)
    return out(L, src, p, 0) + [rx(f"veth{src}0", p, 130), rx("docker0", p, 140)] + \
        hops_after_out(p)


def icmp_frame(itype: int, code: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 56, 1, 0, 64, 1, 0, bytes(4), bytes(4))
    return ip + bytes([itype, code]) + bytes(6)


def indexed(L, host, chain, handle, purpose, text, table="filter", network=None):
    L.rules.append(FwRule(host, "ip", table, chain, handle, 1, text, purpose, network))
    r = rule(table, chain, "nft text", "drop")
    r.handle = handle
    return r


# -- kernel drop reasons ---------------------------------------------------------------------

def test_forwarding_off_is_ip_error_on_the_host():
    L = bridge_lab()
    L.hosts["host"].sysctls = {"net.ipv4.ip_forward": "0"}
    hops = to_client(L, lambda p: [drop("IP_INADDRERRORS", p, 200, "ip_error+0x94")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.IP_FORWARD_DISABLED and d.evidence == [len(hops) - 1]
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, 'hosts[name=host].sysctls["net.ipv4.ip_forward"]', 1)]


def test_ttl_expired_in_forwarding_and_by_the_icmp_answer():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-t mangle -A PREROUTING -i docker0 -j TTL --ttl-set 1"]
    hops = to_client(L, lambda p: [drop("IP_INHDR", pkt(p.src, p.dst, ttl=1), 200,
                                        "ip_forward+0x2c0")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.TTL_EXPIRED
    assert d.fixes[0].docker == ["iptables -t mangle -D PREROUTING -i docker0 -j TTL --ttl-set 1"]
    # delivered (somewhere) but answered by ICMP time exceeded
    p = pkt("172.17.0.2", CLIENT_IP)
    te = Hop(500, "nf:LOCAL_OUT", host="host", netns="nt.t.host", device="docker0",
             hook="LOCAL_OUT", verdict="accept", packet=pkt("172.17.0.1", "172.17.0.2",
                                                             info="time-exceeded"),
             frame=icmp_frame(11, 0))
    req = out(L, "c1", p, 0) + [nf("LOCAL_IN", p, 300, in_dev="eth0", netns="nt.t.client",
                                   host=None, sandbox="client")]
    assert diagnose(path(L, "c1", "client", req, [te]), L).cause == Cause.TTL_EXPIRED


def test_rp_filter_drop_sets_loose_mode_on_the_keys_the_lab_set():
    L = bridge_lab()
    L.hosts["host"].sysctls = {"net.ipv4.conf.all.rp_filter": "1"}
    hops = to_client(L, lambda p: [drop("IP_RPFILTER", p, 200, "ip_rcv_finish_core+0x1b0")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.RP_FILTER and "172.17.0.2" in d.summary
    assert d.fixes[0].docker == ["sysctl -w net.ipv4.conf.all.rp_filter=2"]


def test_packet_too_big_and_frag_needed_answer_are_mtu_blackholes():
    L = bridge_lab()
    L.underlay_mtu = 1400
    big = pkt("172.17.0.2", CLIENT_IP, length=1450)
    hops = out(L, "c1", big, 0) + [drop("PKT_TOO_BIG", big, 200, "ip_forward+0x2c0")]
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.MTU_BLACKHOLE
    assert "1450-byte" in d.summary and "underlay 1400" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, "underlay.mtu", 1500)]
    assert d.fixes[0].docker == ["ip link set dev eth0 mtu 1500"]
    assert d.fixes[1].docker == ["dockerd --mtu 1400"]          # the default bridge: a daemon option
    fn = Hop(500, "tp:netif_receive_skb", sandbox="c1", host="host", netns="nt.t.host.c1",
             device="eth0", packet=pkt("172.17.0.1", "172.17.0.2", info="dest-unreach"),
             frame=icmp_frame(3, 4))
    req = out(L, "c1", big, 0) + [nf("LOCAL_IN", big, 300, in_dev="eth0", netns="nt.t.client",
                                     host=None, sandbox="client")]
    assert diagnose(path(L, "c1", "client", req, [fn]), L).cause == Cause.MTU_BLACKHOLE


def test_overlay_path_mtu_is_the_underlay_less_vxlan():
    from nettrace.topology.model import Endpoint, Network, Sandbox, Scope
    L = lab(containers={})
    L.underlay_mtu = 1400
    L.hosts["host2"] = Host("host2", "nt.t.host2", "eth0", "192.168.50.12")
    L.networks.append(Network("ovnet", "overlay", Scope.SWARM, "o" * 64, None, "10.0.1.0/24",
                              "10.0.1.1", "br0", None, mtu=1450))
    for name, host, ip in (("c1", "host", "10.0.1.2"), ("c2", "host2", "10.0.1.3")):
        L.sandboxes[name] = Sandbox(name, host, f"nt.t.{host}.{name}", [Endpoint(
            f"{name}-ovnet", name, "ovnet", "eth0", "02:42:0a:00:01:02", ip, 24, 1450)])
    big = pkt("10.0.1.2", "10.0.1.3", length=1450)
    hops = out(L, "c1", big, 0)
    fn = Hop(500, "tp:netif_receive_skb", sandbox="c1", host="host", netns="nt.t.host.c1",
             device="eth0", packet=pkt("10.0.1.3", "10.0.1.2", info="dest-unreach"),
             frame=icmp_frame(3, 4))
    d = diagnose(path(L, "c1", "c2", hops, [fn], dst_ip="10.0.1.3"), L)
    assert d.cause == Cause.MTU_BLACKHOLE
    assert "underlay (1400 less VXLAN's 50) 1350" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, "underlay.mtu", 1500)]
    # Docker's overlay subtracts VXLAN's 50 bytes from its mtu option: the option that gives
    # containers the path MTU of 1350 is 1400 (moby overlay maxMTU)
    assert d.fixes[1].lab == [LabEdit(EditOp.SET, "networks[name=ovnet].mtu", 1400)]
    assert any("com.docker.network.driver.mtu=1400" in c for c in d.fixes[1].docker)


def test_user_network_mtu_fix_recreates_the_network():
    L = lab(("big", "10.40.0", True, False), containers={"c1": ["big"]})
    L.network("big").mtu = 9000
    p = pkt("10.40.0.2", CLIENT_IP, length=3000)
    hops = out(L, "c1", p, 0) + [rx("vethc10", p, 100), drop("PKT_TOO_BIG", p, 200, "ip_forward+0x2c0")]
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.MTU_BLACKHOLE
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, "networks[name=big].mtu", 1500)]
    assert "-o com.docker.network.driver.mtu=1500" in " ".join(d.fixes[0].docker)


def test_no_route_between_hosts_offers_an_overlay():
    L = lab(containers={"a1": ["bridge"]})
    L.hosts["host2"] = Host("host2", "nt.t.host2", "eth0", "192.168.50.12")
    from nettrace.topology.model import Endpoint, Network, Sandbox, Scope
    L.networks.append(Network("bridge", "bridge", Scope.LOCAL, "c" * 64, "host2", "172.18.0.0/16",
                              "172.18.0.1", "docker0", "nt.t.host2"))
    L.sandboxes["b1"] = Sandbox("b1", "host2", "nt.t.host2.b1", [Endpoint(
        "b1-bridge", "b1", "bridge", "eth0", "02:42:00:00:00:09", "172.18.0.2", 16, 1500)])
    p = pkt("172.17.0.2", "172.18.0.2")
    hops = out(L, "a1", p, 0) + [drop("IP_INNOROUTES", p, 200, "ip_error+0x94", host="host")]
    d = diagnose(path(L, "a1", "b1", hops), L)
    assert d.cause == Cause.NO_ROUTE
    assert "host host" in d.summary and "host host2" in d.summary
    assert d.fixes[0].lab[0] == LabEdit(EditOp.ADD, "networks", {"name": "shared", "driver": "overlay"})


def test_arp_gave_up_and_macvlan_parent_isolation():
    L = bridge_lab()
    p = pkt("172.17.0.2", "172.17.0.99")
    hops = out(L, "c1", p, 0)[:2] + [
        Hop(100, "consume", sandbox="c1", host="host", netns="nt.t.host.c1", device="eth0",
            packet=p, location="__neigh_event_send+0x236"),
        Hop(3_000_000, "consume", sandbox="c1", host="host", netns="nt.t.host.c1",
            device="eth0", packet=p, location="neigh_timer_handler+0x84")]
    d = diagnose(path(L, "c1", "172.17.0.99", hops), L)
    assert d.cause == Cause.ARP_UNRESOLVED and "172.17.0.99" in d.summary

    M = lab(("mvnet", "192.168.60", True, False, "macvlan"), containers={"m1": ["mvnet"]})
    refused = Path(M.name, "host", "m1", "icmp", fingerprint={"dst": "192.168.60.2"},
                   verdict=Verdict(DROPPED, where="host", reason="no route to 192.168.60.2 in "
                                   "the sender's namespace (sendto: Network is unreachable)"))
    d = diagnose(refused, M)
    assert d.cause == Cause.MACVLAN_HOST_ISOLATION
    assert "macvlan network mvnet" in d.summary and "Network is unreachable" in d.summary
    assert d.fixes[1].lab == [LabEdit(EditOp.ADD, "containers[name=m1].networks", "bridge")]


# -- rules ---------------------------------------------------------------------------------

def test_docker_user_rule_found_through_the_rule_index():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-I DOCKER-USER -i docker0 -p icmp -j DROP"]
    L.rules.append(FwRule("host", "ip", "filter", "FORWARD", 8, 1, "-A FORWARD -j DOCKER-USER",
                          RulePurpose.DOCKER_USER))
    L.rules.append(FwRule("host", "ip", "filter", "DOCKER-USER", 18, 2, "-A DOCKER-USER -j RETURN",
                          RulePurpose.DOCKER_USER))
    r = indexed(L, "host", "DOCKER-USER", 19, RulePurpose.USER_FIREWALL,
                "-A DOCKER-USER -i docker0 -p icmp -j DROP")
    hops = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0",
                                      verdict_="drop", rule=r),
                                   drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.DOCKER_USER_RULE
    assert "DOCKER-USER rule 1: -A DOCKER-USER -i docker0 -p icmp -j DROP" in d.summary
    assert d.fixes[0].docker == ["iptables -D DOCKER-USER -i docker0 -p icmp -j DROP"]
    assert d.fixes[0].lab == [LabEdit(EditOp.REMOVE, "hosts[name=host].firewall",
                                      "-I DOCKER-USER -i docker0 -p icmp -j DROP")]


def test_user_rule_in_forward_itself_is_host_firewall_forward():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-I FORWARD -i docker0 -o eth0 -j DROP"]
    r = indexed(L, "host", "FORWARD", 30, RulePurpose.USER_FIREWALL,
                "-A FORWARD -i docker0 -o eth0 -j DROP")
    hops = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0",
                                      verdict_="drop", rule=r),
                                   drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.HOST_FIREWALL_FORWARD
    assert d.fixes[-1].docker == ["iptables -D FORWARD -i docker0 -o eth0 -j DROP"]


def test_input_policy_drop_is_host_firewall_input_with_an_allow_fix():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-P INPUT DROP"]
    p = pkt("172.17.0.2", HOST_IP, "tcp", 40000, 5432)
    hops = out(L, "c1", p, 0) + [
        nf("LOCAL_IN", p, 200, in_dev="docker0", verdict_="drop",
           rule=rule("filter", "INPUT", "policy drop", "drop")),
        drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "c1", "host:5432", hops, proto="tcp", dport=5432, dst_ip=HOST_IP), L)
    assert d.cause == Cause.HOST_FIREWALL_INPUT
    assert d.fixes[0].docker == ["iptables -I INPUT -i docker0 -p tcp --dport 5432 -j ACCEPT"]
    assert d.fixes[1].docker == ["iptables -P INPUT ACCEPT"]


def test_forward_policy_drop_offers_publishing_and_a_docker_user_accept():
    L = bridge_lab()
    p = pkt(CLIENT_IP, "172.17.0.3", "tcp", 40000, 80)
    hops = [rx("eth0", p, 100),
            nf("FORWARD", p, 200, in_dev="eth0", out_dev="docker0", verdict_="drop",
               rule=rule("filter", "FORWARD", "policy drop", "drop")),
            drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "client", "web:80", hops, proto="tcp", dport=80, dst_ip="172.17.0.3"), L)
    assert d.cause == Cause.FORWARD_POLICY and "policy DROP" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=web].publish", "80:80/tcp")]
    assert d.fixes[1].docker == ["iptables -I DOCKER-USER -d 172.17.0.3 -j ACCEPT"]


def test_direct_access_drop_from_the_index_purpose():
    L = bridge_lab()
    r = indexed(L, "host", "PREROUTING", 40, RulePurpose.DIRECT_ACCESS,
                "-A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP", table="raw")
    p = pkt(CLIENT_IP, "172.17.0.3", "tcp", 40000, 80)
    hops = [rx("eth0", p, 100),
            nf("PRE_ROUTING", p, 110, in_dev="eth0", verdict_="drop", rule=r),
            drop("NETFILTER_DROP", p, 120, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "client", "172.17.0.3:80", hops, proto="tcp", dport=80,
                      dst_ip="172.17.0.3"), L)
    assert d.cause == Cause.DIRECT_ACCESS_BLOCKED and "Docker 28" in d.summary
    # the default bridge cannot be redefined in a lab file: its gateway mode is a daemon option
    assert d.fixes == [Fix([("dockerd --default-network-opt bridge="
                             "com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected")], [])]
    U = lab(("apps", "10.40.0", True, False), containers={"web": ["apps"]})
    r = indexed(U, "host", "PREROUTING", 41, RulePurpose.DIRECT_ACCESS,
                "-A PREROUTING -d 10.40.0.2/32 ! -i br-apps -j DROP", table="raw")
    p = pkt(CLIENT_IP, "10.40.0.2", "tcp", 40000, 80)
    hops = [rx("eth0", p, 100), nf("PRE_ROUTING", p, 110, in_dev="eth0", verdict_="drop", rule=r),
            drop("NETFILTER_DROP", p, 120, "nft_do_chain+0x46f")]
    d = diagnose(path(U, "client", "10.40.0.2:80", hops, proto="tcp", dport=80,
                      dst_ip="10.40.0.2"), U)
    assert d.fixes[0].lab == [LabEdit(EditOp.SET, "networks[name=apps].gateway_mode",
                                      "nat-unprotected")]
    assert "-o com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected" in \
        " ".join(d.fixes[0].docker)


def test_unpublished_port_drop_from_the_index_purpose():
    L = bridge_lab()
    r = indexed(L, "host", "DOCKER", 41, RulePurpose.UNPUBLISHED_PORT_DROP,
                "-A DOCKER ! -i docker0 -o docker0 -j DROP")
    p = pkt(CLIENT_IP, "172.17.0.3", "tcp", 40000, 81)
    hops = [rx("eth0", p, 100), nf("FORWARD", p, 200, in_dev="eth0", out_dev="docker0",
                                   verdict_="drop", rule=r),
            drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "client", "172.17.0.3:81", hops, proto="tcp", dport=81,
                      dst_ip="172.17.0.3"), L)
    assert d.cause == Cause.PORT_NOT_PUBLISHED and "tcp/81" in d.summary


def test_vxlan_outer_packet_dropped_without_a_traced_rule():
    L = lab(containers={"c1": ["bridge"]})
    L.hosts["host2"] = Host("host2", "nt.t.host2", "eth0", "192.168.50.12",
                            firewall=["-I INPUT -p udp --dport 4789 -j DROP"])
    outer = pkt(HOST_IP, "192.168.50.12", "udp", 40000, 4789)
    inner = pkt("10.0.1.2", "10.0.1.3", outer=outer)
    hops = out(L, "c1", inner, 0) + [
        nf("LOCAL_IN", inner, 300, in_dev="eth0", verdict_="drop", netns="nt.t.host2",
           host="host2"),
        drop("NETFILTER_DROP", inner, 310, "nft_do_chain+0x46f", netns="nt.t.host2", host="host2")]
    d = diagnose(path(L, "c1", "10.0.1.3", hops), L)
    assert d.cause == Cause.VXLAN_BLOCKED and "from 192.168.50.11 to 192.168.50.12" in d.summary
    assert d.fixes[0].docker == ["iptables -D INPUT -p udp --dport 4789 -j DROP"]


def test_netfilter_drop_without_a_rule_is_unknown_and_says_why():
    L = bridge_lab()
    hops = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0",
                                      verdict_="drop"),
                                   drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.UNKNOWN and "rule was not traced" in d.summary
    assert d.summary.startswith("Cannot tell") and d.fixes == []


# -- two causes in sequence: the request passes, the reply does not --------------------------

def test_reply_dropped_as_invalid_after_a_fine_request():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-I DOCKER-USER -m conntrack --ctstate INVALID -j DROP"]
    r = indexed(L, "host", "DOCKER-USER", 50, RulePurpose.USER_FIREWALL,
                "-A DOCKER-USER -m conntrack --ctstate INVALID -j DROP")
    web = L.sandboxes["web"].netns
    syn = pkt("172.17.0.2", "172.17.0.3", "tcp", 40000, 80)
    req = out(L, "c1", syn, 0) + [rx("eth0", syn, 200, netns=web, sandbox="web"),
                                  nf("LOCAL_IN", syn, 210, in_dev="eth0", netns=web, sandbox="web")]
    sa = pkt("172.17.0.3", "172.17.0.2", "tcp", 80, 40000, info="SYN-ACK")
    rep = [nf("LOCAL_OUT", sa, 300, out_dev="eth0", netns=web, sandbox="web"),
           rx("vethweb0", sa, 310),
           nf("FORWARD", sa, 320, in_dev="docker0", out_dev="docker0", verdict_="drop", rule=r),
           drop("NETFILTER_DROP", sa, 330, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "c1", "web", req, rep, proto="tcp", dport=80, answered="SYN-ACK",
                      dst_ip="172.17.0.3"), L)
    assert d.cause == Cause.CONNTRACK_INVALID
    assert d.summary.startswith("The request reached container web, but its reply")
    assert d.evidence == [len(req) + 2] and "reply hop 3" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.REMOVE, "hosts[name=host].firewall",
                                      "-I DOCKER-USER -m conntrack --ctstate INVALID -j DROP")]


def test_hairpin_answer_not_un_dnatted():
    L = bridge_lab()
    L.hosts["host"].sysctls = {"net.bridge.bridge-nf-call-iptables": "0"}
    web, c1 = L.sandboxes["web"].netns, L.sandboxes["c1"].netns
    syn = pkt("172.17.0.2", HOST_IP, "tcp", 40000, 8080)
    dn = pkt("172.17.0.2", "172.17.0.3", "tcp", 40000, 80)
    req = out(L, "c1", syn, 0) + [
        nf("PRE_ROUTING", dn, 200, in_dev="docker0",
           changes=[f"dst {HOST_IP}:8080 -> 172.17.0.3:80 (DNAT)"]),
        nf("FORWARD", dn, 210, in_dev="docker0", out_dev="docker0"),
        rx("eth0", dn, 220, netns=web, sandbox="web"),
        nf("LOCAL_IN", dn, 230, in_dev="eth0", netns=web, sandbox="web")]
    sa = pkt("172.17.0.3", "172.17.0.2", "tcp", 80, 40000, info="SYN-ACK")
    rep = [nf("LOCAL_OUT", sa, 300, out_dev="eth0", netns=web, sandbox="web"),
           rx("eth0", sa, 310, netns=c1, sandbox="c1"),
           nf("LOCAL_IN", sa, 320, in_dev="eth0", netns=c1, sandbox="c1"),
           drop("NO_SOCKET", sa, 330, "tcp_v4_rcv+0x99", netns=c1, sandbox="c1")]
    d = diagnose(path(L, "c1", "host:8080", req, rep, proto="tcp", dport=8080,
                      answered="SYN-ACK", dst_ip=HOST_IP), L)
    assert d.cause == Cause.HAIRPIN
    assert "bridge-nf-call-iptables=0" in d.summary and "172.17.0.3:80" in d.summary
    assert d.fixes[0].docker[-1] == "sysctl -w net.bridge.bridge-nf-call-iptables=1"


def test_bridge_netfilter_off_explains_a_drop_that_did_not_happen():
    L = lab(("noicc", "10.96.0", False, False), containers={"c1": ["noicc"], "c2": ["noicc"]})
    L.hosts["host"].sysctls = {"net.bridge.bridge-nf-call-iptables": "0"}
    c2 = L.sandboxes["c2"].netns
    br = L.network("noicc").device
    p = pkt("10.96.0.2", "10.96.0.3")
    req = out(L, "c1", p, 0) + [rx("vethc10", p, 130), rx(br, p, 140),
                                rx("eth0", p, 150, netns=c2, sandbox="c2"),
                                nf("LOCAL_IN", p, 160, in_dev="eth0", netns=c2, sandbox="c2")]
    er = pkt("10.96.0.3", "10.96.0.2", info="echo-reply")
    rep = [nf("LOCAL_OUT", er, 200, out_dev="eth0", netns=c2, sandbox="c2"),
           nf("LOCAL_IN", er, 220, in_dev="eth0", netns=L.sandboxes["c1"].netns, sandbox="c1")]
    d = diagnose(path(L, "c1", "c2", req, rep, answered="echo-reply"), L)
    assert d.cause == Cause.BRIDGE_NETFILTER_DISABLED
    assert "ICC off" in d.summary and d.evidence == [4]
    assert d.fixes[0].lab == [LabEdit(EditOp.SET,
                                      'hosts[name=host].sysctls["net.bridge.bridge-nf-call-iptables"]', 1)]


def test_udp_port_unreachable_is_no_listener():
    L = bridge_lab()
    web = L.sandboxes["web"].netns
    p = pkt("172.17.0.2", "172.17.0.3", "udp", 40000, 53, info=None)
    req = out(L, "c1", p, 0) + [nf("LOCAL_IN", p, 200, in_dev="eth0", netns=web, sandbox="web")]
    un = Hop(300, "nf:LOCAL_OUT", sandbox="web", host="host", netns=web, device="eth0",
             hook="LOCAL_OUT", verdict="accept",
             packet=pkt("172.17.0.3", "172.17.0.2", info="dest-unreach"), frame=icmp_frame(3, 3))
    d = diagnose(path(L, "c1", "web", req, [un], proto="udp", dport=53,
                      answered="dest-unreach", dst_ip="172.17.0.3"), L)
    assert d.cause == Cause.NO_LISTENER and "ICMP port unreachable" in d.summary
    assert d.fixes[0].lab == [LabEdit(EditOp.ADD, "containers[name=web].listen", "udp/53")]


def test_ok_names_the_rule_that_let_it_through():
    L = bridge_lab()
    r = indexed(L, "host", "FORWARD", 12, RulePurpose.OUTGOING,
                "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT", network="bridge")
    r.verdict = "accept"
    p = pkt("172.17.0.2", CLIENT_IP)
    req = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0", rule=r),
                                  nf("LOCAL_IN", p, 300, in_dev="eth0", netns="nt.t.client",
                                     host=None, sandbox="client")], p=p)
    rep = [nf("LOCAL_OUT", pkt(CLIENT_IP, "172.17.0.2", info="echo-reply"), 400,
              netns="nt.t.client", host=None, sandbox="client", out_dev="eth0"),
           nf("LOCAL_IN", pkt(CLIENT_IP, "172.17.0.2", info="echo-reply"), 500,
              netns="nt.t.host.c1", sandbox="c1", in_dev="eth0")]
    d = diagnose(path(L, "c1", "client", req, rep, answered="echo-reply"), L)
    assert d.cause == Cause.OK
    assert "FORWARD rule 1: -A FORWARD -i docker0 ! -o docker0 -j ACCEPT" in d.summary
    assert "let it through at hop 6" in d.summary and d.fixes == []


# -- reasoning from evidence, never from names ----------------------------------------------

def test_names_that_lie_do_not_change_the_cause():
    """A network called `internal` that is not internal, in a lab called icc-off whose
    description talks of ICC: an isolation drop is still network-isolation."""
    L = lab(("internal", "10.10.0", True, False), ("icc", "10.20.0", True, False),
            containers={"internal-client": ["internal"], "noicc": ["icc"]}, name="icc-off")
    a, b = L.network("internal").device, L.network("icc").device
    p = pkt("10.10.0.2", "10.20.0.2")
    hops = out(L, "internal-client", p, 0) + [
        rx(a, p, 140),
        nf("FORWARD", p, 200, in_dev=a, out_dev=b, verdict_="drop",
           rule=rule("filter", "DOCKER-ISOLATION-STAGE-2", f'oifname "{b}" drop', "drop")),
        drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "internal-client", "noicc", hops), L)
    assert d.cause == Cause.NETWORK_ISOLATION
    assert d.fixes[0].docker == ["docker network connect icc internal-client"]


# -- fixes that must really work (cases from the fault catalogue's first runs) ---------------

def test_flushed_forward_chain_is_restored_not_patched():
    L = bridge_lab()
    L.hosts["host"].firewall = ["-F FORWARD"]
    hops = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0",
                                      verdict_="drop",
                                      rule=rule("filter", "FORWARD", "policy drop", "drop")),
                                   drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.FORWARD_POLICY and "iptables -F FORWARD" in d.summary
    assert [f.lab for f in d.fixes] == [[LabEdit(EditOp.REMOVE, "hosts[name=host].firewall",
                                                 "-F FORWARD")]]
    assert d.fixes[0].docker == ["systemctl restart docker"]


def test_internal_inbound_connects_the_internal_container_to_the_peer_network_only():
    L = lab(("vault", "10.97.1", True, True), containers={"secret": ["vault"], "c1": ["bridge"]})
    r = indexed(L, "host", "DOCKER-ISOLATION-STAGE-1", 60, RulePurpose.INTERNAL,
                "-A DOCKER-ISOLATION-STAGE-1 ! -s 10.97.1.0/24 -o br-vaul00000000 -j DROP",
                network="vault")
    p = pkt("172.17.0.2", "10.97.1.2")
    hops = out(L, "c1", p, 0) + [nf("FORWARD", p, 200, in_dev="docker0",
                                    out_dev=L.network("vault").device, verdict_="drop", rule=r),
                                 drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "c1", "secret", hops), L)
    assert d.cause == Cause.INTERNAL_NETWORK
    assert [f.lab for f in d.fixes] == [[LabEdit(EditOp.ADD, "containers[name=secret].networks",
                                                 "bridge")]]     # internal: false would not do


def test_ttl_loop_offers_to_remove_the_route_that_sends_a_hosts_own_network_away():
    L = lab(("svc", "10.60.0", True, False), containers={"web": ["svc"]})
    L.hosts["host2"] = Host("host2", "nt.t.host2", "eth0", "192.168.50.12",
                            routes=["10.60.0.0/24 via host"])
    L.hosts["host"].routes = ["10.60.0.0/25 via host2", "10.61.0.0/24 via host2"]
    p = pkt("10.61.0.2", "10.60.0.2", ttl=1)
    hops = [rx("eth0", p, 100), drop("IP_INHDR", p, 200, "ip_forward+0x2c0")]
    d = diagnose(path(L, "10.61.0.2", "10.60.0.2", hops, dst_ip="10.60.0.2"), L)
    assert d.cause == Cause.TTL_EXPIRED
    assert "Host host routes 10.60.0.0/25 via host2" in d.summary
    assert d.fixes == [Fix(["ip route del 10.60.0.0/25"], [LabEdit(
        EditOp.REMOVE, "hosts[name=host].routes", "10.60.0.0/25 via host2")])]


def test_port_published_on_loopback_only_is_not_published_for_the_lan():
    L = lab(containers={"web": ["bridge"]}, published={"web": ["127.0.0.1:8080:80/tcp"]})
    p1 = pkt(CLIENT_IP, HOST_IP, "tcp", 40000, 8080)
    hops = [rx("eth0", p1, 100), nf("LOCAL_IN", p1, 200, in_dev="eth0"),
            drop("NO_SOCKET", p1, 210, "tcp_v4_rcv+0x99")]
    rst = Hop(300, "nf:LOCAL_OUT", host="host", netns="nt.t.host", device="eth0",
              hook="LOCAL_OUT", verdict="accept",
              packet=pkt(HOST_IP, CLIENT_IP, "tcp", 8080, 40000, info="RST-ACK"))
    d = diagnose(path(L, "client", "host:8080", hops, [rst], proto="tcp", dport=8080,
                      answered="RST-ACK", dst_ip=HOST_IP), L)
    assert d.cause == Cause.PORT_NOT_PUBLISHED and "on 127.0.0.1 only" in d.summary
    assert d.fixes[0].lab[-1] == LabEdit(EditOp.ADD, "containers[name=web].publish", "8080:80/tcp")
    assert LabEdit(EditOp.REMOVE, "containers[name=web].publish",
                   "127.0.0.1:8080:80/tcp") in d.fixes[0].lab


def test_docker_user_drop_after_dnat_says_to_match_the_original_port():
    L = bridge_lab()
    r = indexed(L, "host", "DOCKER-USER", 70, RulePurpose.DOCKER_USER,
                "-A DOCKER-USER -i eth0 -j DROP")
    p1 = pkt(CLIENT_IP, HOST_IP, "tcp", 40000, 8080)
    p2 = pkt(CLIENT_IP, "172.17.0.3", "tcp", 40000, 80)
    hops = [rx("eth0", p1, 100),
            nf("PRE_ROUTING", p2, 110, in_dev="eth0",
               changes=[f"dst {HOST_IP}:8080 -> 172.17.0.3:80 (DNAT)"]),
            nf("FORWARD", p2, 200, in_dev="eth0", out_dev="docker0", verdict_="drop", rule=r),
            drop("NETFILTER_DROP", p2, 210, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "client", "host:8080", hops, proto="tcp", dport=8080, dst_ip=HOST_IP), L)
    assert d.cause == Cause.DOCKER_USER_RULE
    assert "--ctorigdstport 8080" in d.summary


def test_docker_28_raw_drop_between_local_networks_is_isolation():
    L = lab(("front", "10.10.0", True, False), ("back", "10.20.0", True, False),
            containers={"c1": ["front"], "c3": ["back"]})
    r = indexed(L, "host", "PREROUTING", 80, RulePurpose.DIRECT_ACCESS,
                f"-A PREROUTING -d 10.20.0.2/32 ! -i {L.network('back').device} -j DROP",
                table="raw")
    p = pkt("10.10.0.2", "10.20.0.2")
    hops = out(L, "c1", p, 0) + [nf("PRE_ROUTING", p, 150, in_dev=L.network("front").device,
                                    verdict_="drop", rule=r),
                                 drop("NETFILTER_DROP", p, 160, "nft_do_chain+0x46f")]
    d = diagnose(path(L, "c1", "c3", hops), L)
    assert d.cause == Cause.NETWORK_ISOLATION
    assert d.fixes[0].docker == ["docker network connect back c1"]


def test_nftables_backend_forward_policy_is_the_hosts_iptables_not_docker_user():
    from nettrace.topology.model import EngineProfile
    L = bridge_lab()
    L.engine = EngineProfile("29", "nftables")
    L.hosts["host"].firewall = ["-P FORWARD DROP"]
    hops = to_client(L, lambda p: [nf("FORWARD", p, 200, in_dev="docker0", out_dev="eth0",
                                      verdict_="drop",
                                      rule=rule("filter", "FORWARD", "policy drop", "drop")),
                                   drop("NETFILTER_DROP", p, 210, "nft_do_chain+0x46f")])
    d = diagnose(path(L, "c1", "client", hops), L)
    assert d.cause == Cause.FORWARD_POLICY and "nftables backend" in d.summary
    assert [f.lab for f in d.fixes] == [[LabEdit(EditOp.REMOVE, "hosts[name=host].firewall",
                                                 "-P FORWARD DROP")]]   # no DOCKER-USER there
    assert d.fixes[0].docker == ["iptables -P FORWARD ACCEPT"]
