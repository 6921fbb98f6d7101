"""Discovery of a real Docker engine into the CNM model (issue 6).

The engine (tests/conftest_docker.py) runs in its own namespace with every driver; each test
checks discovery's answer against what Docker's API and the kernel (iproute2's JSON, read
independently of discovery's pyroute2 code) say.
"""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from conftest import needs_root

pytest_plugins = ["conftest_docker"]
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def lab(docker_scenario):
    from nettrace.docker.discover import discover
    return discover(docker_scenario.engine.url)


def ip_links(ns: str) -> dict[str, dict]:
    """`ip -d -j link` in a namespace (name or path): iproute2's view, not discovery's."""
    from nettrace.topology import netns
    out = netns.run(ns, ["ip", "-d", "-j", "addr"]).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def test_every_container_and_endpoint_is_found(lab, docker_scenario):
    assert set(lab.sandboxes) == set(docker_scenario.containers)
    for name, expected in docker_scenario.containers.items():
        sb = lab.sandboxes[name]
        assert sorted(ep.network for ep in sb.endpoints
                      if ep.network != "docker_gwbridge") == sorted(e.network for e in expected)
        for want in expected:
            ep = next(e for e in sb.endpoints if e.network == want.network)
            net = lab.network(want.network)
            assert ipaddress.ip_address(ep.ipv4) in ipaddress.ip_network(net.subnet), ep
            if want.ipv4:
                assert ep.ipv4 == want.ipv4
            # Docker 20.10 derives container MACs from the address
            assert ep.mac == "02:42:" + ":".join(f"{int(b):02x}" for b in ep.ipv4.split("."))
            links = ip_links(sb.netns)
            assert links[ep.ifname]["address"] == ep.mac
            assert links[ep.ifname]["mtu"] == ep.mtu
            assert f"{ep.ipv4}/{ep.prefixlen}" in [
                f"{a['local']}/{a['prefixlen']}" for a in links[ep.ifname]["addr_info"]
                if a["family"] == "inet"]


def test_endpoint_ips_match_docker_api(lab, docker_scenario):
    client = docker_scenario.engine.client()
    for name, sb in lab.sandboxes.items():
        nets = client.containers.get(name).attrs["NetworkSettings"]["Networks"]
        for ep in sb.endpoints:
            if ep.network in nets:
                assert nets[ep.network]["IPAddress"] == ep.ipv4
                assert nets[ep.network]["MacAddress"] == ep.mac
    client.close()


def test_veth_peers_are_the_right_bridge_ports(lab):
    checked = 0
    for sb in lab.sandboxes.values():
        inside = ip_links(sb.netns) if sb.network_mode != "host" else {}
        for ep in sb.endpoints:
            net = lab.network(ep.network)
            if net.driver == "macvlan":
                assert ep.host_ifname is None
                parent = ip_links(net.netns)[net.device]           # child of the parent
                assert inside[ep.ifname]["link_index"] == parent["ifindex"]
                assert inside[ep.ifname]["linkinfo"]["info_kind"] == "macvlan"
                continue
            assert ep.host_ifname and ep.host_netns, ep
            host_side = ip_links(ep.host_netns)[ep.host_ifname]
            assert host_side["master"] == net.device               # docker0, br-<id>, br0
            # the veth pair, by index: each end's peer index is the other's index
            assert host_side["ifindex"] == inside[ep.ifname]["link_index"]
            assert inside[ep.ifname]["ifindex"] == host_side["link_index"]
            checked += 1
    assert checked >= 12


def test_roles_of_every_interface(lab):
    from nettrace.topology.model import Role
    roles = {(i.netns, i.ifname): i for i in lab.interfaces}
    host = next(iter(lab.hosts.values()))
    for net in lab.networks:
        if net.driver == "bridge":
            assert roles[(host.netns, net.device)].role is Role.BRIDGE
        if net.driver == "overlay":
            assert net.netns and os.path.basename(net.netns) == "1-" + net.id[:10]
            assert roles[(net.netns, "br0")].role is Role.BRIDGE
            assert roles[(net.netns, "vxlan0")].role is Role.VXLAN
            vxlan = ip_links(net.netns)["vxlan0"]["linkinfo"]["info_data"]
            assert vxlan["id"] == net.vni and vxlan["port"] == 4789
            assert net.mtu == 1450
        if net.driver == "macvlan":
            assert roles[(host.netns, "mvparent")].role is Role.MACVLAN_PARENT
    for sb in lab.sandboxes.values():
        for ep in sb.endpoints:
            itf = roles[(sb.netns, ep.ifname)]
            assert itf.role is Role.CONTAINER and itf.sandbox == sb.name
            assert itf.network == ep.network
            if ep.host_ifname:
                peer = roles[(ep.host_netns, ep.host_ifname)]
                assert peer.role is Role.VETH_HOST and peer.network == ep.network
                assert peer.peer == f"{sb.netns}/{ep.ifname}"
    # every kernel interface of dockerd's namespace is accounted for, with a role
    assert set(ip_links(host.netns)) == {i.ifname for i in lab.interfaces if i.netns == host.netns}


