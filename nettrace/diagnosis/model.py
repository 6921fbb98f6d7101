"""What a diagnosis says: a cause code, a paragraph in Docker's terms, the evidence hops,
and fixes (docker commands and the same change as structured edits of the lab file).

Plain data, no imports beyond the standard library: `nettrace.trace.model.Path` carries a
`Diagnosis` and serialises it with `to_dict()` / `from_dict()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Cause(str, Enum):
    """Stable cause codes (README: "Diagnosis"). Add codes; never rename one."""

    OK = "ok"
    NETWORK_ISOLATION = "network-isolation"
    ICC_DISABLED = "icc-disabled"
    INTERNAL_NETWORK = "internal-network"
    PORT_NOT_PUBLISHED = "port-not-published"
    NO_LISTENER = "no-listener"
    DOCKER_USER_RULE = "docker-user-rule"
    HOST_FIREWALL_INPUT = "host-firewall-input"
    HOST_FIREWALL_FORWARD = "host-firewall-forward"   # a host rule outside DOCKER-USER
    FORWARD_POLICY = "forward-policy"
    IPV6_FORWARD_POLICY = "ipv6-forward-policy"        # IPv6 dropped where IPv4 is accepted
    IP_FORWARD_DISABLED = "ip-forward-disabled"
    BRIDGE_NETFILTER_DISABLED = "bridge-netfilter-disabled"
    DIRECT_ACCESS_BLOCKED = "direct-access-blocked"
    MTU_BLACKHOLE = "mtu-blackhole"
    VXLAN_BLOCKED = "vxlan-blocked"
    MACVLAN_HOST_ISOLATION = "macvlan-host-isolation"
    NO_ROUTE = "no-route"
    ARP_UNRESOLVED = "arp-unresolved"
    HAIRPIN = "hairpin"
    CONNTRACK_INVALID = "conntrack-invalid"
    RP_FILTER = "rp-filter"
    TTL_EXPIRED = "ttl-expired"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class EditOp(str, Enum):
    SET = "set"          # set the value at path (creating mappings on the way)
    ADD = "add"          # append value to the list at path (creating it; no duplicate)
    REMOVE = "remove"    # remove value from the list at path, or the key/item at path


@dataclass
class LabEdit:
    """One change to a lab file, applied by `nettrace.diagnosis.edits.apply_edits`.

    `path` walks the YAML: dotted keys, `[name=X]` selects the list item named X (a plain
    string item "X" counts), `[N]` the N-th item, `["a.b"]` a key containing dots:
    `networks[name=front].icc`, `containers[name=c1].networks`,
    `hosts[name=host].sysctls["net.ipv4.ip_forward"]`.
    """

    op: EditOp
    path: str
    value: Any = None

    def __str__(self) -> str:
        if self.op == EditOp.REMOVE and self.value is None:
            return f"remove {self.path}"
        return f"{self.op.value} {self.path} {_yaml_scalar(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op.value, "path": self.path, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabEdit:
        return cls(EditOp(d["op"]), d["path"], d.get("value"))


@dataclass
class Fix:
    """One way out: what a user runs against Docker, and the same change to the lab file."""

    docker: list[str] = field(default_factory=list)
    lab: list[LabEdit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"docker": list(self.docker), "lab": [e.to_dict() for e in self.lab]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fix:
        return cls(list(d.get("docker", [])), [LabEdit.from_dict(e) for e in d.get("lab", [])])


@dataclass
class Diagnosis:
    """Why a path ended as it did.

    `evidence` holds hop indexes counted over the request's hops and then the reply's
    (reply hop j is index len(path.hops) + j), so one list can point at both.
    """

    cause: Cause
    summary: str
    evidence: list[int] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause.value, "summary": self.summary,
                "evidence": list(self.evidence), "fixes": [f.to_dict() for f in self.fixes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        return cls(Cause(d["cause"]), d.get("summary", ""), list(d.get("evidence", [])),
                   [Fix.from_dict(f) for f in d.get("fixes", [])])


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if (not value or any(c in value for c in " :#[]{},")) else value
    return str(value)
