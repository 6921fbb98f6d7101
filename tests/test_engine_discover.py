"""Discovery's pure half, `--docker` on the command line, and what `lab diff` compares.

No engine needed: the API's answers are the JSON the real Docker 20.10 engine served
(tests/fixtures/docker/engine-20.10.json, recorded with tests/fixtures/docker/
recorded-facts.json: the /etc/hosts and routes the same engine wrote are the oracle for
addresses), and /info documents of newer engines hand-written from the API's schema
(moby api/types/system/info.go FirewallInfo; daemon/libnetwork/controller_linux.go).
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT, needs_root, run_cli
from nettrace.cli.common import legacy_docker_args, looks_like_engine
from nettrace.docker.diff import restrict
from nettrace.docker.discover import ApiSnapshot, engine_profile, from_api
from nettrace.topology.model import (EngineProfile, EngineVersion, FirewallBackend, GatewayMode,
                                     Lab)

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "docker")
with open(os.path.join(FIXTURES, "recorded-facts.json")) as _f:
    FACTS = json.load(_f)


@pytest.fixture(scope="module")
def snapshot() -> ApiSnapshot:
    return ApiSnapshot.load(os.path.join(FIXTURES, "engine-20.10.json"))


@pytest.fixture(scope="module")
def engine(snapshot) -> Lab:
    return from_api(snapshot, url="unix:///rec.sock", host="rec", host_ns="rec-ns",
                    netns_dir="/rec/exec/netns", userland_proxy=True)


def hosts_addresses(name: str) -> list[str]:
    """The container's addresses, from the /etc/hosts the engine wrote for it."""
    hostname = FACTS[name]["hostname"].strip()
    return [ln.split("\t")[0] for ln in FACTS[name]["hosts"].splitlines()
            if ln.endswith("\t" + hostname)]


def test_containers_and_addresses_are_the_engines(engine):
    assert set(engine.sandboxes) == {"web", "u1", "u2", "i1", "i2", "lo"}
    for name, sb in engine.sandboxes.items():
        assert sorted(ep.ipv4 for ep in sb.endpoints) == sorted(hosts_addresses(name)), name
        assert sb.hostname == FACTS[name]["hostname"].strip()
        assert all(ep.ifname == "?" for ep in sb.endpoints)      # the kernel pass names them
    assert engine.sandbox("u2").netns.startswith("/") and engine.sandbox("u2").network_mode == "unet"


def test_networks_and_options(engine):
    nets = {n.name: n for n in engine.networks}
    assert set(nets) == {"bridge", "host", "none", "unet", "inet", "rnet"}
    assert (nets["bridge"].device, nets["bridge"].subnet) == ("docker0", "172.17.0.0/16")
    assert nets["bridge"].gateway is None        # Docker chose it: read from the bridge later
    assert nets["inet"].internal and not nets["inet"].masquerade
    assert nets["inet"].subnet == "10.97.0.0/24"
    assert nets["rnet"].icc is False             # created with enable_icc "false"
    assert nets["unet"].device.startswith("br-") and nets["unet"].host == "rec"
    assert all(n.gateway_mode is GatewayMode.NAT for n in nets.values())


def test_published_ports_and_profile(engine):
    assert engine.sandbox("web").published == ["8080:80/tcp"]
    assert engine.sandbox("lo").published == ["127.0.0.1:8081:81/udp"]
    assert engine.engine == EngineProfile("20.10", "iptables", True)


def info(version: str, backend: dict | None) -> ApiSnapshot:
    body = {"ServerVersion": version}
    if backend is not None:
        body["FirewallBackend"] = backend
    return ApiSnapshot({"Version": version}, body, [], [])


def test_engine_profile_from_info():
    assert engine_profile(info("20.10.24+dfsg1", None)) == EngineProfile("20.10", "iptables")
    assert engine_profile(info("20.10.24", None), userland_proxy=False).userland_proxy is False
    p = engine_profile(info("29.1.2", {"Driver": "nftables"}))
    assert (p.version, p.firewall) == (EngineVersion.V29, FirewallBackend.NFTABLES)
    p = engine_profile(info("28.3.0", {"Driver": "iptables+firewalld",
                                       "Info": [["ReloadedAt", "2025-01-01T00:00:00Z"]]}))
    assert (p.version, p.firewall, p.userland_proxy) == (EngineVersion.V29,
                                                         FirewallBackend.IPTABLES, True)
    # from 29.5 /info lists the userland proxy when it is on: absent means off
    on = engine_profile(info("29.5.0", {"Driver": "iptables",
                                        "Info": [["EnableUserlandProxy", "true"]]}))
    off = engine_profile(info("29.5.0", {"Driver": "iptables"}), userland_proxy=True)
    assert (on.userland_proxy, off.userland_proxy) == (True, False)
    from nettrace.errors import NettraceError
    with pytest.raises(NettraceError, match="no usable version"):
        engine_profile(info("", None))


