"""Per driver, the reachability Docker's own integration tests assert (docker-drivers.md §14).

Real namespaces, links, rules and packets; each lab is shared by the tests of this module.
"""

from __future__ import annotations

import re

import pytest

from conftest import needs_root
from netutil import connect, peer_seen, ping, ping_error, serve_once
from nettrace.topology import firewall, netns

pytestmark = needs_root


def ns(lab, name):
    return lab.netns_of(name)


def test_bridge_same_network_reachable(labs):
    lab = labs("bridge")
    c1, c2 = lab.sandbox("c1"), lab.sandbox("c2")
    assert c1.ip() == "172.17.0.2" and c2.ip() == "172.17.0.3"
    assert ping(c1.netns, c2.ip())
    assert ping(c1.netns, "172.17.0.1"), "gateway (docker0) unreachable"
    host = lab.hosts["host"].netns
    assert netns.sysctl_read(host, "net.ipv4.ip_forward") == "1"
    assert netns.sysctl_read(host, "net.bridge.bridge-nf-call-iptables") == "1"
    links = netns.run(host, ["ip", "-br", "link"]).stdout
    assert re.search(r"^docker0\s", links, re.M)
    assert re.search(r"^veth[0-9a-f]{7}@", links, re.M), links
    addr = netns.run(c1.netns, ["ip", "-br", "addr", "show", "eth0"]).stdout
    assert "172.17.0.2/16" in addr
    mac = netns.run(c1.netns, ["ip", "-br", "link", "show", "eth0"]).stdout
    assert "02:42:ac:11:00:02" in mac
    assert "default via 172.17.0.1" in netns.run(c1.netns, ["ip", "route"]).stdout


def _lab(labs, name, engine):
    return labs(name) if engine == "29" else labs(name, as_name=f"{name}-v2010", engine=engine)


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_user_bridges_isolated(labs, engine):
    lab = _lab(labs, "user-bridges", engine)
    c1, c2, c3 = (lab.sandbox(n) for n in ("c1", "c2", "c3"))
    assert ping(c1.netns, c2.ip())
    assert not ping(c1.netns, c3.ip()), "different user-defined bridges must be isolated"
    assert not ping(c3.netns, c1.ip())
    front = lab.network("front")
    assert re.fullmatch(r"br-[0-9a-f]{12}", front.device)
    rules = firewall.dump(lab.hosts["host"].netns)
    if engine == "29":
        assert f"-A DOCKER ! -i {front.device} -o {front.device} -j DROP" in rules
        assert f"-A PREROUTING -d {c1.ip()}/32 ! -i {front.device} -j DROP" in rules
    else:
        assert f"-A DOCKER-ISOLATION-STAGE-2 -o {front.device} -j DROP" in rules
    # user-defined networks get the embedded DNS rules in the container
    dns = netns.run(c1.netns, ["iptables-save", "-t", "nat"]).stdout
    assert "-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT" in dns
    # Docker 29: after its header; 20.10: the first line
    assert "nameserver 127.0.0.11\n" in c1.resolv_conf


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_icc_off_blocks_containers_but_not_egress_or_published(labs, engine):
    lab = _lab(labs, "icc-off", engine)
    c1, c2 = lab.sandbox("c1"), lab.sandbox("c2")
    client = lab.clients["client"]
    assert not ping(c1.netns, c2.ip()), "ICC off must block container to container"
    assert ping(c1.netns, client.address), "egress must still work with ICC off"
    server = serve_once(c2.netns, "tcp", 80)
    assert connect(client.netns, "tcp", lab.hosts["host"].address, 8080) == "hello"
    assert peer_seen(server) == client.address
    net = lab.network("noicc")
    chain = {"29": "DOCKER-FORWARD", "20.10": "FORWARD"}[engine]
    assert f"-A {chain} -i {net.device} -o {net.device} -j DROP" in firewall.dump(
        lab.hosts["host"].netns)


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_internal_network_has_no_egress(labs, engine):
    lab = _lab(labs, "internal", engine)
    c1, c2 = lab.sandbox("c1"), lab.sandbox("c2")
    assert ping(c1.netns, c2.ip()), "peers on an internal network reach each other"
    assert ping(c1.netns, lab.network("internal").gateway), "gateway is reachable"
    routes = netns.run(c1.netns, ["ip", "route"]).stdout
    if engine == "29":
        assert "Network is unreachable" in ping_error(c1.netns, lab.clients["client"].address)
        assert "default" not in routes
    else:      # 20.10 routes an internal-only container via its gateway; the firewall drops
        assert "default via 10.97.0.1" in routes
        assert not ping(c1.netns, lab.clients["client"].address)
    rules = firewall.dump(lab.hosts["host"].netns)
    chain = {"29": "DOCKER-INTERNAL", "20.10": "DOCKER-ISOLATION-STAGE-1"}[engine]
    assert f"-A {chain} ! -s 10.97.0.0/24" in rules
    assert "-s 10.97.0.0/24 ! -o" not in rules


@pytest.mark.parametrize("engine", ["29", "20.10"])
def test_published_port_dnat_from_external_client(labs, engine):
    lab = _lab(labs, "published-port", engine)
    web, client, host = lab.sandbox("web"), lab.clients["client"], lab.hosts["host"]
    server = serve_once(web.netns, "tcp", 80)
    assert connect(client.netns, "tcp", host.address, 8080) == "hello"
    assert peer_seen(server) == client.address, "DNAT must keep the client's address"
    server = serve_once(web.netns, "udp", 53)
    assert connect(client.netns, "udp", host.address, 5353) == "hello"
    assert peer_seen(server) == client.address
    # hairpin: another container reaches the published port through the host address
    server = serve_once(web.netns, "tcp", 80)
    assert connect(lab.sandbox("c1").netns, "tcp", host.address, 8080) == "hello"
    peer_seen(server)
    # an unpublished port is not reachable from outside
    assert connect(client.netns, "tcp", host.address, 8081).startswith("error")


