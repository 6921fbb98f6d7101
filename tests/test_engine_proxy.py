"""docker-proxy per published port: the arguments the real engine passes, started in the lab
host's namespace, outliving `lab up`, stopped by `lab down` (also after a kill -9 of lab up).

Oracle: the docker-proxy command lines the real Docker 20.10 engine ran for the same ports,
recorded in tests/fixtures/docker/recorded-facts.json (`-p 8080:80` on docker0 and
`-p 127.0.0.1:8081:81/udp` on a user network).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import RUN_TAG, NETTRACE, ROOT, needs_root, our_namespaces, run_cli

from nettrace.topology import proxy
from nettrace.topology.model import (EngineProfile, Endpoint, GatewayMode, Host, Lab, Network,
                                     Sandbox, Scope)

#: a namespace prefix of this run only: a user's labs (or another run) never collide
PX = f"ntpx{RUN_TAG}"

FACTS = os.path.join(ROOT, "tests", "fixtures", "docker", "recorded-facts.json")


def recorded_lab(**engine) -> Lab:
    """The recorded engine's two publishing containers, as a lab model."""
    lab = Lab(name="rec", engine=EngineProfile(**engine))
    lab.hosts["host"] = Host(name="host", netns="ns")
    for name, subnet, gw, dev in (("bridge", "172.17.0.0/16", "172.17.0.1", "docker0"),
                                  ("unet", "172.18.0.0/16", "172.18.0.1", "br-unet")):
        lab.networks.append(Network(name=name, driver="bridge", scope=Scope.LOCAL, id=name,
                                    host="host", subnet=subnet, gateway=gw, device=dev))
    for name, net, ip, port in (("web", "bridge", "172.17.0.2", "8080:80/tcp"),
                                ("lo", "unet", "172.18.0.4", "127.0.0.1:8081:81/udp")):
        lab.sandboxes[name] = Sandbox(name=name, host="host", netns=f"ns-{name}",
                                      published=[port], endpoints=[Endpoint(
                                          f"{name}-{net}", name, net, "eth0", "02:42:00:00:00:01",
                                          ip, 16, 1500)])
    return lab


def test_proxy_arguments_are_the_real_engines():
    with open(FACTS) as f:
        recorded = json.load(f)["docker_proxy"]
    for engine in ({"version": "20.10"}, {"version": "29"}, {"version": "29",
                                                             "firewall": "nftables"}):
        argv = [" ".join(p.argv()) for p in proxy.proxies(recorded_lab(**engine))]
        assert sorted(argv) == sorted(recorded), engine


def test_no_proxy_without_userland_proxy_or_outside_nat_gateway_modes():
    assert proxy.proxies(recorded_lab(userland_proxy=False)) == []
    lab = recorded_lab()
    lab.network("unet").gateway_mode = GatewayMode.ROUTED        # reached directly, no NAT
    assert [p.host_ip for p in proxy.proxies(lab)] == ["0.0.0.0", "::"]
    lab.network("bridge").gateway_mode = GatewayMode.NAT_UNPROTECTED
    assert len(proxy.proxies(lab)) == 2
    lab20 = recorded_lab(version="20.10")                           # 20.10 has no gateway modes
    lab20.network("unet").gateway_mode = GatewayMode.ROUTED
    assert len(proxy.proxies(lab20)) == 3


LAB = """
containers:
  - name: web
    networks: [bridge]
    publish: ["8080:80/tcp", "127.0.0.1:5353:53/udp"]
    listen: ["tcp/80"]
  - name: c1
    networks: [bridge]
"""


def _proxies_in(ns: str) -> dict[int, str]:
    from nettrace.topology import netns
    out = {}
    for pid in proxy.running_in({netns.inode(ns)}):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            out[pid] = f.read().replace(b"\0", b" ").decode().strip()
    return out


@needs_root
def test_proxies_run_in_the_host_namespace_and_stop_with_the_lab(make_lab):
    lab = make_lab(text=LAB, name="pxy")
    host_ns = lab.hosts["host"].netns
    running = _proxies_in(host_ns)
    assert sorted(running.values()) == sorted(
        [f"/usr/sbin/docker-proxy -proto tcp -host-ip {ip} -host-port 8080 -container-ip "
         f"172.17.0.2 -container-port 80" for ip in ("0.0.0.0", "::")] +
        ["/usr/sbin/docker-proxy -proto udp -host-ip 127.0.0.1 -host-port 5353 -container-ip "
         "172.17.0.2 -container-port 53"])
    for pid in running:                       # they belong to the lab, not to `lab up`
        assert os.getsid(pid) == pid
    from nettrace.topology import builder
    report = builder.down(lab.name)
    assert report.processes >= 3
    time.sleep(0.2)
    assert all(not os.path.exists(f"/proc/{pid}/ns") or
               open(f"/proc/{pid}/stat").read().split()[2] == "Z" for pid in running)


