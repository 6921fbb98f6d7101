"""A namespace's iptables rules as iptables-save prints them (no counters or comments)."""

from __future__ import annotations

from nettrace.topology import netns


def dump(netns_name: str) -> str:
    """The namespace's rules as iptables-save prints them, without counters or comments."""
    out = netns.run(netns_name, ["iptables-save"], check=False).stdout
    keep = [ln if not ln.startswith(":") else ln.split(" [")[0]
            for ln in out.splitlines() if ln and not ln.startswith("#")]
    return "\n".join(keep)
