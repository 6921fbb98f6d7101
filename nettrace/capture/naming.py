"""Names of the places a hop was seen, shared by the pcapng writer and golden signatures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from nettrace.trace.model import Hop, NfRule

if TYPE_CHECKING:
    from nettrace.topology.model import Lab


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


def rule_text(rule: NfRule, alias: Callable[[str | None], str | None] = lambda t: t) -> str:
    """`ip filter FORWARD: <rule> -> drop`, device names passed through `alias`."""
    text = f"{rule.family} {rule.table} {rule.chain}"
    if rule.rule:
        text += f": {alias(rule.rule)}"
    if rule.verdict:
        text += f" -> {rule.verdict}"
    return text
