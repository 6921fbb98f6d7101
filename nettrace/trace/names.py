"""Kernel numbers in the lab's words: netns inode -> host/sandbox, ifindex -> device/role,
drop reason code -> name, code address -> symbol.

Built once per tracer from the `Lab` (plus one interface listing per namespace), and
saved in trace bundles so offline assembly names hops the same way after the lab (and
the kernel it ran on) is gone. Drop reasons and code addresses are looked up in the
running kernel only when a `resolver` is set (live tracing); every answer is kept, so
a bundle holds exactly the words its events needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from nettrace.topology.model import Lab


@dataclass
class Place:
    """Who owns a namespace."""

    netns: str
    host: str | None = None
    sandbox: str | None = None


@dataclass
class Device:
    name: str
    role: str | None = None
    sandbox: str | None = None         # owner of the interface when not the namespace's
    kind: str | None = None            # veth | bridge | vxlan | macvlan (from the lab)


class Resolver(Protocol):
    """The running kernel's words for numbers (nettrace.trace.symbols)."""

    drop_reason: Callable[[int], str]
    symbolize: Callable[[int], "str | None"]


@dataclass
class Names:
    places: dict[int, Place] = field(default_factory=dict)                 # inode -> Place
    devices: dict[tuple[int, int], Device] = field(default_factory=dict)   # (inode, ifindex)
    reasons: dict[int, str] = field(default_factory=dict)      # skb_drop_reason -> name
    locations: dict[int, str | None] = field(default_factory=dict)   # address -> sym+off
    resolver: Resolver | None = field(default=None, repr=False, compare=False)

    def drop_reason(self, code: int) -> str:
        if code not in self.reasons:
            self.reasons[code] = (self.resolver.drop_reason(code) if self.resolver
                                  else f"reason {code}")
        return self.reasons[code]

    def location(self, addr: int) -> str | None:
        if not addr:
            return None
        if addr not in self.locations:
            if self.resolver is None:
                return None
            self.locations[addr] = self.resolver.symbolize(addr)
        return self.locations[addr]

    @classmethod
    def from_lab(cls, lab: "Lab", *, interfaces=None) -> "Names":
        """`interfaces(ns) -> {ifindex: name}` lists a namespace (links.interfaces by default)."""
        from nettrace.topology import netns
        from nettrace.trace import links, symbols
        list_ifaces = interfaces or links.interfaces
        names = cls(resolver=symbols)
        owners: dict[str, Place] = {}
        for ns in lab.namespaces or []:
            owners[ns] = Place(ns)
        if lab.underlay_netns:
            owners[lab.underlay_netns] = Place(lab.underlay_netns, sandbox="underlay")
        for host in list(lab.hosts.values()) + list(lab.clients.values()):
            owners[host.netns] = Place(host.netns, host=host.name,
                                       sandbox=host.name if host.kind == "client" else None)
        host_ns = {h.netns for h in lab.hosts.values()}
        for sb in lab.sandboxes.values():
            if sb.netns not in host_ns:       # host-mode containers are named by their host
                owners[sb.netns] = Place(sb.netns, host=sb.host, sandbox=sb.name)
        for itf in lab.interfaces:    # overlay sandboxes (br0 + vxlan0): named by their devices
            place = owners.setdefault(itf.netns, Place(itf.netns))
            if place.host is None and place.sandbox is None and (itf.sandbox or itf.host):
                place.host, place.sandbox = itf.host, itf.sandbox
        roles = {(i.netns, i.ifname): i for i in lab.interfaces}
        for ns, place in owners.items():
            try:
                inode = netns.inode(ns)
                by_index = list_ifaces(ns)
            except Exception:                 # a namespace that vanished: name what we can
                continue
            names.places[inode] = place
            for ifindex, ifname in by_index.items():
                itf = roles.get((ns, ifname))
                names.devices[(inode, ifindex)] = Device(
                    ifname, itf.role.value if itf else None,
                    itf.sandbox if itf and itf.sandbox != place.sandbox else None,
                    itf.kind if itf else None)
        return names

    def namespaces(self) -> list[str]:
        return [p.netns for p in self.places.values()]

    def place(self, inode: int) -> Place | None:
        return self.places.get(inode)

    def device(self, inode: int, ifindex: int) -> Device | None:
        if not ifindex:
            return None
        return self.devices.get((inode, ifindex))

    def to_dict(self) -> dict[str, Any]:
        return {"places": {str(k): vars(v) for k, v in self.places.items()},
                "devices": [[k[0], k[1], vars(v)] for k, v in self.devices.items()],
                "reasons": {str(k): v for k, v in self.reasons.items()},
                "locations": {str(k): v for k, v in self.locations.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Names":
        return cls({int(k): Place(**v) for k, v in d.get("places", {}).items()},
                   {(a, b): Device(**v) for a, b, v in d.get("devices", [])},
                   {int(k): v for k, v in d.get("reasons", {}).items()},
                   {int(k): v for k, v in d.get("locations", {}).items()})
