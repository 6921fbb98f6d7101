"""How paths look to a person (rich tables, one-line verdicts, rule text, pcapng comments)
and to a program (JSON). No bcc, no kernel. Every view names rules with `rule_text` and
verdicts with `verdict_line`/`verdict_words`: the one place each is written.

JSON schema (`nettrace path --json`, one object per line, one per injected packet) is
`Path.to_dict()` of nettrace.trace.model:

    {"lab": str, "src": str, "dst": str, "proto": "icmp|udp|tcp|arp",
     "direction": "request",
     "verdict": {"kind": "delivered|dropped|lost", "where": str|null, "reason": str|null,
                 "rule": NfRule|null, "hop_index": int|null},
     "hops": [Hop, ...],
     "reply": <same object with "direction": "reply", "reply": null> | null,
     "fingerprint": {"trace_id", "proto", "src", "dst", "ip_id", "sport", "dport",
                     "icmp_id", "icmp_seq", "marker"}   (absent keys: not applicable),
     "events_lost": int, "probes_missing": [str],
     "diagnosis": Diagnosis|null (on the request; null on the reply)}
    Diagnosis = {"cause": "ok|network-isolation|icc-disabled|... (nettrace.diagnosis.Cause)",
                 "summary": str (why, in Docker's terms, naming the evidence hop and rule),
                 "evidence": [int] (hop indexes: the request's hops, then the reply's counted
                                    on: reply hop j is len(hops) + j),
                 "fixes": [{"docker": [str] (commands to run),
                            "lab": [{"op": "set|add|remove", "path": str, "value": any}]
                                   (the same change to the lab file:
                                    nettrace.diagnosis.apply_edits)}]}
    Hop   = {"ts_ns": int (kernel monotonic), "point": "tp:net_dev_queue|tp:netif_receive_skb|
             tp:netif_rx|tc:ingress|tc:egress|nf:<HOOK>|drop|consume",
             "host", "sandbox", "netns", "device", "role", "hook", "family", "in_dev",
             "out_dev", "verdict": "accept|drop|stolen"|null, "rule": NfRule|null,
             "drop_reason", "location", "packet": Packet|null, "changes": [str],
             "skb": int, "frame": base64 of the captured header bytes | null}
    Packet = {"src", "dst", "proto", "sport", "dport", "ttl", "ip_id", "length", "eth_src",
              "eth_dst", "info", "outer": Packet|null (VXLAN outer header), "vni"}
    NfRule = {"family", "table", "chain", "rule", "handle", "verdict"}
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Iterable

from nettrace.trace.model import (DELIVERED, DROPPED, Hop, HookVerdict, NfRule, Packet, Path,
                                  Point, Verdict)
from nettrace.views.names import Aliases, hop_device, hop_owner

VERDICT_STYLE = {DELIVERED: "green", DROPPED: "red"}
#: hook verdicts that ended the packet in the hook
STOPPED = (HookVerdict.DROP, HookVerdict.STOLEN)


def packet_summary(pkt: Packet | None) -> str:
    if pkt is None or not pkt.proto:
        return ""
    if pkt.proto == "arp":
        return f"arp {pkt.info or ''}".strip()
    src = f"{pkt.src}:{pkt.sport}" if pkt.proto in ("tcp", "udp") and pkt.sport else pkt.src
    dst = f"{pkt.dst}:{pkt.dport}" if pkt.proto in ("tcp", "udp") and pkt.dport else pkt.dst
    text = f"{src} > {dst} {pkt.proto}"
    if pkt.info:
        text += f" {pkt.info}"
    if pkt.ttl is not None:
        text += f" ttl {pkt.ttl}"
    if pkt.outer is not None:
        text = f"[vxlan {pkt.vni}: {pkt.outer.src} > {pkt.outer.dst}] " + text
    return text


def rule_text(rule: NfRule, lab=None, netns: str | None = None,
              alias: Callable[[str | None], str | None] | None = None) -> str:
    """A traced rule as the user writes it: the one place rules are named.

    When the lab's rule index (`Lab.rules`) knows the rule's handle in that namespace, the
    text is the engine profile's own syntax: `DOCKER rule 3: -A DOCKER ! -i br0 -o br0 -j DROP`
    (iptables-save, chain and number; other tables than filter are named first), or on the
    nftables profile `ip docker-bridges raw-PREROUTING rule 1: ... comment "DROP DIRECT ACCESS"`.
    Otherwise the nft translation the trace saw, with its verdict when the text does not end
    in it. `alias` renames hashed device names (views.names.Aliases) for stable text.
    """
    owner = lab.owner_of_netns(netns) if lab is not None and netns else None
    fw = lab.rule_for(owner, rule.family, rule.table, rule.chain, rule.handle) if owner else None
    if fw is None:
        text = f"{rule.family} {rule.table} {rule.chain}: {rule.rule or rule.verdict}"
        if rule.rule and rule.verdict and not rule.rule.lower().endswith(rule.verdict.lower()):
            text += f" -> {rule.verdict}"
    else:
        if fw.text.startswith("-A "):
            where = fw.chain if fw.table == "filter" else f"{fw.table} {fw.chain}"
        else:
            where = f"{fw.family} {fw.table} {fw.chain}"
        text = f"{where} rule {fw.number}: {fw.text}"
    return alias(text) if alias else text


def verdict_words(v: Verdict, rule_text: Callable[[NfRule], str] | None = None) -> str:
    """`dropped at host:br0 FORWARD (NETFILTER_DROP) by <rule>`: a verdict in one line."""
    text = v.kind.value
    if v.where:
        text += f" at {v.where}"
    if v.reason:
        text += f" ({v.reason})"
    if v.rule:
        if rule_text is not None:
            text += f" by {rule_text(v.rule)}"
        else:
            text += f" by {v.rule.family} {v.rule.table} {v.rule.chain}"
            if v.rule.rule:
                text += f": {v.rule.rule}"
    return text


def verdict_line(path: Path, lab=None) -> str:
    """The verdict in one line, its rule named by `rule_text`."""
    v = path.verdict
    netns = path.hops[v.hop_index].netns if v.hop_index is not None and \
        v.hop_index < len(path.hops) else None
    return verdict_words(v, lambda r: rule_text(r, lab, netns))


def hop_detail(hop: Hop, lab=None) -> str:
    """Verdict, rule, drop reason and header changes of one hop, in one cell."""
    parts = []
    if hop.point.is_netfilter:
        devs = " ".join(x for x in (f"in={hop.in_dev}" if hop.in_dev else "",
                                    f"out={hop.out_dev}" if hop.out_dev else "") if x)
        parts.append(f"{hop.verdict or '?'} {devs}".strip())
    if hop.rule is not None:
        parts.append(rule_text(hop.rule, lab, hop.netns))
    if hop.drop_reason:
        parts.append(hop.drop_reason + (f" at {hop.location}" if hop.location else ""))
    elif hop.point is Point.CONSUME and hop.location:
        parts.append(f"at {hop.location}")
    parts += hop.changes
    return "; ".join(parts)


def path_table(path: Path, *, title: str | None = None, lab=None):
    """A rich Table: one row per hop, times relative to the first hop."""
    from rich.table import Table
    from rich.text import Text
    table = Table(title=title or f"{path.direction}: {path.src} -> {path.dst} ({path.proto})",
                  title_justify="left", show_lines=False, pad_edge=False)
    for col, kw in (("#", {"justify": "right"}), ("+us", {"justify": "right"}), ("where", {}),
                    ("role", {}), ("point", {}), ("packet", {}), ("detail", {})):
        table.add_column(col, **kw)
    t0 = path.hops[0].ts_ns if path.hops else 0
    for i, hop in enumerate(path.hops):
        style = "red" if hop.point is Point.DROP or hop.verdict in STOPPED else None
        if path.verdict.hop_index == i and path.verdict.kind == DELIVERED:
            style = "green"
        cells = (str(i + 1), f"{(hop.ts_ns - t0) / 1000:.0f}", hop.place, hop.role or "",
                 hop.point, packet_summary(hop.packet), hop_detail(hop, lab))
        table.add_row(*(Text(c) for c in cells), style=style)   # Text: no markup in data
    return table


WHY_WIDTH = 80
COMPACT_WIDTH = 100
#: below this terminal width `nettrace path` prints the compact hop table
WIDE_TABLE_MIN = 150
SHORT_POINTS = {"tp:net_dev_queue": "tx", "tp:net_dev_start_xmit": "tx", "tp:net_dev_xmit": "tx",
                "tp:netif_receive_skb": "rx", "tp:netif_rx": "rx", "tc:ingress": "tc-in",
                "tc:egress": "tc-out", "drop": "DROP", "consume": "freed"}


def diagnosis_parts(diagnosis) -> list[tuple[str, str]]:
    """(head, text) rows of a diagnosis, for every view: ("why", "[cause] summary"), then
    per fix ("fix" or "or", command) and ("", "lab: edit") rows."""
    if diagnosis is None:
        return []
    rows = [("why", f"[{diagnosis.cause.value}] {diagnosis.summary}")]
    for n, fix in enumerate(diagnosis.fixes):
        items = list(fix.docker) + [f"lab: {edit}" for edit in fix.lab]
        for k, item in enumerate(items):
            rows.append(("" if k else ("fix" if n == 0 else "or"), item))
    return rows


def diagnosis_lines(diagnosis, width: int = WHY_WIDTH) -> list[str]:
    """The `why:` / `fix:` block under a verdict, wrapped to `width` columns."""
    import textwrap
    lines = []
    for head, text in diagnosis_parts(diagnosis):
        lines += textwrap.wrap(text, width, initial_indent=f"{head + ':' if head else '':>4} ",
                               subsequent_indent=" " * 5, break_on_hyphens=False,
                               break_long_words=True)
    return lines


def short_detail(hop: Hop, lab=None) -> str:
    """hop_detail in few words: verdict, the rule (unless a policy accept), reason, changes."""
    parts = []
    if hop.point.is_netfilter:
        parts.append(hop.verdict or "?")
    if hop.rule is not None and not (hop.rule.rule or "").startswith("policy accept"):
        parts.append(rule_text(hop.rule, lab, hop.netns))
    if hop.drop_reason:
        parts.append(hop.drop_reason + (f" at {hop.location}" if hop.location else ""))
    parts += hop.changes
    return "; ".join(parts)


def compact_table(path: Path, *, title: str | None = None, lab=None):
    """The hop table in at most COMPACT_WIDTH columns: no times, roles or per-hop packet
    (the packet is in the title; header changes stay in the detail)."""
    from rich.table import Table
    from rich.text import Text
    first = next((h.packet for h in path.hops if h.packet and h.packet.proto), None)
    head = title or f"{path.direction}: {path.src} -> {path.dst} ({path.proto})"
    if first is not None:
        head += f"  {packet_summary(first)}"
    table = Table(title=head, title_justify="left", pad_edge=False, width=COMPACT_WIDTH,
                  box=None, header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("where", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("point", no_wrap=True, max_width=12)
    table.add_column("detail", overflow="fold", ratio=1)
    for i, hop in enumerate(path.hops):
        style = "red" if hop.point is Point.DROP or hop.verdict in STOPPED else None
        if path.verdict.hop_index == i and path.verdict.kind == DELIVERED:
            style = "green"
        point = hop.hook if hop.point.is_netfilter else SHORT_POINTS.get(hop.point, hop.point)
        table.add_row(*(Text(c) for c in (str(i + 1), hop.place, point or "", short_detail(hop, lab))),
                      style=style)
    return table


def verdict_text(path: Path, lab=None):
    from rich.text import Text
    return Text(f"{path.direction} {verdict_line(path, lab)}",
                style=VERDICT_STYLE.get(path.verdict.kind, "yellow"))


def render(console, path: Path, lab=None, *, compact: bool | None = None) -> None:
    """Print a path, its reply, the verdict lines (rules named from `lab`'s rule index) and
    the diagnosis (why / fix).

    `compact`: the hop table in 100 columns; None picks it when the terminal is narrow."""
    from rich.text import Text
    if compact is None:
        compact = console.width < WIDE_TABLE_MIN
    for part in (path, path.reply) if path.reply else (path,):
        console.print(compact_table(part, lab=lab) if compact else path_table(part, lab=lab))
        console.print(verdict_text(part, lab), width=COMPACT_WIDTH if compact else None)
    if path.reply is None and path.proto in ("icmp", "tcp", "arp"):
        console.print("no reply seen", style="yellow")
    for line in diagnosis_lines(path.diagnosis):
        console.print(Text(line), style="bold" if line.startswith("why:") else None)
    if path.events_lost:
        console.print(f"warning: {path.events_lost} probe events were lost (ring buffer full)",
                      style="red")
    if path.probes_missing:
        console.print(f"probes not attached: {', '.join(path.probes_missing)}", style="yellow")


def outcome(path: Path) -> str:
    """delivered | dropped | lost, for --expect."""
    return path.verdict.kind


def to_json_lines(paths: Iterable[Path]) -> str:
    return "\n".join(json.dumps(p.to_dict(), sort_keys=True) for p in paths)


def live_line(path: Path, lab=None) -> str:
    """One line per observed packet for `nettrace trace`: where it went."""
    first = next((h.packet for h in path.hops if h.packet and h.packet.proto), None)
    places = []
    for hop in path.hops:
        if hop.device and (not places or places[-1] != hop.place):
            places.append(hop.place)
    return f"{packet_summary(first)}  {' -> '.join(places)}  => {verdict_line(path, lab)}"


def hop_comment(hop: Hop, index: int, count: int, path: Path, synthetic_l2: bool,
                reused: bool, lab=None) -> str:
    """The hop in words, for Wireshark's packet comment (pcapng)."""
    parts = [f"nettrace hop {index}/{count} {path.direction}: {hop.point}"]
    if hop.hook:
        parts.append(f"hook={hop.hook}")
    if hop.in_dev or hop.out_dev:
        parts.append(f"in={hop.in_dev or '-'} out={hop.out_dev or '-'}")
    if hop.verdict:
        parts.append(f"verdict={hop.verdict}")
    if hop.rule:
        parts.append(f"rule={rule_text(hop.rule, lab, hop.netns)}")
    if hop.drop_reason:
        parts.append(f"drop_reason={hop.drop_reason}")
    if hop.location:
        parts.append(f"at={hop.location}")
    if hop.changes:
        parts.append("changes=" + "; ".join(hop.changes))
    parts.append(f"path={path.src}->{path.dst} {path.proto}: {verdict_line(path, lab)}")
    if synthetic_l2:
        parts.append("(seen without link header: Ethernet header zeroed)")
    if reused:
        parts.append("(bytes not captured at this hop: last bytes seen on this path)")
    return " | ".join(parts)


# -- stable one-line text (golden signatures, nettrace diff) -----------------------------------
def hop_signature(hop: Hop, lab, alias: Aliases) -> str:
    """One stable line per hop: who, where, what the kernel did."""
    text = f"{hop_owner(hop, lab)}:{alias(hop_device(hop))} {hop.point}"
    if hop.hook:
        text += f" {hop.hook}"
    if hop.verdict:
        text += f" {hop.verdict}"
    if hop.rule:
        text += f" [{rule_text(hop.rule, lab, hop.netns, alias)}]"
    if hop.drop_reason:
        text += f" ({hop.drop_reason})"
    for change in hop.changes:            # NAT, TTL, VXLAN; MACs vary (random bridge MACs)
        if not change.startswith("MAC "):
            text += f" {{{alias(change)}}}"
    return text


#: " at nft_do_chain+0x46f" in a drop reason: a code offset that moves with every kernel build
_CODE_LOCATION = re.compile(r" at [\w.]+\+0x[0-9a-f]+")


def verdict_signature(path: Path, alias: Aliases, lab=None) -> str:
    """The verdict as every view says it (views.verdict_words), with stable names and no
    code offsets."""
    v = path.verdict
    netns = path.hops[v.hop_index].netns if v.hop_index is not None and \
        v.hop_index < len(path.hops) else None
    stable = dataclasses.replace(
        v, where=alias(v.where), reason=_CODE_LOCATION.sub("", v.reason) if v.reason else None)
    return verdict_words(stable, lambda r: rule_text(r, lab, netns, alias))


