"""A real Docker engine for the test session (pytest plugin).

Load it with `pytest_plugins = ["conftest_docker"]` (tests/ is on sys.path). The engine runs
in its own namespace (<prefix>.docker-t<pid>) with every driver Docker has on this kernel:
default bridge, a user bridge, an internal network, ICC off, a published port, macvlan on a
veth parent and a single-node swarm overlay, plus host and none containers. If Docker cannot
be installed or started, every test using it is skipped with the reason printed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import pytest


@dataclass
class ExpectedEndpoint:
    network: str
    ipv4: str | None                 # None: Docker chooses (default bridge, overlay)


@dataclass
class DockerScenario:
    engine: object                   # nettrace.docker.engine.Engine
    containers: dict[str, list[ExpectedEndpoint]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)     # name -> host | none
    published: dict[str, list[str]] = field(default_factory=dict)


# name, [(network, ip)], publish
SCENARIO_NETWORKS = [
    # name, driver, subnet, options, internal
    ("unet", "bridge", "10.99.0.0/24", {}, False),
    ("internal", "bridge", "10.97.0.0/24", {}, True),
    ("noicc", "bridge", "10.96.0.0/24", {"com.docker.network.bridge.enable_icc": "false"}, False),
    ("mvnet", "macvlan", "10.98.0.0/24", {"parent": "mvparent"}, False),
    ("ovnet", "overlay", "10.0.9.0/24", {}, False),
]
SCENARIO_CONTAINERS = [
    ("c1", [("bridge", None)], []),
    ("c2", [("bridge", None)], []),
    ("web", [("bridge", None)], ["8080:80/tcp"]),
    ("u1", [("unet", "10.99.0.10")], []),
    ("u2", [("unet", "10.99.0.11"), ("internal", "10.97.0.11")], []),
    ("i1", [("internal", "10.97.0.10")], []),
    ("n1", [("noicc", "10.96.0.10")], []),
    ("n2", [("noicc", "10.96.0.11")], []),
    ("m1", [("mvnet", "10.98.0.10")], []),
    ("m2", [("mvnet", "10.98.0.11")], []),
    ("o1", [("ovnet", "10.0.9.10")], []),
    ("o2", [("ovnet", "10.0.9.11")], []),
    ("hostc", [("host", None)], []),
    ("lonely", [("none", None)], []),
]


def start_engine_or_skip(tag: str, **options):
    """Start a private engine (options: nettrace.docker.engine.start's, e.g. userland_proxy),
    or skip (reason printed) when Docker is missing or will not start."""
    from nettrace.docker import engine as docker_engine
    from nettrace.errors import NettraceError
    if os.geteuid() != 0:
        pytest.skip("a Docker engine needs root")
    try:
        eng = docker_engine.start(tag, **options)
        eng.import_busybox()
    except NettraceError as exc:
        print(f"\nDocker tests skipped: {exc}", file=sys.stderr)
        from conftest import missing
        pytest.skip(missing(f"a Docker engine: it did not start: {str(exc).splitlines()[0]}"))
    return eng


def stop_engine_checked(eng) -> None:
    """Stop the engine and fail loudly if anything of it is left behind."""
    from nettrace.docker.engine import mounts_under
    from nettrace.topology import netns
    report = eng.stop()
    leftovers = []
    if netns.exists(eng.netns):
        leftovers.append(f"namespace {eng.netns}")
    if os.path.exists(eng.root):
        leftovers.append(f"directory {eng.root}")
    leftovers += mounts_under(eng.root)
    for pid in (eng.dockerd_pid, eng.containerd_pid):
        if os.path.exists(f"/proc/{pid}/cmdline"):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if eng.root.encode() in f.read():
                    leftovers.append(f"process {pid}")
    assert not leftovers and not report.problems, (leftovers, report.problems)


def serve_command(published: list[str]) -> list[str] | None:
    """Serve each published TCP port with busybox httpd (busybox has no UDP server)."""
    ports = sorted({p.split(":")[-1].split("/")[0] for p in published if p.endswith("/tcp")})
    if not ports:
        return None
    starts = "; ".join(f"httpd -p {p} -h /" for p in ports)
    return ["sh", "-c", f"{starts}; exec sleep 1d"]


def build_scenario(eng) -> DockerScenario:
    client = eng.client()
    eng.swarm_init()
    eng.add_parent_link("mvparent")
    for name, driver, subnet, options, internal in SCENARIO_NETWORKS:
        from docker.types import IPAMConfig, IPAMPool
        client.networks.create(name, driver=driver, options=options, internal=internal,
                               attachable=driver == "overlay",
                               ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))
    scenario = DockerScenario(eng)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=4) as pool:      # dockerd serves them concurrently
        list(pool.map(lambda c: eng.run(c[0], c[1], publish=c[2], command=serve_command(c[2])),
                      SCENARIO_CONTAINERS))
    for name, nets, publish in SCENARIO_CONTAINERS:
        if nets[0][0] in ("host", "none"):
            scenario.modes[name] = nets[0][0]
            scenario.containers[name] = []
        else:
            scenario.containers[name] = [ExpectedEndpoint(n, ip) for n, ip in nets]
        scenario.published[name] = publish
    client.close()
    return scenario


@pytest.fixture(scope="session")
def docker_scenario():
    """The session's engine with every driver (see module docstring); torn down and checked."""
    eng = start_engine_or_skip(f"t{os.getpid()}")
    try:
        scenario = build_scenario(eng)
    except BaseException:
        print(eng.logs(), file=sys.stderr)
        eng.stop()
        raise
    yield scenario
    stop_engine_checked(eng)


@pytest.fixture
def docker_engine():
    """A fresh, empty engine for one test (mirroring a lab into it)."""
    eng = start_engine_or_skip(f"f{os.getpid()}")
    yield eng
    stop_engine_checked(eng)


#: The private engines (nettrace.docker.engine.start) run Docker 20.10 with the userland proxy
#: off: labs compared with them are built with that profile.
ENGINE_PROFILE = {"version": "20.10", "firewall": "iptables", "userland_proxy": False}


@pytest.fixture(scope="session")
def engine_labs():
    """`engine_labs(name, as_name=...)`: an embedded lab brought up once per session under the
    private engines' profile (Docker 20.10, iptables, userland proxy off)."""
    from nettrace.topology import builder, spec
    from nettrace.topology.model import EngineProfile
    if os.geteuid() != 0:
        pytest.skip("needs root")
    up: dict[str, object] = {}

    def get(name: str, *, as_name: str | None = None):
        key = as_name or name
        if key not in up:
            s = spec.load(name, name=as_name)
            s.engine = EngineProfile(**ENGINE_PROFILE)
            up[key] = builder.up(s)
        return up[key]

    yield get
    for name in up:
        builder.down(name, quiet=True)
