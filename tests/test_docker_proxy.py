"""docker-proxy: the lab runs the same proxy processes as the real engine with the userland
proxy on (Docker's default), for the same published ports.

A lab (Docker 20.10, userland proxy on) is mirrored into a private 20.10 engine started with
--userland-proxy=true; the docker-proxy command lines in the engine's namespace (dockerd
started them) and in the lab host's namespace (nettrace did) must be the same.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["conftest_docker"]
pytestmark = pytest.mark.docker

LAB = """
engine: {version: "20.10", userland_proxy: true}
networks:
  - name: unet
    subnet: 10.99.0.0/24
containers:
  - name: web
    networks: [bridge]
    publish: ["8080:80/tcp", "127.0.0.1:5353:53/udp"]
  - name: api
    networks: [{name: unet, ip: 10.99.0.10}]
    publish: ["9090:90"]
"""


def proxies_in(ns: str) -> list[str]:
    from nettrace.topology import netns, proxy
    out = []
    for pid in proxy.running_in({netns.inode(ns)}):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            out.append(f.read().replace(b"\0", b" ").decode().strip())
    return sorted(out)


def test_same_docker_proxy_processes_as_the_real_engine(make_lab):
    from conftest_docker import start_engine_or_skip, stop_engine_checked
    from nettrace.docker.mirror import mirror
    lab = make_lab(text=LAB, name="dpx")
    eng = start_engine_or_skip(f"p{os.getpid()}", userland_proxy=True)
    try:
        mirror(eng, lab)
        real = proxies_in(eng.netns)
        ours = proxies_in(lab.hosts["host"].netns)
        assert len(real) == 5, real          # 8080 on 0.0.0.0 and ::, 5353 on 127.0.0.1, 9090 x2
        assert ours == real
    finally:
        stop_engine_checked(eng)