def test_egress_is_masqueraded(labs):
    lab = labs("published-port")
    client, host = lab.clients["client"], lab.hosts["host"]
    server = serve_once(client.netns, "tcp", 9000)
    assert connect(lab.sandbox("c1").netns, "tcp", client.address, 9000) == "hello"
    assert peer_seen(server) == host.address, "egress must leave with the host's address"


def test_macvlan_containers_reach_each_other(labs):
    lab = labs("macvlan")
    m1, m2 = lab.sandbox("m1"), lab.sandbox("m2")
    assert ping(m1.netns, m2.ip())
    detail = netns.run(m1.netns, ["ip", "-d", "link", "show", "eth0"]).stdout
    assert "macvlan mode bridge" in detail
    assert lab.network("mvnet").device == "eth0"     # parent: the host's uplink
    # In the container: only Docker's embedded-DNS NAT rules (user-defined network), no
    # filter table (Docker's isolation and forwarding rules live in the host).
    saved = firewall.dump(m1.netns)
    rules = [ln for ln in saved.splitlines() if ln.startswith("-A ")]
    assert rules and all("127.0.0.11" in r for r in rules), saved
    assert "*filter" not in saved.splitlines(), saved


def test_overlay_across_hosts_uses_vxlan(labs):
    lab = labs("overlay")
    c1, c2 = lab.sandbox("c1"), lab.sandbox("c2")
    assert c1.host == "host1" and c2.host == "host2"
    net = lab.network("ovnet")
    assert net.vni == 4096 and net.mtu == 1450 and net.subnet == "10.0.1.0/24"
    cap = netns.popen(lab.underlay_netns, ["tcpdump", "-i", "lan0", "-nn", "-v", "-c", "1",
                                           "-l", "udp", "port", "4789"],
                      stdout=__import__("subprocess").PIPE, stderr=__import__("subprocess").DEVNULL,
                      text=True)
    import time
    time.sleep(0.5)
    assert ping(c1.netns, c2.ip(), wait=2)
    out, _ = cap.communicate(timeout=5)
    assert "VXLAN" in out and "vni 4096" in out, out
    assert "192.168.50.11" in out and "192.168.50.12" in out
    eth0 = netns.run(c1.netns, ["ip", "-d", "link", "show", "eth0"]).stdout
    assert "mtu 1450" in eth0
    sbox = next(n for n in lab.namespaces if n.startswith(lab.hosts["host1"].netns + ".1-"))
    vx = netns.run(sbox, ["ip", "-d", "link", "show", "vxlan0"]).stdout
    assert "vxlan id 4096" in vx and "dstport 4789" in vx
    fdb = netns.run(sbox, ["bridge", "fdb", "show", "dev", "vxlan0"]).stdout
    assert f"dst {lab.hosts['host2'].address}" in fdb
    # egress through docker_gwbridge (eth1)
    assert "default via 172.18.0.1 dev eth1" in netns.run(c1.netns, ["ip", "route"]).stdout


def test_host_driver_sees_host_interfaces(labs):
    lab = labs("host")
    hostc = lab.sandbox("hostc")
    assert hostc.netns == lab.hosts["host"].netns
    links = netns.run(hostc.netns, ["ip", "-br", "link"]).stdout
    assert "docker0" in links and "eth0" in links


def test_none_has_only_lo(labs):
    lab = labs("none", as_name="drv-none")
    links = netns.run(lab.sandbox("lonely").netns, ["ip", "-br", "link"]).stdout.split("\n")
    assert [ln.split()[0] for ln in links if ln.strip()] == ["lo"]
    assert "UP" in links[0]


def test_embedded_dns_on_user_defined_networks(labs):
    from netutil import resolve
    lab = labs("user-bridges")
    c1 = lab.sandbox("c1")
    assert resolve(c1.netns, "c2") == lab.sandbox("c2").ip()
    assert resolve(c1.netns, "c2.front") == lab.sandbox("c2").ip()
    assert resolve(c1.netns, "c3") == "rcode=5", "a container on another network is not resolvable"
    # the default bridge has no embedded DNS
    assert labs("bridge").sandbox("c1").resolv_conf.find("127.0.0.11") == -1


def test_custom_lab_mtu_and_macvlan_on_a_veth_parent(make_lab):
    """Without an underlay, macvlan hangs off a veth end whose peer is up (no dummy here)."""
    lab = make_lab(text="""
networks:
  - name: small
    driver: bridge
    mtu: 1400
    icc: false
  - name: mv
    driver: macvlan
    subnet: 10.77.0.0/24
containers:
  - name: a
    networks: [small, mv]
  - name: b
    networks: [mv]
""", name="custom")
    a, b = lab.sandbox("a"), lab.sandbox("b")
    assert [e.ifname for e in a.endpoints] == ["eth0", "eth1"]
    assert "mtu 1400" in netns.run(a.netns, ["ip", "link", "show", "eth0"]).stdout
    veth = a.endpoints[0].host_ifname
    assert "mtu 1400" in netns.run(lab.hosts["host"].netns, ["ip", "link", "show", veth]).stdout
    assert lab.network("mv").device == "mvparent"
    assert ping(a.netns, b.ip("mv"))
    assert "default via 10.77.0.1 dev eth1" not in netns.run(a.netns, ["ip", "route"]).stdout
