"""Bad lab files fail before the kernel is touched, naming file, line and field."""

from __future__ import annotations

import pytest

from nettrace.errors import SpecError
from nettrace.topology import spec


def load_text(tmp_path, text: str):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return spec.load(str(path)), str(path)


CASES = {
    "unknown driver": ("networks:\n  - name: n1\n    driver: weave\n", 3, "networks[0].driver",
                       "unknown driver 'weave'"),
    "overlapping subnets": ("networks:\n  - name: a\n    subnet: 10.1.0.0/16\n"
                            "  - name: b\n    subnet: 10.1.2.0/24\n", 4, "networks.b.subnet",
                            "overlaps 10.1.0.0/16"),
    "unknown network": ("containers:\n  - name: c1\n    networks:\n      - front\n", 4,
                        "containers[0].networks[0]", "unknown network 'front'"),
    "bad cidr": ("networks:\n  - name: a\n    subnet: 10.1.0.300/24\n", 3, "networks[0].subnet",
                 "bad CIDR"),
    "host bits": ("networks:\n  - name: a\n    subnet: 10.1.0.5/24\n", 3, "networks[0].subnet",
                  "has host bits set"),
    "duplicate container": ("containers:\n  - name: c1\n  - name: c1\n", 3, "containers[1].name",
                            "duplicate name 'c1'"),
    "duplicate network": ("networks:\n  - name: a\n  - name: a\n", 3, "networks[1].name",
                          "duplicate network name"),
    "interface name too long": ("networks:\n  - name: a\n    bridge_name: br-this-is-far-too-long\n",
                                3, "networks[0].bridge_name", "at most 15"),
    "unknown field": ("containers:\n  - name: c1\n    netwrks: [bridge]\n", 3,
                      "containers[0].netwrks", "unknown field"),
    "bad port": ("containers:\n  - name: c1\n    publish: ['80:99999']\n", 3,
                 "containers[0].publish[0]", "outside 1..65535"),
    "ip outside subnet": ("networks:\n  - name: a\n    subnet: 10.1.0.0/24\ncontainers:\n"
                          "  - name: c1\n    networks: [{name: a, ip: 10.2.0.5}]\n", 6,
                          "containers[0].networks[0].ip", "not in 10.1.0.0/24"),
    "builtin redefined": ("networks:\n  - name: bridge\n", 2, "networks[0].name", "built-in"),
    "not yaml": ("containers: [\n", 2, None, "not valid YAML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_file_line_field(tmp_path, case):
    text, line, field, words = CASES[case]
    with pytest.raises(SpecError) as err:
        load_text(tmp_path, text)
    e = err.value
    assert e.file == str(tmp_path / "lab.yaml")
    assert e.line == line, str(e)
    if field:
        assert e.field == field, str(e)
    assert words in str(e)
    assert str(e).startswith(f"{e.file}:{line}")


def test_embedded_labs_all_parse():
    names = spec.embedded_labs()
    for required in ("bridge", "user-bridges", "icc-off", "internal", "published-port", "host",
                     "none", "macvlan", "overlay"):
        assert required in names
        s = spec.load(required)
        assert s.name == required and s.containers


def test_unknown_lab_reference_lists_embedded():
    with pytest.raises(SpecError, match="no lab file and no embedded lab called 'brige'"):
        spec.load("brige")


def test_docker_option_aliases(tmp_path):
    s, _ = load_text(tmp_path, "networks:\n  - name: n\n    options:\n"
                     "      com.docker.network.bridge.enable_icc: 'false'\n"
                     "      com.docker.network.driver.mtu: 1400\ncontainers: []\n")
    net = s.network("n")
    assert net.icc is False and net.mtu == 1400


def test_cli_bad_file_exit_code_2(tmp_path):
    from conftest import run_cli
    path = tmp_path / "bad.yaml"
    path.write_text("networks:\n  - name: n1\n    driver: weave\n")
    from conftest import our_namespaces
    before = our_namespaces()
    proc = run_cli("lab", "up", str(path))
    assert proc.returncode == 2
    assert f"{path}:3: networks[0].driver: unknown driver 'weave'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert our_namespaces() == before, "bad input must not touch the kernel"


# -- issue 9: host mappings, underlay, listen, trace, expect ---------------------------------

FAULT_FORMAT_CASES = {
    "host unknown key": ("hosts:\n  - name: h1\n    sysctl: {}\n", 3, "hosts[0].sysctl",
                         "unknown field"),
    "sysctl outside net": ("hosts:\n  - name: h1\n    sysctls:\n      kernel.panic: 1\n", 4,
                           "hosts[0].sysctls.kernel.panic", "not a per-namespace network sysctl"),
    "sysctl bad value": ("hosts:\n  - name: h1\n    sysctls:\n      net.ipv4.ip_forward: [1]\n",
                         4, "hosts[0].sysctls.net.ipv4.ip_forward", "bad value"),
    "sysctls not a mapping": ("hosts:\n  - name: h1\n    sysctls: [net.ipv4.ip_forward]\n", 3,
                              "hosts[0].sysctls", "must be a mapping"),
    "firewall not a list": ("hosts:\n  - name: h1\n    firewall: '-P INPUT DROP'\n", 3,
                            "hosts[0].firewall", "must be a list"),
    "firewall with command name": ("hosts:\n  - name: h1\n    firewall:\n"
                                   "      - iptables -P INPUT DROP\n", 4, "hosts[0].firewall[0]",
                                   "without the 'iptables' command"),
    "firewall two commands": ("hosts:\n  - h0\n  - name: h1\n    firewall:\n"
                              "      - -A INPUT -j DROP -I FORWARD\n", 5, "hosts[1].firewall[0]",
                              "exactly one command"),
    "firewall no target": ("hosts:\n  - name: h1\n    firewall: ['-A INPUT -s 10.0.0.1']\n", 3,
                           "hosts[0].firewall[0]", "needs a target"),
    "firewall bad table": ("hosts:\n  - name: h1\n    firewall: ['-t rew -A PREROUTING -j DROP']\n",
                           3, "hosts[0].firewall[0]", "-t needs a table"),
    "firewall bad policy": ("hosts:\n  - name: h1\n    firewall: ['-P INPUT REJECT']\n", 3,
                            "hosts[0].firewall[0]", "ACCEPT or DROP"),
    "firewall bad quoting": ("hosts:\n  - name: h1\n    firewall: ['-A INPUT -m comment "
                             "--comment \"x -j DROP']\n", 3, "hosts[0].firewall[0]",
                             "cannot split"),
    "underlay not a mapping": ("underlay: 1400\n", 1, "underlay", "must be a mapping"),
    "underlay mtu range": ("underlay:\n  mtu: 100\n", 2, "underlay.mtu", "outside 576..9000"),
    "underlay unknown key": ("underlay:\n  mtu: 1400\n  speed: 10\n", 3, "underlay.speed",
                             "unknown field"),
    "listen bad form": ("containers:\n  - name: c1\n    listen: [tcp:80]\n", 3,
                        "containers[0].listen[0]", "bad listener"),
    "listen bad port": ("containers:\n  - name: c1\n    listen:\n      - udp/70000\n", 4,
                        "containers[0].listen[0]", "outside 1..65535"),
    "listen twice": ("containers:\n  - name: c1\n    listen:\n      - tcp/80\n      - tcp/80\n",
                     5, "containers[0].listen[1]", "listed twice"),
    "trace unknown src": ("containers:\n  - name: c1\ntrace:\n  src: c9\n  dst: c1\n", 4,
                          "trace.src", "unknown container, host or client 'c9'"),
    "trace missing dst": ("containers:\n  - name: c1\ntrace:\n  src: c1\n", 3, "trace.dst",
                          "missing"),
    "trace bad dst": ("containers:\n  - name: c1\ntrace:\n  src: c1\n  dst: nowhere\n", 5,
                      "trace.dst", "neither a name"),
    "trace bad proto": ("containers:\n  - name: c1\ntrace:\n  src: c1\n  dst: c1\n  proto: sctp\n",
                        6, "trace.proto", "unknown protocol"),
    "trace size range": ("containers:\n  - name: c1\ntrace:\n  src: c1\n  dst: c1\n  size: 9\n",
                         6, "trace.size", "28..65535"),
    "trace df not bool": ("containers:\n  - name: c1\ntrace:\n  src: c1\n  dst: c1\n  df: 1\n",
                          6, "trace.df", "true or false"),
    "trace icmp port": ("containers:\n  - name: c1\ntrace:\n  src: c1\n  dst: c1\n  dport: 80\n",
                        6, "trace.dport", "no port"),
    "expect no cause": ("expect: {reason: x}\n", 1, "expect", "with a cause"),
    "expect bad cause": ("expect:\n  cause: Not A Code\n", 2, "expect.cause", "bad cause code"),
    "expect unknown cause": ("expect:\n  cause: cosmic-rays\n", 2, "expect.cause",
                             "unknown cause 'cosmic-rays'"),
    "expect bad stage": ("expect:\n  cause: ok\n  stage: later\n", 3, "expect.stage",
                         "unknown stage"),
    "route bad form": ("hosts:\n  - name: h1\n    routes: ['10.0.0.0/8 h2']\n  - h2\n", 3,
                       "hosts[0].routes[0]", "bad route"),
    "route bad cidr": ("hosts:\n  - name: h1\n    routes: ['10.0.0.1/8 via h2']\n  - h2\n", 3,
                       "hosts[0].routes[0]", "bad CIDR"),
    "route unknown gateway": ("hosts:\n  - name: h1\n    routes: ['10.0.0.0/8 via h9']\n"
                              "  - h2\n", 3, "hosts[0].routes[0]", "unknown gateway 'h9'"),
    "route without underlay": ("hosts:\n  - name: h1\n    routes: ['10.0.0.0/8 via 1.2.3.4']\n",
                               3, "hosts[0].routes[0]", "needs clients or a second host"),
    "client route via itself": ("clients:\n  - name: cl\n    routes: ['10.0.0.0/8 via cl']\n",
                                3, "clients[0].routes[0]", "via itself"),
    "client unknown key": ("clients:\n  - name: cl\n    route: []\n", 3, "clients[0].route",
                           "unknown field"),
}


@pytest.mark.parametrize("case", list(FAULT_FORMAT_CASES))
def test_fault_format_bad_input_names_file_line_field(tmp_path, case):
    text, line, field, words = FAULT_FORMAT_CASES[case]
    with pytest.raises(SpecError) as err:
        load_text(tmp_path, text)
    e = err.value
    assert (e.line, e.field) == (line, field), str(e)
    assert words in str(e), str(e)
    assert str(e).startswith(f"{tmp_path / 'lab.yaml'}:{line}: {field}: ")


def test_fault_format_good_lab(tmp_path):
    s, _ = load_text(tmp_path, """
hosts:
  - h0
  - name: h1
    sysctls: {net.ipv4.ip_forward: 0, net.bridge.bridge-nf-call-iptables: false,
              net.ipv4.conf.all.rp_filter: 1}
    firewall:
      - -I DOCKER-USER -s 10.0.0.2 -j DROP
      - -t raw -A PREROUTING -p udp --dport 4789 -j DROP
      - -P INPUT DROP
clients: [client]
underlay: {mtu: 1400}
containers:
  - name: c1
    host: h1
    listen: [tcp/80, udp/53]
trace: {src: client, dst: "192.168.50.12:8080", size: 1400, df: true}
expect: {cause: ok}
""")
    assert s.hosts == ["h0", "h1"]
    assert s.host_specs["h0"].sysctls == {} and s.host_specs["h0"].firewall == []
    h1 = s.host_specs["h1"]
    assert h1.sysctls == {"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "0",
                          "net.ipv4.conf.all.rp_filter": "1"}
    assert h1.firewall[1] == "-t raw -A PREROUTING -p udp --dport 4789 -j DROP"
    assert [w.line for w in h1.firewall_where] == [8, 9, 10]
    assert s.underlay_mtu == 1400
    assert s.containers[0].listen == ["tcp/80", "udp/53"]
    t = s.trace
    assert (t.src, t.dst, t.proto, t.dport, t.size, t.df) == \
        ("client", "192.168.50.12:8080", "tcp", None, 1400, True)
    assert s.expect.cause == "ok"


def test_routes_and_fault_refs(tmp_path):
    s, _ = load_text(tmp_path, "hosts:\n  - name: h1\n    routes: ['10.60.0.0/24   via h2']\n"
                     "  - h2\nclients:\n  - name: cl\n    routes: ['172.17.0.0/16 via h1']\n"
                     "expect: {cause: arp-unresolved, fixed: none, stage: reply}\n"
                     "containers: []\n")
    assert s.host_specs["h1"].routes == ["10.60.0.0/24 via h2"]
    assert s.host_specs["cl"].routes == ["172.17.0.0/16 via h1"]
    assert s.host_specs["cl"].field == "clients[0]"
    assert (s.expect.cause, s.expect.fixed, s.expect.stage) == ("arp-unresolved", "none", "reply")
    faults = spec.fault_labs()
    assert "faults/icc-disabled" in faults and "faults/icc-disabled" not in spec.embedded_labs()
    lab = spec.load("faults/icc-disabled")
    assert lab.name == "icc-disabled" and lab.expect.cause == "icc-disabled"
    assert spec.load("faults/icc-disabled", name="mine").name == "mine"
    with pytest.raises(SpecError, match="no fault lab called 'faults/nope'"):
        spec.load("faults/nope")
    t = spec.TraceSpec(src="client", dst="host:8080", proto="tcp", size=1450, df=True)
    assert t.path_args() == ["client", "host:8080", "--size", "1450", "--df"]
    assert spec.TraceSpec(src="a", dst="b", proto="udp", dport=53).path_args() == \
        ["a", "b", "--proto", "udp", "--dport", "53"]


def test_iptables_args_split_like_a_shell():
    argv = spec.check_iptables_args('-A INPUT -m comment --comment "ufw deny" -j DROP',
                                    spec.Where("f"), "x")
    assert argv == ["-A", "INPUT", "-m", "comment", "--comment", "ufw deny", "-j", "DROP"]
