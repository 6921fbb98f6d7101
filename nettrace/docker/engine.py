"""A private Docker engine (dockerd + containerd) inside a network namespace nettrace owns.

Docker 20.10 runs unchanged inside a plain namespace (docker-drivers.md §13): dockerd's
bridges, veths, iptables rules and sysctls then land in that namespace and the root
namespace is never touched. Each engine gets its own short temp dir (unix socket paths are
limited to 107 bytes) holding data root, exec root, sockets, configs and logs, so several
engines coexist with each other and with a system Docker. The processes are started with
setns on the calling thread (nettrace.topology.netns.popen), which, unlike `ip netns exec`,
leaves /sys and the cgroup mounts alone: runc needs them.

An engine is recorded in <state dir>/engines/<name>.json so that another process (the CLI,
a crashed test run's successor) can find and stop it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

from nettrace.errors import EnvironmentProblem, NettraceError, require_root
from nettrace.topology import netns
from nettrace.topology.model import NS_PREFIX, STATE_DIR, PublishedPort

ENGINE_DIR = os.path.join(STATE_DIR, "engines")
IMAGE = "nt-busybox:1"
BINARIES = ("dockerd", "containerd", "runc")
INSTALL_HINT = "apt-get install -y docker.io containerd runc busybox-static"
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# Keep the CRI plugin (Kubernetes) out: it is slow to start and useless here.
CONTAINERD_CONFIG = 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'


@dataclass
class Engine:
    """One running private engine: its namespace, directory and daemon PIDs."""

    name: str                      # docker-<tag>
    netns: str                     # <prefix>.docker-<tag>: where dockerd and its bridges live
    root: str                      # private temp dir
    containerd_pid: int = 0
    dockerd_pid: int = 0
    userland_proxy: bool = False
    links: list[str] = field(default_factory=list)   # links nettrace added (macvlan parents)
    swarm: bool = False
    address: str | None = None     # on the underlay joining several engines (connect())
    underlay: str | None = None    # that underlay's namespace

    # -- paths -----------------------------------------------------------------------------
    @property
    def socket(self) -> str:
        return os.path.join(self.root, "docker.sock")

    @property
    def url(self) -> str:
        """What DOCKER_HOST / `--docker-host URL` should be set to."""
        return "unix://" + self.socket

    @property
    def exec_root(self) -> str:
        return os.path.join(self.root, "exec")

    @property
    def containerd_socket(self) -> str:
        return os.path.join(self.root, "containerd.sock")

    def log_path(self, daemon: str) -> str:
        return os.path.join(self.root, f"{daemon}.log")

    def logs(self, lines: int = 30) -> str:
        """The tail of both daemons' logs, for error messages."""
        out = []
        for daemon in ("containerd", "dockerd"):
            try:
                with open(self.log_path(daemon), errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                tail = []
            out.append(f"--- {daemon}.log (last {len(tail)} lines) ---\n" + "".join(tail))
        return "\n".join(out)

    # -- client ----------------------------------------------------------------------------
    def client(self, timeout: int = 60):
        """A docker SDK client talking to this engine."""
        import docker
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    # -- state -----------------------------------------------------------------------------
    def state_path(self) -> str:
        return os.path.join(ENGINE_DIR, f"{self.name}.json")

    def save(self) -> None:
        os.makedirs(ENGINE_DIR, exist_ok=True)
        with open(self.state_path() + ".tmp", "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(self.state_path() + ".tmp", self.state_path())

    # -- contents --------------------------------------------------------------------------
    def import_busybox(self, ref: str = IMAGE) -> str:
        """Make the tiny test image (static busybox + applet links) with `docker import`."""
        repo, _, tag = ref.partition(":")
        data = busybox_rootfs_tar()
        client = self.client()
        out = client.api.import_image_from_data(
            data, repository=repo, tag=tag or "latest", changes=['CMD ["sleep", "1d"]'])
        try:
            client.images.get(ref)
        except Exception:
            raise NettraceError(f"docker import of {ref} failed: {out}") from None
        return ref

    def add_parent_link(self, name: str) -> None:
        """A veth end to be a macvlan parent, with its peer up (a down peer means no carrier).

        Docker would create a dummy (dm-<id>) or a VLAN sub-interface; this kernel has neither.
        """
        peer = (name + "-p")[-15:] if len(name) > 13 else name + "-p"
        with netns.iproute(self.netns) as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
            for ifname in (name, peer):
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
        self.links.append(name)
        self.save()

    def swarm_init(self) -> None:
        """Become a swarm manager: on the underlay address when connected to other engines,
        else a single-node swarm on 127.0.0.1 (as in the captured reference)."""
        addr = self.address or "127.0.0.1"
        self.client().swarm.init(advertise_addr=addr, listen_addr=f"{addr}:2377")
        self.swarm = True
        self.save()

    def swarm_join(self, manager: "Engine") -> None:
        """Join `manager`'s swarm as a worker, over the underlay (see connect())."""
        if not (self.address and manager.address):
            raise NettraceError(f"{self.name} and {manager.name} must be connected by an "
                                f"underlay first (nettrace.docker.engine.connect)")
        token = manager.client().swarm.attrs["JoinTokens"]["Worker"]
        self.client().swarm.join(remote_addrs=[f"{manager.address}:2377"], join_token=token,
                                 advertise_addr=self.address,
                                 listen_addr=f"{self.address}:2377")
        self.swarm = True
        self.save()

    def run(self, name: str, networks: Sequence[tuple[str, str | None]] = (("bridge", None),),
            *, publish: Sequence[str] = (), command: Sequence[str] | None = None,
            image: str = IMAGE) -> str:
        """Create and start a container joined to `networks` [(network, ipv4 or None)], in order.

        `networks` may be [("host", None)] or [("none", None)]. `publish` takes "8080:80/tcp"
        and "127.0.0.1:8080:80/tcp".
        Returns the container id.
        """
        api = self.client().api
        first, first_ip = networks[0]
        ports, bindings = [], {}
        for item in publish:
            port = PublishedPort.parse(item)
            key = f"{port.container_port}/{port.proto}"
            ports.append((port.container_port, port.proto))
            bindings[key] = (port.host_ip, port.host_port) if port.host_ip else port.host_port
        net_cfg = None
        if first not in ("host", "none") and first_ip:
            net_cfg = api.create_networking_config(
                {first: api.create_endpoint_config(ipv4_address=first_ip)})
        created = api.create_container(
            image, command=list(command) if command else None, name=name, ports=ports or None,
            host_config=api.create_host_config(network_mode=first, port_bindings=bindings or None),
            networking_config=net_cfg)
        cid = created["Id"]
        for net, ip in networks[1:]:
            api.connect_container_to_network(cid, net, ipv4_address=ip)
        api.start(cid)
        return cid

    # -- teardown --------------------------------------------------------------------------
    def stop(self, timeout: float = 20.0) -> "StopReport":
        """Remove containers and swarm, stop the daemons, delete links, namespace and directory."""
        report = StopReport(self.name)
        if _alive(self.dockerd_pid, self.root):
            try:
                client = self.client(timeout=15)
                for ctr in client.containers.list(all=True):
                    ctr.remove(force=True)
                    report.containers += 1
                if self.swarm or client.info().get("Swarm", {}).get("LocalNodeState") == "active":
                    client.swarm.leave(force=True)
                client.close()
            except Exception as exc:                  # the daemons are stopped below anyway
                report.problems.append(f"docker cleanup: {exc}")
        for pid in (self.dockerd_pid, *_pids_mentioning(self.root, exclude={self.containerd_pid}),
                    self.containerd_pid):
            if _alive(pid, self.root):
                report.processes += _terminate(pid, timeout)
        for mount_point in mounts_under(self.root):
            netns._libc.umount2(mount_point.encode(), netns.MNT_DETACH)
        if netns.exists(self.netns):
            report.links = _delete_veths(self.netns)
            netns.remove(self.netns)
        if self.underlay and netns.exists(self.underlay) and not any(
                e.underlay == self.underlay for e in running() if e.name != self.name):
            report.links += _delete_veths(self.underlay)       # the last engine on it
            netns.remove(self.underlay)
        left = mounts_under(self.root)
        if left:
            report.problems.append(f"still mounted, {self.root} kept: {', '.join(left)}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        for path in (self.state_path(), self.state_path() + ".tmp"):
            if os.path.exists(path):
                os.unlink(path)
        return report


@dataclass
class StopReport:
    engine: str
    containers: int = 0
    processes: int = 0
    links: int = 0
    problems: list[str] = field(default_factory=list)


def start(tag: str | None = None, *, userland_proxy: bool = False, timeout: float = 30.0) -> Engine:
    """Start containerd and dockerd in a new namespace <prefix>.docker-<tag>; wait until it answers.

    `userland_proxy=False` (hairpin NAT, no docker-proxy) matches what nettrace labs rebuild.
    On failure everything started is stopped and the daemons' logs are in the error.
    """
    require_root("starting a Docker engine")
    check_installed()
    tag = tag or str(os.getpid())
    if not TAG_RE.match(tag):
        raise NettraceError(f"engine tag '{tag}': use lower-case letters, digits and '-' "
                            f"(at most 31 characters)")
    name = f"docker-{tag}"
    if os.path.exists(os.path.join(ENGINE_DIR, f"{name}.json")):
        raise NettraceError(f"a Docker engine named {name} is already running "
                            f"(nettrace docker engine stop {tag})")
    ns = f"{NS_PREFIX}.{name}"
    netns.create(ns)
    engine = Engine(name=name, netns=ns, root=tempfile.mkdtemp(prefix=f"{NS_PREFIX}-", dir="/tmp"),
                    userland_proxy=userland_proxy)
    try:
        _start_daemons(engine, timeout)
    except BaseException:
        engine.stop()
        raise
    return engine


def connect(engines: Sequence[Engine], subnet: str = "192.168.50.0/24") -> str:
    """Join engines like Docker hosts on one LAN: a switch (bridge lan0) in its own
    namespace <prefix>.docker-ul-<first tag>, each engine's eth0 plugged into it with the
    subnet's .11, .12, ... (as nettrace's multi-host labs number their hosts).
    Returns the underlay namespace; the last engine to stop removes it."""
    import ipaddress
    net = ipaddress.ip_network(subnet)
    ul = f"{NS_PREFIX}.docker-ul-{engines[0].name.removeprefix('docker-')}"
    netns.create(ul)
    try:
        netns.sysctl_write(ul, "net.bridge.bridge-nf-call-iptables", 0)   # a plain switch
        with netns.iproute(ul) as ipr:
            ipr.link("add", ifname="lan0", kind="bridge")
            lan = ipr.link_lookup(ifname="lan0")[0]
            ipr.link("set", index=lan, state="up")
            for i, eng in enumerate(engines):
                port = f"p-{eng.name.removeprefix('docker-')}"[:15]
                ipr.link("add", ifname=port, kind="veth",
                         peer={"ifname": "eth0", "net_ns_fd": netns.path(eng.netns)})
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=lan, state="up")
                eng.address = str(net.network_address + 11 + i)
                with netns.iproute(eng.netns) as host:
                    idx = host.link_lookup(ifname="eth0")[0]
                    host.addr("add", index=idx, address=eng.address, prefixlen=net.prefixlen)
                    host.link("set", index=idx, state="up")
                eng.underlay = ul
                eng.save()
    except BaseException:
        _delete_veths(ul)
        netns.remove(ul)
        raise
    return ul


def _start_daemons(engine: Engine, timeout: float) -> None:
    root = engine.root
    with open(os.path.join(root, "containerd.toml"), "w") as f:
        f.write(CONTAINERD_CONFIG)
    with open(os.path.join(root, "daemon.json"), "w") as f:
        f.write("{}\n")                         # never pick up /etc/docker/daemon.json
    containerd = _spawn(engine, "containerd", [
        "containerd", "--config", f"{root}/containerd.toml", "--root", f"{root}/containerd",
        "--state", f"{root}/containerd-state", "--address", engine.containerd_socket])
    engine.containerd_pid = containerd.pid
    engine.save()
    _wait(lambda: os.path.exists(engine.containerd_socket), containerd, engine, timeout,
          "containerd did not create its socket")
    dockerd = _spawn(engine, "dockerd", [
        "dockerd", "--config-file", f"{root}/daemon.json", "--data-root", f"{root}/data",
        "--exec-root", engine.exec_root, "-H", engine.url, "--pidfile", f"{root}/docker.pid",
        "--containerd", engine.containerd_socket,
        f"--userland-proxy={'true' if engine.userland_proxy else 'false'}"])
    engine.dockerd_pid = dockerd.pid
    engine.save()

    def answers() -> bool:
        if not os.path.exists(engine.socket):
            return False
        try:
            client = engine.client(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
    _wait(answers, dockerd, engine, timeout, "dockerd did not answer on its socket")


def _spawn(engine: Engine, daemon: str, argv: list[str]) -> subprocess.Popen:
    with open(engine.log_path(daemon), "wb") as log:
        # own session: a Ctrl-C meant for the test run must not kill the daemons mid-cleanup
        return netns.popen(engine.netns, argv, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(ready, proc: subprocess.Popen, engine: Engine, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not ready():
        if proc.poll() is not None:
            raise EnvironmentProblem(f"{what}: {proc.args[0]} exited with {proc.returncode}\n"
                                     f"{engine.logs()}")
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"{what} within {timeout:.0f} s\n{engine.logs()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def check_installed() -> None:
    """Name the Debian packages to install when a daemon binary is missing."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise EnvironmentProblem(f"{', '.join(missing)} not installed; run: {INSTALL_HINT}")
    if busybox_path() is None:
        raise EnvironmentProblem(f"no static busybox for the test image; run: {INSTALL_HINT}")


def busybox_path() -> str | None:
    """A statically linked busybox (a dynamic one would not run in an empty rootfs)."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        if b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head:
            return path
    return None


def busybox_rootfs_tar() -> bytes:
    """A rootfs tarball: /bin/busybox plus one symlink per applet (imported images lack a CMD)."""
    busybox = busybox_path()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


# -- finding and stopping engines ---------------------------------------------------------

def load(name: str) -> Engine:
    """A running engine by name (docker-<tag>) or tag."""
    name = name if name.startswith("docker-") else f"docker-{name}"
    try:
        with open(os.path.join(ENGINE_DIR, f"{name}.json")) as f:
            return Engine(**json.load(f))
    except FileNotFoundError:
        raise NettraceError(f"no Docker engine named {name} (see: nettrace docker engine ls)") \
            from None


def running() -> list[Engine]:
    try:
        names = sorted(f[:-5] for f in os.listdir(ENGINE_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []
    return [load(n) for n in names]


def mounts_under(root: str) -> list[str]:
    """Mount points inside `root` (overlay layers, netns bind mounts), deepest first."""
    prefix = root.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    points = [p.replace("\\040", " ") for p in points if p.startswith(prefix) or p == root]
    return sorted(set(points), key=len, reverse=True)


def _delete_veths(ns: str) -> int:
    """Delete the veths left in the engine's namespace (our macvlan parents; Docker's own go
    with their containers): a veth's peer is otherwise reaped asynchronously after the
    namespace goes, and an immediate restart under the same name fails with EEXIST."""
    from pyroute2.netlink.exceptions import NetlinkError
    count = 0
    with netns.iproute(ns) as ipr:
        for link in ipr.get_links():
            if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth":
                try:
                    ipr.link("del", index=link["index"])
                    count += 1
                except NetlinkError:
                    pass                          # gone already with its peer
    return count


def _alive(pid: int, root: str) -> bool:
    """`pid` runs and is one of this engine's (its command line names the engine's dir)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return _state(pid) not in (None, "Z") and root.encode() in cmdline


def _state(pid: int) -> str | None:
    """The process state letter (R, S, Z...), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pids_mentioning(root: str, exclude: set[int]) -> list[int]:
    """Processes of this engine other than the daemons: containerd shims left behind."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in exclude and _alive(int(entry), root):
            pids.append(int(entry))
    return pids


def _terminate(pid: int, timeout: float) -> int:
    """SIGTERM, then SIGKILL after `timeout`; reap it when it is our child. 1 if it was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return 1
        except ChildProcessError:
            if _state(pid) in (None, "Z"):     # gone, or a zombie its parent will reap
                return 1
        if time.monotonic() > deadline and not killed:
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.05)
