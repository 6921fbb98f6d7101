"""IPv6 on a real Docker engine: discovery reads IPv6 networks and addresses, and
`nettrace path --docker -6` traces ICMPv6 between two real containers hop by hop."""

from __future__ import annotations

import ipaddress
import json

import pytest

from conftest import run_cli

pytest_plugins = ["conftest_docker"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_ipv6_network_discovered_and_traced(docker_engine):
    from docker.types import IPAMConfig, IPAMPool

    from nettrace.docker.discover import discover
    client = docker_engine.client()
    client.networks.create("v6net", driver="bridge", enable_ipv6=True, ipam=IPAMConfig(
        pool_configs=[IPAMPool(subnet="10.77.0.0/24"), IPAMPool(subnet="fd00:77::/64")]))
    client.close()
    for name in ("a6", "b6"):
        docker_engine.run(name, [("v6net", None)])
    lab = discover(docker_engine.url)
    net = lab.network("v6net")
    assert net.ipv6 and net.subnet_v6 == "fd00:77::/64" and net.gateway_v6 == "fd00:77::1"
    a6, b6 = lab.sandbox("a6"), lab.sandbox("b6")
    for sb in (a6, b6):               # the engine's own choice, read back from its API
        assert ipaddress.IPv6Address(sb.ip6()) in ipaddress.IPv6Network("fd00:77::/64")
        assert sb.endpoints[0].prefixlen6 == 64 and sb.ip().startswith("10.77.0.")
    proc = run_cli("path", "--docker", "a6", "b6", "-6", "--json",
                   env={"DOCKER_HOST": docker_engine.url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = json.loads(proc.stdout.splitlines()[0])
    assert path["verdict"]["kind"] == "delivered"
    assert path["verdict"]["reason"] == "answered: echo-reply"
    first = path["hops"][0]["packet"]
    assert (first["src"], first["dst"], first["proto"]) == (a6.ip6(), b6.ip6(), "ipv6-icmp")
    places = [(h["sandbox"] or h["host"], h["role"]) for h in path["hops"] if h["role"]]
    assert places[0] == ("a6", "container") and places[-1] == ("b6", "container")
    assert any(role == "bridge" for _, role in places)
    assert path["reply"] and path["reply"]["verdict"]["kind"] == "delivered"


def test_ipv6_fields_mapped_from_the_api():
    """The pure mapping, on API JSON shaped like the engine's (IPv6 network and endpoint)."""
    from nettrace.docker.discover import map_network, map_sandbox
    raw_net = {"Name": "v6net", "Id": "ab" * 32, "Driver": "bridge", "Scope": "local",
               "EnableIPv6": True, "Internal": False, "Options": {},
               "IPAM": {"Config": [{"Subnet": "fd00:77::/64", "Gateway": "fd00:77::1"},
                                   {"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]}}
    net = map_network(raw_net, host="host", host_ns="/run/ns", netns_dir="/run/netns")
    assert (net.subnet, net.gateway) == ("10.77.0.0/24", "10.77.0.1")
    assert (net.ipv6, net.subnet_v6, net.gateway_v6) == (True, "fd00:77::/64", "fd00:77::1")
    assert net.ipv4
    raw_ctr = {"Name": "/a6", "Id": "cd" * 32, "State": {"Running": True},
               "HostConfig": {"NetworkMode": "v6net"}, "Config": {"Hostname": "a6"},
               "NetworkSettings": {"SandboxKey": "/run/docker/netns/x", "Ports": {},
                                   "Networks": {"v6net": {
                                       "MacAddress": "02:42:0A:4D:00:02",
                                       "IPAddress": "10.77.0.2", "IPPrefixLen": 24,
                                       "GlobalIPv6Address": "fd00:77::2",
                                       "GlobalIPv6PrefixLen": 64, "NetworkID": "ab" * 32}}}}
    sb = map_sandbox(raw_ctr, {raw_net["Id"]: raw_net}, host="host", host_ns="/run/ns")
    (ep,) = sb.endpoints
    assert (ep.ipv4, ep.prefixlen, ep.ipv6, ep.prefixlen6) == ("10.77.0.2", 24, "fd00:77::2", 64)
    v6only = map_network({**raw_net, "EnableIPv4": False,
                          "IPAM": {"Config": [{"Subnet": "fd00:78::/64"}]}},
                         host="host", host_ns="/run/ns", netns_dir="/run/netns")
    assert not v6only.ipv4 and v6only.subnet is None and v6only.subnet_v6 == "fd00:78::/64"
