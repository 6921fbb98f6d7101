"""Hops -> a Path with its verdict: delivered (where, to what), dropped (where, why,
which rule) or lost (last hop seen)."""

from __future__ import annotations

from nettrace.trace.model import DELIVERED, DROPPED, LOST, Hop, NfRule, Path, Verdict

#: where the kernel frees packets that waited for an ARP answer that never came
NEIGH_GAVE_UP = ("neigh_timer_handler", "neigh_invalidate")
#: drops that end a packet which already reached its destination's stack
AFTER_DELIVERY = {"NO_SOCKET": "to stack; no socket was waiting",
                  "NOT_SPECIFIED": "to stack"}


def verdict(hops: list[Hop], *, arp_target_ns: str | None = None,
            answered: str | None = None) -> Verdict:
    """Decide how the packet's journey ended, from its hops (and the answer's kind:
    echo-reply, SYN-ACK, RST-ACK, dest-unreach... when an answer was seen)."""
    delivered_at: int | None = None
    for i, hop in enumerate(hops):
        if hop.point.startswith("nf:") and hop.verdict in ("drop", "stolen"):
            drop = next((h for h in hops[i + 1:] if h.point == "drop"), None)
            reason = drop.drop_reason if drop else hop.verdict
            if drop and drop.location:
                reason = f"{reason} at {drop.location}"
            return Verdict(DROPPED, where=f"{hop.place} {hop.hook}", reason=reason,
                           rule=hop.rule, hop_index=i)
        if hop.point == "nf:LOCAL_IN" and hop.verdict == "accept" and \
                not (hop.packet and hop.packet.outer):       # the VXLAN outer packet: not yet
            delivered_at = i
        if arp_target_ns and hop.netns == arp_target_ns and hop.point in (
                "tp:netif_receive_skb", "tc:ingress", "tp:netif_rx"):
            delivered_at = i if delivered_at is None else delivered_at
        if hop.point == "drop":
            if delivered_at is not None and (hop.skb != hops[delivered_at].skb or (
                    hops[delivered_at].netns == hop.netns and hop.drop_reason in AFTER_DELIVERY)):
                continue                 # a copy dropped after delivery, or no socket waiting
            reason = hop.drop_reason or "dropped"
            if hop.location:
                reason = f"{reason} at {hop.location}"
            prev = next((h for h in reversed(hops[:i]) if h.device), hop)
            return Verdict(DROPPED, where=prev.place, reason=reason, rule=hop.rule, hop_index=i)
    if delivered_at is not None:
        hop = hops[delivered_at]
        tail = [h for h in hops[delivered_at + 1:] if h.point == "drop" and h.netns == hop.netns]
        reason = f"answered: {answered}" if answered else (
            AFTER_DELIVERY[tail[0].drop_reason] if tail else "to stack")
        where = hop.sandbox or hop.host or hop.netns
        return Verdict(DELIVERED, where=where, reason=reason, hop_index=delivered_at)
    if not hops:
        return Verdict(LOST, reason="no probe saw it (not sent, or outside the lab's namespaces)")
    last = hops[-1]
    if last.point == "consume" and (last.location or "").startswith(NEIGH_GAVE_UP):
        prev = next((h for h in reversed(hops) if h.device), last)
        return Verdict(DROPPED, where=prev.place, hop_index=len(hops) - 1,
                       reason=f"no ARP answer for the next hop (freed at {last.location})")
    return Verdict(LOST, where=last.place, reason=f"last seen at {last.point}",
                   hop_index=len(hops) - 1)


def attach_rules(hops: list[Hop], rules: dict[tuple[str, str], list[NfRule]]) -> None:
    """Put the nft trace verdict of each (namespace, hook) on its netfilter hop."""
    for hop in hops:
        if not hop.point.startswith("nf:") or hop.netns is None:
            continue
        found = rules.get((hop.netns, hop.hook or ""), [])
        if not found:
            continue
        drops = [r for r in found if r.verdict == "drop"]
        hop.rule = drops[0] if drops else found[-1]


def device_sequence(path: Path) -> list[str]:
    """Devices crossed, in order, once per crossing: c1:eth0, host:vethX, host:docker0...

    Bridges have no receive event of their own (the bridge runs inside the port's
    receive): they appear through the netfilter hops br_netfilter runs on them.
    """
    out: list[str] = []
    for hop in path.hops:
        bridge_nf = hop.point.startswith("nf:") and hop.role == "bridge"
        if (hop.point.startswith(("tp:", "tc:")) or bridge_nf) and hop.device:
            if not out or out[-1] != hop.place:
                out.append(hop.place)
    return out