def declared_lab() -> Lab:
    """A lab declaring u1 and u2 on networks it calls front and back (the engine's unet and
    inet), on a busy engine that also runs web, i1, i2, lo and rnet."""
    from nettrace.topology.model import Endpoint, Host, Network, Sandbox, Scope
    lab = Lab(name="mine", engine=EngineProfile("20.10"))
    lab.hosts["host"] = Host(name="host", netns="lab-ns")
    for name, device, internal in (("bridge", "docker0", False), ("front", "br-front", False),
                                   ("back", "br-back", True)):
        lab.networks.append(Network(name=name, driver="bridge", scope=Scope.LOCAL, id=name,
                                    host="host", device=device, internal=internal))
    lab.sandboxes["u1"] = Sandbox("u1", "host", "u1-ns", endpoints=[
        Endpoint("u1-front", "u1", "front", "eth0", "m", "10.10.0.2", 24, 1500)])
    lab.sandboxes["u2"] = Sandbox("u2", "host", "u2-ns", endpoints=[
        Endpoint("u2-front", "u2", "front", "eth0", "m", "10.10.0.3", 24, 1500),
        Endpoint("u2-back", "u2", "back", "eth1", "m", "10.97.0.2", 24, 1500)])
    return lab


def test_diff_keeps_only_what_the_lab_declares_matched_by_membership(engine):
    view, foreign = restrict(engine, declared_lab(), "host")
    assert set(view.sandboxes) == {"u1", "u2"}
    nets = {n.name: n for n in view.networks}
    assert set(nets) == {"bridge", "front", "back"}          # the lab's names
    assert nets["front"].subnet == "172.18.0.0/16"           # the engine's unet ...
    assert nets["back"].subnet == "10.97.0.0/24"             # ... and inet, by membership
    assert {ep.network for ep in view.sandbox("u2").endpoints} == {"front", "back"}
    rnet = next(n for n in engine.networks if n.name == "rnet")
    # the engine's other network and containers are named so their rules and links are skipped
    assert {rnet.device, rnet.subnet, "172.17.0.2", "172.18.0.4", "10.97.0.10",
            "10.97.0.11", "172.19.0.2"} <= foreign
    assert "172.18.0.2" not in foreign and "docker0" not in foreign


def test_firewall_lines_of_other_objects_are_left_out(engine):
    """The recorded engine's rules, filtered with what `restrict` names: nothing of rnet,
    web or lo is left; every rule of the declared networks is."""
    from nettrace.docker.diff import mentions
    _, foreign = restrict(engine, declared_lab(), "host")
    pattern = mentions(foreign)
    rnet = next(n for n in engine.networks if n.name == "rnet").device
    unet = next(n for n in engine.networks if n.name == "unet").device
    lines = FACTS["iptables_save"].splitlines()
    kept = [ln for ln in lines if not pattern.search(ln)]
    assert not [ln for ln in kept if rnet in ln or "172.17.0.2" in ln or "172.18.0.4" in ln]
    assert [ln for ln in lines if unet in ln and "172.18.0.4" not in ln] == \
        [ln for ln in kept if unet in ln]


def test_legacy_docker_url_form_is_rewritten_only_when_unambiguous():
    assert legacy_docker_args(["path", "--docker", "c1", "c2"]) == ["path", "--docker", "c1", "c2"]
    assert legacy_docker_args(["path", "--docker", "unix:///x.sock", "c1", "c2"]) == \
        ["path", "--docker", "--docker-host", "unix:///x.sock", "c1", "c2"]
    assert legacy_docker_args(["lab", "diff", "b", "--docker=/run/d.sock"]) == \
        ["lab", "diff", "b", "--docker", "--docker-host", "/run/d.sock"]
    assert legacy_docker_args(["lab", "exec", "l", "c", "--", "x", "--docker", "/a"]) == \
        ["lab", "exec", "l", "c", "--", "x", "--docker", "/a"]
    assert looks_like_engine("unix:///a.sock,unix:///b.sock")
    assert not looks_like_engine("c1") and not looks_like_engine("")


@needs_root
def test_cli_path_docker_does_not_swallow_the_source(tmp_path):
    sock = f"unix://{tmp_path}/absent.sock"
    for args, env in ((["path", "--docker", "c1", "c2"], {"DOCKER_HOST": sock}),
                      (["path", "c1", "c2", "--docker", "--docker-host", sock], {}),
                      (["path", "--docker", sock, "c1", "c2"], {})):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, proc.stderr
        assert f"cannot reach the Docker engine at {sock}" in proc.stderr, args
        assert "Traceback" not in proc.stderr
    proc = run_cli("path", "c1", "c2")
    assert proc.returncode == 2 and "expected LAB SRC DST" in proc.stderr


def test_docker_string_options_and_gateway_modes_are_mapped():
    """A network inspection as the API returns it (options are strings, as Docker stores
    them): ParseBool strings, gateway mode, host_ipv4."""
    from nettrace.docker.discover import map_network
    raw = {"Name": "gw", "Id": "ab" * 32, "Driver": "bridge", "Scope": "local", "Internal": False,
           "IPAM": {"Config": [{"Subnet": "10.66.0.0/24", "Gateway": "10.66.0.1"}]},
           "Options": {"com.docker.network.bridge.gateway_mode_ipv4": "nat-unprotected",
                       "com.docker.network.host_ipv4": "192.0.2.1",
                       "com.docker.network.bridge.enable_icc": "0",
                       "com.docker.network.bridge.enable_ip_masquerade": "False",
                       "com.docker.network.driver.mtu": "1400"}}
    net = map_network(raw, host="h", host_ns="ns", netns_dir="/d")
    assert (net.gateway_mode, net.host_ipv4, net.icc, net.masquerade, net.mtu) == (
        GatewayMode.NAT_UNPROTECTED, "192.0.2.1", False, False, 1400)
    assert (net.device, net.gateway) == ("br-abababababab", "10.66.0.1")
