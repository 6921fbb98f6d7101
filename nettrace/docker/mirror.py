"""Recreate a nettrace lab's networks and containers in a real Docker engine.

This is how a lab is checked against the real thing: mirror the running lab into a private
engine (same network names, drivers, subnets, gateways, options, container names and
addresses), then compare the two (`nettrace lab diff LAB --docker`) or trace the same flow
through both. Docker picks what the lab cannot dictate (default-bridge addresses, veth
names, bridge MACs), which the comparison normalises.
"""

from __future__ import annotations

from nettrace.errors import NettraceError
from nettrace.topology.model import Lab, Network

#: networks every engine has, or that Docker adds by itself (swarm)
IMPLICIT_NETWORKS = ("bridge", "host", "none", "docker_gwbridge", "ingress")


def mirror(engine, lab: Lab, host: str | None = None) -> None:
    """Create `lab`'s user networks and containers in `engine` (a nettrace.docker.engine.Engine).

    An engine is one Docker host: `host` picks the lab host whose containers are created;
    None folds every container of a multi-host lab onto the engine.
    """
    if host is not None and host not in lab.hosts:
        raise NettraceError(f"lab {lab.name} has no host {host} (hosts: {', '.join(lab.hosts)})")
    if any(n.driver == "overlay" for n in lab.networks):
        _swarm(engine, [])
    _networks(engine, lab, [n for n in lab.networks if n.host in (None, host) or host is None])
    _containers(engine, lab, [sb for sb in lab.sandboxes.values()
                              if host is None or sb.host == host])


def mirror_hosts(engines: dict, lab: Lab) -> None:
    """Each lab host onto its own engine ({lab host: Engine}), engines joined by an underlay
    (nettrace.docker.engine.connect): the first is the swarm manager, the others join it,
    so overlay traffic between hosts really goes through VXLAN."""
    missing = sorted(set(lab.hosts) - set(engines))
    if missing:
        raise NettraceError(f"lab {lab.name}: no engine for host(s) {', '.join(missing)}")
    manager, *workers = [engines[h] for h in lab.hosts]
    if any(n.driver == "overlay" for n in lab.networks):
        _swarm(manager, workers)
    _networks(manager, lab, [n for n in lab.networks if n.driver == "overlay"])
    for name, eng in engines.items():
        _networks(eng, lab, [n for n in lab.networks if n.driver != "overlay" and n.host == name])
        _containers(eng, lab, [sb for sb in lab.sandboxes.values() if sb.host == name])


def _swarm(manager, workers: list) -> None:
    """Swarm with `manager`, ingress removed (the routing mesh needs IPVS, absent here, and
    ingress holds VNI 4096, which a lab's overlay may ask for), then `workers` join: after
    the removal, so that they never build an ingress of their own."""
    if not manager.swarm:
        manager.swarm_init()
    client = manager.client()
    try:
        for net in client.networks.list(names=["ingress"]):
            if net.name == "ingress":
                _remove_ingress(manager, client, net)
    finally:
        client.close()
    for worker in workers:
        if not worker.swarm:
            worker.swarm_join(manager)


def _networks(engine, lab: Lab, networks: list[Network]) -> None:
    client = engine.client()
    try:
        done: set[str] = set()
        for net in networks:
            if net.name in IMPLICIT_NETWORKS or net.name in done:
                continue
            _create_network(engine, client, net)
            done.add(net.name)
    finally:
        client.close()


def _containers(engine, lab: Lab, sandboxes: list) -> None:
    for sb in sandboxes:
        if sb.network_mode in ("host", "none"):
            engine.run(sb.name, [(sb.network_mode, None)])
            continue
        # Docker refuses fixed addresses on the default bridge, and on an overlay the
        # swarm load balancer takes the next free address at the first join: let it pick
        nets = [(ep.network, None if ep.network == "bridge" or
                 lab.network(ep.network).driver == "overlay" else ep.ipv4)
                for ep in sorted(sb.endpoints, key=lambda e: e.ifname)
                if ep.network not in ("docker_gwbridge", "ingress")]
        if not nets:
            raise NettraceError(f"container {sb.name} of lab {lab.name} has no network to mirror")
        # like the lab's containers, nothing listens: a published port answers with a RST
        engine.run(sb.name, nets, publish=sb.published)


def _remove_ingress(engine, client, net, timeout: float = 15.0) -> None:
    """Remove the swarm's ingress network and wait until its VXLAN (VNI 4096) is really gone.

    swarm init builds ingress asynchronously; removing it half-built leaves the build racing
    the removal, and until the kernel has released its vxlan's UDP socket a new overlay
    with VNI 4096 fails ("error creating vxlan interface: file exists", then a 20 s timeout).
    """
    import os
    from nettrace.docker.discover import OVERLAY_SANDBOX_PREFIX, is_netns
    sandboxes = [os.path.join(engine.exec_root, "netns", key)
                 for key in ("ingress_sbox", OVERLAY_SANDBOX_PREFIX + net.id[:10])]
    _wait_until(lambda: all(is_netns(p) for p in sandboxes), timeout, "ingress to be built")
    net.remove()
    _wait_until(lambda: not client.networks.list(names=["ingress"]), timeout,
                "ingress to be removed")
    _wait_until(lambda: not any(is_netns(p) for p in sandboxes), timeout,
                "ingress sandboxes to be removed")
    _wait_until(lambda: not _vxlan_socket(engine.netns), timeout, "ingress VXLAN socket to close")


def _vxlan_socket(ns: str, port: int = 4789) -> bool:
    """A UDP socket on the VXLAN port in namespace `ns` (the kernel's, owned by a vxlan)."""
    from nettrace.topology import netns
    with netns.entered(ns):
        with open("/proc/net/udp") as f:
            next(f)
            return any(int(line.split()[1].split(":")[1], 16) == port for line in f)


def _wait_until(ready, timeout: float, what: str) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise NettraceError(f"Docker: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _create_network(engine, client, net: Network) -> None:
    from docker.types import IPAMConfig, IPAMPool
    options: dict[str, str] = {}
    if net.driver == "bridge":
        options["com.docker.network.bridge.enable_icc"] = str(net.icc).lower()
        options["com.docker.network.bridge.enable_ip_masquerade"] = str(net.masquerade).lower()
        if net.device and not net.device.startswith("br-"):
            options["com.docker.network.bridge.name"] = net.device
        if net.mtu and net.mtu != 1500:
            options["com.docker.network.driver.mtu"] = str(net.mtu)
    elif net.driver in ("macvlan", "ipvlan"):
        parent = net.options.get("parent") or net.device
        if not parent:
            raise NettraceError(f"network {net.name}: a {net.driver} network needs a parent")
        if parent not in engine.links:
            engine.add_parent_link(parent)
        options["parent"] = parent
        options[f"{net.driver}_mode"] = net.options.get("mode") or "bridge"
    elif net.driver == "overlay" and net.vni:
        options["com.docker.network.driver.overlay.vxlanid_list"] = str(net.vni)
    ipam = None
    if net.subnet:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=net.subnet, gateway=net.gateway)])
    client.networks.create(net.name, driver=net.driver, options=options, ipam=ipam,
                           internal=net.internal, attachable=net.driver == "overlay",
                           check_duplicate=True)

