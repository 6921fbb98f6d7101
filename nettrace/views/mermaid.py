"""A path drawn over its topology as a Mermaid flowchart (`--format mermaid`), for pasting
into a GitHub issue or a Markdown file (GitHub renders ```mermaid blocks).

Each namespace owner (container, host, client, overlay sandbox) is a subgraph holding its
lab devices; the request's crossings are numbered solid arrows, the reply's dashed arrows
(`r1`, `r2`, ...). An arrow's label says what happened on arrival: netfilter hooks with
their verdict and deciding rule, header changes (DNAT, MASQUERADE, TTL, VXLAN). The path
ends in a verdict node, red for a drop (with the reason and rule), green for a delivery.
Device names Docker hashes from ids are written as aliases (veth(c1), br(mynet)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nettrace.trace.model import HookVerdict, Path, Point, VerdictKind
from nettrace.views.names import Aliases, hop_device, hop_owner
from nettrace.views.paths import rule_text

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

MARK = {HookVerdict.ACCEPT: "ok", HookVerdict.DROP: "DROP", HookVerdict.STOLEN: "stolen"}


def _id(text: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9]", "_", text)


def _label(text: str) -> str:
    """Mermaid-safe quoted text (quotes and angle brackets as entities)."""
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


@dataclass
class _Stop:
    owner: str
    device: str
    role: str
    notes: list[str] = field(default_factory=list)


def _stops(path: Path, lab: "Lab | None", alias: Aliases) -> list[_Stop]:
    """Consecutive hops at one device fold into one stop; hooks and changes become notes."""
    stops: list[_Stop] = []
    for hop in path.hops:
        if hop.point in (Point.CONSUME, Point.DROP):    # frees: said by the verdict node
            continue
        owner, device = hop_owner(hop, lab), alias(hop_device(hop)) or "-"
        if not stops or (stops[-1].owner, stops[-1].device) != (owner, device):
            stops.append(_Stop(owner, device, hop.role or ""))
        notes = stops[-1].notes
        if hop.point.is_netfilter:
            text = f"{hop.hook} {MARK.get(hop.verdict, '?')}"
            if hop.rule is not None and not (hop.rule.rule or "").startswith("policy"):
                text += f": {rule_text(hop.rule, lab, hop.netns, alias)}"
            notes.append(text)
        notes += [alias(c) for c in hop.changes if not c.startswith("MAC ")]
    return stops


def _nodes(lab: "Lab | None", stops: list[_Stop], alias: Aliases) -> dict[str, dict[str, str]]:
    """owner -> {device: role} for the lab's devices (loopback and uplinks of unused owners
    left out) and every device the path crossed."""
    owners: dict[str, dict[str, str]] = {}
    used = {s.owner for s in stops}
    if lab is not None:
        from nettrace.topology.model import Role
        for itf in lab.interfaces:
            if itf.role in (Role.LOOPBACK,):
                continue
            from nettrace.trace.model import Hop
            owner = hop_owner(Hop(0, Point.DEV_QUEUE, host=itf.host, sandbox=itf.sandbox,
                                  netns=itf.netns), lab)
            if itf.role in (Role.UPLINK, Role.UNDERLAY) and owner not in used:
                continue
            owners.setdefault(owner, {})[alias(itf.ifname)] = itf.role.value
    for s in stops:
        owners.setdefault(s.owner, {}).setdefault(s.device, s.role)
    return owners


def _end(path: Path, key: str, alias: Aliases) -> tuple[str, str, str]:
    v = path.verdict
    text = f"{path.direction} {v.kind.value}"
    if v.where:
        text += f" at {alias(v.where)}"
    if v.reason:
        text += f" ({v.reason})"
    style = {VerdictKind.DELIVERED: "ok", VerdictKind.DROPPED: "drop"}.get(v.kind, "lost")
    return _id(f"end {key}"), text, style


def mermaid(path: Path, lab: "Lab | None" = None) -> str:
    """The request and its reply over the lab's topology, as a Mermaid flowchart."""
    alias = Aliases(lab)
    legs = [("", path)] + ([("r", path.reply)] if path.reply else [])
    stops = {key: _stops(p, lab, alias) for key, p in legs}
    nodes = _nodes(lab, [s for ss in stops.values() for s in ss], alias)
    out = ["flowchart LR",
           f"  %% nettrace: {path.src} -> {path.dst} ({path.proto}) in lab {path.lab}"]
    for owner, devices in nodes.items():
        out.append(f"  subgraph {_id('sg ' + owner)}[{_label(owner)}]")
        for device, role in devices.items():
            out.append(f"    {_id(owner + ' ' + device)}[{_label(f'{device} ({role})' if role else device)}]")
        out.append("  end")
    for key, p in legs:
        arrow = "-.->" if key else "-->"
        prev = None
        for n, stop in enumerate(stops[key], 1):
            here = _id(stop.owner + " " + stop.device)
            label = f"{key}{n}" + (": " + "; ".join(stop.notes) if stop.notes else "")
            if prev is None:
                start = _id(f"start {key}")
                out.append(f"  {start}(({_label(p.src if not key else p.src)})) {arrow}|"
                           f"{_label(label)}| {here}")
            else:
                out.append(f"  {prev} {arrow}|{_label(label)}| {here}")
            prev = here
        end, text, style = _end(p, key or "q", alias)
        out.append(f"  {end}{{{{{_label(text)}}}}}")
        out.append(f"  {prev or _id('start ' + key)} {arrow} {end}")
        out.append(f"  class {end} {style}")
    out += ["  classDef ok fill:#d4f7d4,stroke:#2a7a2a",
            "  classDef drop fill:#f9d0d0,stroke:#b00000",
            "  classDef lost fill:#fff3c4,stroke:#a08000"]
    return "\n".join(out)
