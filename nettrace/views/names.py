"""Names of places in the lab's words, for every view: who owns a hop (container, client,
host, `sandbox@host`), which device, and stable aliases for device names Docker hashes from
ids (`veth(c1)` for a veth host end, `br(mynet)` for a user-defined bridge), so goldens,
`nettrace diff` and `lab diff` compare across lab names and engines."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nettrace.trace.model import Hop

if TYPE_CHECKING:
    from nettrace.topology.model import Interface, Lab


def owner_name(sandbox: str | None, host: str | None, lab: "Lab | None") -> str | None:
    """A container or client by name; a per-host sandbox (an overlay network's, present on
    every host under one name) as `sandbox@host`; else the Docker host."""
    if sandbox:
        if lab is not None and host and sandbox not in lab.sandboxes \
                and sandbox not in lab.clients:
            return f"{sandbox}@{host}"
        return sandbox
    return host


def hop_owner(hop: Hop, lab: "Lab | None" = None) -> str:
    """Who a hop belongs to: the container, client or host (the underlay switch otherwise).

    What the hop lacks is taken from the lab's record of the hop's namespace."""
    sandbox, host = hop.sandbox, hop.host
    if lab is not None and hop.netns and not (sandbox and host):
        if hop.netns == lab.underlay_netns:
            return "underlay"
        known = next((i for i in lab.interfaces if i.netns == hop.netns), None)
        if known is not None:
            sandbox, host = sandbox or known.sandbox, host or known.host
    return owner_name(sandbox, host, lab) or hop.netns or "?"


def hop_device(hop: Hop) -> str:
    return hop.device or hop.in_dev or hop.out_dev or "-"


def veth_peer(itf: "Interface", owner_of_ns: dict[str, str]) -> tuple[str, str]:
    """(owner, interface) at the container end of a veth host end: ("c1", "eth0")."""
    peer_ns, _, peer_if = (itf.peer or "").rpartition("/")
    return owner_of_ns.get(peer_ns) or itf.sandbox or itf.network or "?", peer_if


def veth_alias(owner: str, peer_if: str) -> str:
    """A veth host end by the container end it serves: veth(c1), veth(c1:eth1)."""
    return f"veth({owner}{'' if peer_if == 'eth0' else ':' + peer_if})"


_HASHED_VETH = re.compile(r"^veth[0-9a-f]{7}$")
_HASHED_BRIDGE = re.compile(r"^br-[0-9a-f]{12}$")
_HASHED = re.compile(r"\b(veth[0-9a-f]{7}|br-[0-9a-f]{12})\b")


class Aliases:
    """Device names hashed from the lab's name (or a Docker engine's ids) -> stable aliases
    (veth(c1), br(mynet)). With `unknown=True` a hashed name the lab does not record (an
    engine's device nettrace did not discover) becomes veth(?) or br(?), so two sides that
    hash differently still compare (`lab diff`); by default it is left as it is."""

    def __init__(self, lab: "Lab | None", *, unknown: bool = False):
        self.names: dict[str, str] = {}
        self.unknown = unknown
        if lab is not None:
            from nettrace.topology.model import Role
            by_netns = {sb.netns: sb.name for sb in lab.sandboxes.values()}
            for itf in lab.interfaces:
                if itf.role == Role.VETH_HOST and itf.peer and _HASHED_VETH.match(itf.ifname):
                    self.names[itf.ifname] = veth_alias(*veth_peer(itf, by_netns))
                elif itf.role == Role.BRIDGE and _HASHED_BRIDGE.match(itf.ifname) and \
                        itf.network:
                    self.names[itf.ifname] = f"br({itf.network})"
        if unknown:
            self._re = _HASHED
        else:
            self._re = (re.compile(r"\b(" + "|".join(map(re.escape, self.names)) + r")\b")
                        if self.names else None)

    def _one(self, m: re.Match) -> str:
        name = m.group(1)
        if name in self.names:
            return self.names[name]
        return "veth(?)" if name.startswith("veth") else "br(?)"

    def __call__(self, text: str | None) -> str | None:
        if not text or self._re is None:
            return text
        return self._re.sub(self._one, text)
