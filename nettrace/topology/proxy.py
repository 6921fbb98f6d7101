"""docker-proxy: the userland proxy dockerd runs per published port (`userland_proxy: true`).

With the userland proxy on (Docker's default), dockerd starts the real `docker-proxy` binary
once per published port and host address, in the host's network namespace, with the
arguments both 20.10 and 29 pass (moby daemon/libnetwork/portmapper/proxy_linux.go):

    docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80

and reads "0\\n" (or "1\\n<error>") from a pipe passed as fd 3. A port published without a
host address gets two proxies, 0.0.0.0 and :: (recorded on the real engine:
tests/fixtures/docker/recorded-facts.json). The proxy then serves what the DNAT rules leave
to it: the host itself through 127.0.0.1 and containers reaching a published port through
the host's address (hairpin). Docker 29 binds the socket itself and passes it with
`-use-listen-fd`; Debian's docker-proxy is 20.10's and does not take that flag, so it binds
itself under both profiles (same listening socket, same traffic).

Proxies belong to the lab, like the embedded DNS server: started by `builder.up` in their own
session (they must outlive `lab up`), recorded as <lab>.proxy-<n>.pid holding "PID NETNS-INODE",
and stopped on `lab down`, which also finds any proxy left in the lab's namespaces through
/proc/PID/ns/net (after a `kill -9` of `lab up` between start and pid file).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from dataclasses import dataclass

from nettrace.errors import EnvironmentProblem, NettraceError
from nettrace.topology import netns, state
from nettrace.topology.model import STATE_DIR, EngineVersion, GatewayMode, Lab

DOCKER_PROXY = "/usr/sbin/docker-proxy"
INSTALL_HINT = "apt-get install -y docker.io (it ships /usr/sbin/docker-proxy)"
START_TIMEOUT = 16.0                    # dockerd's own wait for the proxy's answer
COMM = "docker-proxy"


@dataclass(frozen=True)
class Proxy:
    """One docker-proxy process: a host address and port relayed to a container's port."""

    host: str                           # lab host (Docker engine) it runs on
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def argv(self, binary: str = DOCKER_PROXY) -> list[str]:
        return [binary, "-proto", self.proto, "-host-ip", self.host_ip,
                "-host-port", str(self.host_port), "-container-ip", self.container_ip,
                "-container-port", str(self.container_port)]

    def __str__(self) -> str:
        addr = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return (f"{self.host}: {addr}:{self.host_port}/{self.proto} -> "
                f"{self.container_ip}:{self.container_port}")


def proxies(lab: Lab) -> list[Proxy]:
    """The proxies dockerd would run for `lab` (none with the userland proxy off)."""
    if not lab.engine.userland_proxy:
        return []
    from nettrace.topology.firewall.base import published
    out = []
    for host in lab.hosts.values():
        for p in published(lab, host):
            # Docker 28+: only NAT gateway modes map ports through the proxy (routed ports are
            # reached directly, an isolated network has no gateway)
            if lab.engine.version is EngineVersion.V29 and p.network.gateway_mode not in (
                    GatewayMode.NAT, GatewayMode.NAT_UNPROTECTED):
                continue
            if not p.ip:
                continue
            for host_ip in [p.host_ip] if p.host_ip else ["0.0.0.0", "::"]:
                out.append(Proxy(host.name, p.proto, host_ip, p.host_port, p.ip, p.port))
    return out


def binary() -> str:
    if not os.access(DOCKER_PROXY, os.X_OK):
        found = shutil.which("docker-proxy")
        if found:
            return found
        raise EnvironmentProblem(f"docker-proxy is not installed ({INSTALL_HINT}); or bring "
                                 f"the lab up with --no-userland-proxy")
    return DOCKER_PROXY


def pidfile(lab: str, n: int) -> str:
    return state.pidfile(lab, f"proxy-{n}")


def start(lab: Lab) -> list[int]:
    """Start every proxy of the lab; returns their PIDs. Raises with docker-proxy's own error."""
    todo = proxies(lab)
    if not todo:
        return []
    path = binary()
    os.makedirs(STATE_DIR, exist_ok=True)
    pids = []
    for n, proxy in enumerate(todo):
        host = lab.hosts[proxy.host]
        r, w = os.pipe()
        try:
            # docker-proxy answers on fd 3, as dockerd's ExtraFiles[0]; bash (dash takes one-digit
            # fds only) puts our pipe
            # there and execs (same PID, docker-proxy's own command line)
            proc = netns.popen(host.netns, ["/bin/bash", "-c", f'exec "$@" 3>&{w} {w}>&-', "bash",
                                            *proxy.argv(path)],
                               pass_fds=(w,), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
            os.close(w)
            w = -1
            with open(pidfile(lab.name, n), "w") as f:
                f.write(f"{proc.pid} {netns.inode(host.netns)}\n")
            pids.append(proc.pid)
            status = _read_status(r, START_TIMEOUT)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if status != "0\n":
            detail = status[2:].strip() if status.startswith("1\n") else \
                f"it exited with {proc.poll()}" if proc.poll() is not None else "no answer"
            raise NettraceError(f"docker-proxy for {proxy} did not start: {detail}")
    return pids


def _read_status(fd: int, timeout: float) -> str:
    """What the proxy wrote on its status pipe, until it closed it or `timeout` passed."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return data.decode(errors="replace")
        chunk = os.read(fd, 4096)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk
        if data == b"0\n":
            return "0\n"


def running_in(inodes: set[int]) -> list[int]:
    """PIDs of docker-proxy processes whose network namespace is one of `inodes`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != COMM:
                    continue
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def stop_in(namespaces: list[str]) -> int:
    """SIGTERM every docker-proxy left in these namespaces (a lab's hosts). Returns how many."""
    inodes = set()
    for ns in namespaces:
        try:
            inodes.add(netns.inode(ns))
        except OSError:
            continue
    stopped = 0
    for pid in running_in(inodes):
        try:
            os.kill(pid, signal.SIGTERM)
            stopped += 1
        except ProcessLookupError:
            pass
    return stopped