def test_networks_options_and_modes(lab, docker_scenario):
    assert not lab.network("noicc").icc and lab.network("unet").icc
    assert lab.network("internal").internal and not lab.network("internal").masquerade
    assert lab.network("bridge").device == "docker0"
    assert lab.network("bridge").gateway == "172.17.0.1"
    assert lab.network("unet").device == "br-" + lab.network("unet").id[:12]
    assert lab.network("mvnet").options["parent"] == "mvparent"
    assert lab.network("mvnet").options["mode"] == "bridge"
    assert lab.network("ovnet").scope.value == "swarm"
    assert lab.sandboxes["web"].published == ["8080:80/tcp"]
    host = next(iter(lab.hosts.values()))
    assert host.netns == docker_scenario.engine.netns
    assert lab.sandboxes["hostc"].netns == host.netns and lab.sandboxes["hostc"].endpoints == []
    lonely = lab.sandboxes["lonely"]
    assert lonely.network_mode == "none" and lonely.endpoints == [] and lonely.routes == []
    # overlay containers get docker_gwbridge as eth1 with the default route
    o1 = lab.sandboxes["o1"]
    assert [ep.network for ep in o1.endpoints] == ["ovnet", "docker_gwbridge"]
    assert o1.routes[0] == "default via 172.18.0.1 dev eth1"
    # routes are the kernel's (Docker 20.10 gives internal-network containers a default
    # route too: egress is stopped by the firewall, not by routing)
    from nettrace.topology import netns
    for name in ("i1", "u2", "m1"):
        sb = lab.sandboxes[name]
        kernel = json.loads(netns.run(sb.netns, ["ip", "-j", "-4", "route"]).stdout)
        assert len(kernel) == len(sb.routes)
        assert {r["dst"] for r in kernel} == {r.split()[0] for r in sb.routes}


def test_lab_round_trips_through_json(lab):
    from nettrace.topology.model import Lab
    again = Lab.from_dict(json.loads(json.dumps(lab.to_dict())))
    assert again.to_dict() == lab.to_dict()


def test_docker_host_from_environment(lab, docker_scenario, monkeypatch):
    from nettrace.docker.discover import discover
    monkeypatch.setenv("DOCKER_HOST", docker_scenario.engine.url)
    assert set(discover().sandboxes) == set(lab.sandboxes)


@needs_root          # discovery reads the engine's namespaces: it asks for root first
def test_unreachable_engine_is_a_clear_error(tmp_path):
    from nettrace.docker.discover import discover
    from nettrace.errors import NettraceError
    with pytest.raises(NettraceError, match="cannot reach the Docker engine at unix://"):
        discover(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(NettraceError, match="local unix socket"):
        from nettrace.docker.discover import daemon_pid
        daemon_pid("tcp://127.0.0.1:2375")


def test_engines_of_one_swarm_merge_into_one_lab():
    """Several engines (--docker A,B) are one lab; clashing container names are refused."""
    from nettrace.docker.discover import merge
    from nettrace.errors import NettraceError
    from nettrace.topology.model import Host, Lab, Sandbox
    a = Lab("docker", hosts={"ha": Host("ha", "nsa")}, sandboxes={"c1": Sandbox("c1", "ha", "/a")},
            namespaces=["nsa", "/a"], source="unix:///a.sock")
    b = Lab("docker", hosts={"hb": Host("hb", "nsb")}, sandboxes={"c2": Sandbox("c2", "hb", "/b")},
            namespaces=["nsb", "/b"], source="unix:///b.sock")
    lab = merge([a, b])
    assert set(lab.hosts) == {"ha", "hb"} and set(lab.sandboxes) == {"c1", "c2"}
    assert lab.namespaces == ["nsa", "/a", "nsb", "/b"]
    assert lab.source == "unix:///a.sock,unix:///b.sock"
    b.sandboxes["c1"] = Sandbox("c1", "hb", "/b2")
    with pytest.raises(NettraceError, match="container name.*c1 on two engines"):
        merge([a, b])