@needs_root
def test_lab_down_after_kill_9_of_lab_up_finds_the_proxies(tmp_path):
    env = {"NETTRACE_NS_PREFIX": PX, "NETTRACE_STATE_DIR": str(tmp_path / "state")}
    lab_file = tmp_path / "pxk.yaml"
    lab_file.write_text(LAB)
    proc = subprocess.Popen([NETTRACE, "lab", "up", str(lab_file)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from nettrace.topology import netns
    deadline = time.monotonic() + 30
    pids: list[int] = []
    while time.monotonic() < deadline and len(pids) < 3:
        ns = [n for n in our_namespaces(PX) if n.endswith(".host")]
        try:
            pids = proxy.running_in({netns.inode(n) for n in ns})
        except OSError:
            pids = []
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(pids) == 3, "lab up never started its proxies"
    # whatever the kill left (pid files or not), `lab down` ends every proxy of the lab
    for pidfile in (tmp_path / "state").glob("pxk.proxy-*.pid"):
        pidfile.unlink()
    down = run_cli("lab", "down", "pxk", env=env)
    assert down.returncode == 0, down.stderr
    time.sleep(0.2)
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert alive == [], f"docker-proxy processes survived lab down: {alive}"
    assert our_namespaces(PX) == []


@needs_root
def test_docker_proxy_that_does_not_answer_fails_up_and_nothing_is_left():
    """A proxy that exits without its "0\\n" on fd 3 fails `lab up` naming the port, and
    the half-built lab is removed."""
    from nettrace.topology import spec
    bad = spec.parse(LAB, default_name="pxe")
    orig = proxy.DOCKER_PROXY
    try:
        proxy.DOCKER_PROXY = "/bin/false"      # exits without answering on fd 3
        from nettrace.topology import builder
        with pytest.raises(Exception, match="docker-proxy for host: 0.0.0.0:8080/tcp -> "
                                            "172.17.0.2:80 did not start"):
            builder.up(bad)
    finally:
        proxy.DOCKER_PROXY = orig
    assert not [ns for ns in our_namespaces() if ".pxe." in ns]


def _held_by_proxy(ns: str, local: str, peer: tuple[str, int]) -> list[str]:
    """`ss` lines of TCP sockets in `ns` that docker-proxy holds, local address `local`
    ("127.0.0.1:8080") and peer `peer` (our client's address and port), in any state (the
    lab's listener closes at once, so the proxy's side may already be in FIN-WAIT)."""
    from nettrace.topology import netns
    out = netns.run(ns, ["ss", "-tanpH"]).stdout
    return [ln for ln in out.splitlines() if '"docker-proxy"' in ln and
            ln.split()[3] == local and ln.split()[4] == f"{peer[0]}:{peer[1]}"]


@needs_root
def test_loopback_and_hairpin_reach_the_published_port_through_docker_proxy(make_lab):
    """Docker 29, userland proxy on (the defaults): the host reaches its published port on
    127.0.0.1 and a container reaches it on the host's address, both served by docker-proxy
    (ss shows the proxy holding the connection); with the proxies stopped both are refused."""
    import socket
    from nettrace.topology import netns
    lab = make_lab(text=LAB, name="pxr")
    assert lab.engine.userland_proxy
    host_ns = lab.hosts["host"].netns
    c1, gateway = lab.sandbox("c1"), lab.network("bridge", "host").gateway

    def connect(ns: str, addr: str) -> socket.socket:
        with netns.entered(ns):
            s = socket.socket()
        s.settimeout(3)
        s.connect((addr, 8080))
        return s

    held = connect(host_ns, "127.0.0.1")
    try:
        assert _held_by_proxy(host_ns, "127.0.0.1:8080", held.getsockname())
    finally:
        held.close()
    held = connect(c1.netns, gateway)                  # hairpin: the host's address
    try:
        assert held.getsockname()[0] == c1.ip("bridge")
        assert _held_by_proxy(host_ns, f"{gateway}:8080", held.getsockname())
    finally:
        held.close()
    assert proxy.stop_in([host_ns]) == 3
    time.sleep(0.3)
    for ns, addr in ((host_ns, "127.0.0.1"), (c1.netns, gateway)):
        with pytest.raises(ConnectionRefusedError):
            connect(ns, addr).close()


@needs_root
@pytest.mark.parametrize("profile,hairpin", [
    ({}, False),                                         # 29, proxy on: docker-proxy serves
    ({"userland_proxy": False}, True),                   # hairpin-NAT layout
    ({"version": "20.10"}, False),                       # 20.10, proxy on (recorded)
    ({"version": "20.10", "userland_proxy": False}, True)])
def test_bridge_hairpin_and_route_localnet_only_with_hairpin_nat(profile, hairpin):
    """Docker sets route_localnet=1 on the bridge and hairpin on its ports only with the
    userland proxy off (docker-drivers.md §2.2 step 6, §2.3 step 2)."""
    from nettrace.topology import builder, netns, spec
    s = spec.parse(LAB, default_name=f"pxh{len(profile)}{int(hairpin)}")
    s.engine = EngineProfile(**profile)
    lab = builder.up(s)
    try:
        host_ns = lab.hosts["host"].netns
        assert netns.sysctl_read(host_ns, "net.ipv4.conf.docker0.route_localnet") == \
            ("1" if hairpin else "0")
        ports = json.loads(netns.run(host_ns, ["bridge", "-d", "-j", "link", "show"]).stdout)
        modes = {p["ifname"]: p.get("hairpin") for p in ports if p.get("master") == "docker0"}
        assert len(modes) == 2 and set(modes.values()) == {hairpin}, modes
    finally:
        builder.down(lab.name)
