"""The `engine:` block, gateway modes, host_ipv4, host-IP publishing and Docker's string options.

Pure parsing (no root): every accepted form lands on the spec/model, every bad one names
file, line and field. The expectations are Docker's own: strconv.ParseBool's strings, the
gateway modes of `docker network create -o com.docker.network.bridge.gateway_mode_ipv4`, and
`docker run -p` forms.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import needs_root, our_namespaces, run_cli
from nettrace.errors import SpecError
from nettrace.topology import spec
from nettrace.topology.model import (EngineProfile, EngineVersion, FirewallBackend, GatewayMode,
                                     Lab, Network, PublishedPort, Sandbox, Scope)


def parse(text: str):
    return spec.parse(text, file="lab.yaml")


def test_engine_defaults_are_docker_29_iptables_with_proxy():
    s = parse("containers:\n  - name: c1\n")
    assert s.engine == EngineProfile(EngineVersion.V29, FirewallBackend.IPTABLES, True)
    assert str(s.engine) == "Docker 29, iptables firewall, userland proxy on"


@pytest.mark.parametrize("written, version", [
    ('"29"', EngineVersion.V29), ("29", EngineVersion.V29), ('"29.0.1"', EngineVersion.V29),
    ('"20.10"', EngineVersion.V20_10), ("20.10", EngineVersion.V20_10),   # YAML float 20.1
    ('"20.10.24"', EngineVersion.V20_10)])
def test_engine_version_forms(written, version):
    s = parse(f"engine:\n  version: {written}\ncontainers:\n  - name: c1\n")
    assert s.engine.version is version


@pytest.mark.parametrize("value, expected", [
    ("false", False), ("'false'", False), ("'0'", False), ("'F'", False), ("'False'", False),
    ("true", True), ("'1'", True), ("'T'", True), ("'TRUE'", True)])
def test_engine_userland_proxy_takes_docker_booleans(value, expected):
    s = parse(f"engine:\n  firewall: nftables\n  userland_proxy: {value}\n"
              f"containers:\n  - name: c1\n")
    assert s.engine.userland_proxy is expected
    assert s.engine.firewall is FirewallBackend.NFTABLES


BAD = {
    "unknown version": ("engine:\n  version: '28'\n", 2, "engine.version",
                        "unknown engine version '28'"),
    "unknown backend": ("engine:\n  firewall: firewalld\n", 2, "engine.firewall",
                        "unknown firewall backend 'firewalld'"),
    "nftables on 20.10": ("engine:\n  version: '20.10'\n  firewall: nftables\n", 3,
                          "engine.firewall", "Docker 20.10 has no nftables backend"),
    "unknown engine key": ("engine:\n  verison: '29'\n", 2, "engine.verison", "unknown field"),
    "engine not a mapping": ("engine: 29\n", 1, "engine", "must be a mapping"),
    "proxy not a bool": ("engine:\n  userland_proxy: 'yes'\n", 2, "engine.userland_proxy",
                         "must be true or false, not 'yes'"),
    "bad gateway mode": ("networks:\n  - name: n\n    gateway_mode: nat-protected\n", 3,
                         "networks[0].gateway_mode", "unknown gateway mode 'nat-protected'"),
    "gateway mode alias bad": (
        "networks:\n  - name: n\n    options:\n"
        "      com.docker.network.bridge.gateway_mode_ipv4: direct\n", 4,
        "networks[0].gateway_mode", "known: nat, nat-unprotected, routed, isolated"),
    "gateway mode on overlay": ("networks:\n  - name: n\n    driver: overlay\n"
                                "    gateway_mode: routed\n", 4, "networks[0].gateway_mode",
                                "only bridge networks"),
    "bad host_ipv4": ("networks:\n  - name: n\n    com.docker.network.host_ipv4: 10.0.0.300\n", 3,
                      "networks[0].host_ipv4", "bad IPv4 address '10.0.0.300'"),
    "icc yes": ("networks:\n  - name: n\n    com.docker.network.bridge.enable_icc: 'yes'\n", 3,
                "networks[0].icc", "must be true or false, not 'yes'"),
    "bad host ip": ("containers:\n  - name: c1\n    publish: ['127.0.0.300:80:80']\n", 3,
                    "containers[0].publish[0]", "bad host IP '127.0.0.300'"),
    "port allocated twice": ("containers:\n  - name: c1\n    publish: ['8080:80']\n"
                             "  - name: c2\n    publish: ['127.0.0.1:8080:81']\n", 4,
                             "containers.c2.publish[0]", "already published by 'c1'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_engine_and_option_input_names_file_line_field(case):
    text, line, field, words = BAD[case]
    with pytest.raises(SpecError) as err:
        parse(text)
    assert (err.value.line, err.value.field) == (line, field), str(err.value)
    assert words in str(err.value)
    assert str(err.value).startswith(f"lab.yaml:{line}")


def test_gateway_mode_host_ipv4_and_string_options_reach_the_spec():
    s = parse("networks:\n"
              "  - name: a\n    gateway_mode: routed\n    host_ipv4: 192.168.50.11\n"
              "  - name: b\n    options:\n"
              "      com.docker.network.bridge.gateway_mode_ipv4: nat-unprotected\n"
              "      com.docker.network.bridge.enable_icc: '0'\n"
              "      com.docker.network.bridge.enable_ip_masquerade: 'False'\n"
              "      com.docker.network.driver.mtu: '1400'\n"
              "  - name: c\n    com.docker.network.bridge.gateway_mode_ipv4: isolated\n"
              "containers: []\n")
    a, b, c = s.network("a"), s.network("b"), s.network("c")
    assert (a.gateway_mode, a.host_ipv4) == (GatewayMode.ROUTED, "192.168.50.11")
    assert (b.gateway_mode, b.icc, b.masquerade, b.mtu) == (GatewayMode.NAT_UNPROTECTED, False,
                                                           False, 1400)
    assert c.gateway_mode is GatewayMode.ISOLATED and c.host_ipv4 is None
    assert s.network("bridge").gateway_mode is GatewayMode.NAT


def test_publish_with_host_ip():
    s = parse("containers:\n  - name: c1\n    publish: ['127.0.0.1:8080:80/tcp', "
              "'0.0.0.0:53:53/udp', '10.0.0.1:8080:80', '8081:81']\n")
    assert [str(p) for p in s.containers[0].publish] == [
        "127.0.0.1:8080:80/tcp", "53:53/udp", "10.0.0.1:8080:80/tcp", "8081:81/tcp"]
    assert s.containers[0].publish[0] == PublishedPort(8080, 80, "tcp", "127.0.0.1")


def test_published_port_parse_round_trips_and_refuses_garbage():
    for text in ("8080:80/tcp", "127.0.0.1:8080:80/udp"):
        assert str(PublishedPort.parse(text)) == text
    for bad in ("80", "a:80", "1.2.3.4:80", "8080:80/icmp", "0:80"):
        with pytest.raises(ValueError):
            PublishedPort.parse(bad)


def test_engine_version_of_docker_releases():
    assert EngineVersion.of_release("20.10.24+dfsg1") is EngineVersion.V20_10
    assert EngineVersion.of_release("27.5.1") is EngineVersion.V20_10
    assert EngineVersion.of_release("28.0.1") is EngineVersion.V29
    assert EngineVersion.of_release("29.1.3") is EngineVersion.V29
    with pytest.raises(ValueError):
        EngineVersion.of_release("unknown")


def test_engine_and_network_options_survive_the_state_file():
    lab = Lab(name="x", engine=EngineProfile("20.10", "iptables", False))
    lab.networks.append(Network(name="n", driver="bridge", scope=Scope.LOCAL, id="0" * 64,
                                host="host", gateway_mode=GatewayMode.ROUTED, host_ipv4="10.0.0.1"))
    lab.sandboxes["c1"] = Sandbox(name="c1", host="host", netns="ns",
                                  published=["127.0.0.1:8080:80/tcp"])
    back = Lab.from_dict(json.loads(json.dumps(lab.to_dict())))
    assert back.engine == lab.engine and back.engine.version is EngineVersion.V20_10
    assert back.network("n").gateway_mode is GatewayMode.ROUTED
    assert back.network("n").host_ipv4 == "10.0.0.1"
    assert back.sandbox("c1").ports() == [PublishedPort(8080, 80, "tcp", "127.0.0.1")]
    # a state file written before profiles existed reads as the defaults
    old = lab.to_dict()
    del old["engine"]
    assert Lab.from_dict(old).engine == EngineProfile()


def test_cli_engine_override_conflict_exit_2_nothing_created(tmp_path):
    before = our_namespaces()
    proc = run_cli("lab", "up", "bridge", "--engine", "20.10", "--firewall", "nftables")
    assert proc.returncode == 2
    assert "Docker 20.10 has no nftables backend" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("lab", "up", "bridge", "--engine", "28")
    assert proc.returncode == 2 and "'28' is not one of '29', '20.10'" in proc.stderr
    assert our_namespaces() == before


@needs_root
def test_cli_up_engine_override_is_saved_and_shown():
    name = f"eng{os.getpid() % 100000}"
    try:
        run_cli("lab", "up", "bridge", "--name", name, "--engine", "20.10", "--no-userland-proxy",
                check=True)
        shown = run_cli("lab", "show", name, "--no-firewall", check=True).stdout
        assert "engine Docker 20.10, iptables firewall, userland proxy off" in shown
        state = json.loads(run_cli("lab", "show", name, "--json", check=True).stdout)
        assert state["engine"] == {"version": "20.10", "firewall": "iptables",
                                   "userland_proxy": False, "ip6tables": None}
        listed = json.loads(run_cli("lab", "ls", "--json", check=True).stdout)["labs"]
        assert {"name": name, "engine": "20.10/iptables/no-proxy"}.items() <= \
            next(r for r in listed if r["name"] == name).items()
        assert "20.10/iptables/no-proxy" in run_cli("lab", "ls", check=True).stdout
    finally:
        run_cli("lab", "down", name)


@needs_root                 # its second half runs `lab up`, which asks for root first
def test_gateway_modes_need_a_docker_28_profile():
    text = ("engine: {version: '20.10'}\nnetworks:\n  - name: n\n    gateway_mode: routed\n")
    with pytest.raises(SpecError) as err:
        parse(text)
    assert (err.value.line, err.value.field) == (3, "networks.n.gateway_mode")
    assert "gateway modes (routed) came with Docker 28" in str(err.value)
    # `lab up --engine 20.10` over a 29 lab: refused before anything is built
    before = our_namespaces()
    path = f"/tmp/gwmode-{os.getpid()}.yaml"
    with open(path, "w") as f:
        f.write("networks:\n  - name: n\n    gateway_mode: isolated\ncontainers: [{name: a, "
                "networks: [n]}]\n")
    try:
        proc = run_cli("lab", "up", path, "--engine", "20.10")
        assert proc.returncode == 2 and "gateway modes (isolated) came with Docker 28" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        os.unlink(path)
    assert our_namespaces() == before
