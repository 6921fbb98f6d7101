"""What the profiles share beyond rendering rules: one render for both address families, the
loading and reading of iptables-syntax rulesets, and which endpoints Docker 28+ guards
against direct access (both Docker 29 backends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nettrace.topology.firewall import index
from nettrace.topology.firewall.base import Family, Ruleset, bridges
from nettrace.topology.model import GatewayMode

if TYPE_CHECKING:
    from typing import Iterator

    from nettrace.topology.model import Endpoint, FwRule, Host, Lab, Network


def direct_access_guarded(lab: "Lab", host: "Host", nets: list["Network"],
                          fam: Family) -> "Iterator[tuple[Endpoint, Network]]":
    """The endpoints on `host` (with their network) whose address Docker 28+ guards in raw
    PREROUTING: packets to it that did not come in on its own bridge are dropped. Every
    endpoint with an address of this family on a non-internal network, except in the
    nat-unprotected and routed gateway modes, which let the LAN reach containers."""
    for sb in lab.sandboxes.values():
        if sb.host != host.name:
            continue
        for ep in sb.endpoints:
            n = next((x for x in nets if x.name == ep.network), None)
            if n is None or not fam.addr(ep) or n.internal or \
                    fam.mode(n) in (GatewayMode.NAT_UNPROTECTED, GatewayMode.ROUTED):
                continue
            yield ep, n


class TwoFamilies:
    """render(): the IPv4 rules, with the same layout for IPv6 in `ipv6` when the engine writes
    ip6tables rules (engine.ip6tables) and the host has IPv6 networks. A profile renders one
    family in `_render(lab, host, family)`."""

    def render(self, lab: "Lab", host: "Host") -> Ruleset:
        ruleset = self._render(lab, host, Family(4))
        if lab.engine.ip6tables_on and any(n.ipv6 and n.subnet_v6 for n in bridges(lab, host)):
            ruleset.ipv6 = self._render(lab, host, Family(6))
        return ruleset

    def _render(self, lab: "Lab", host: "Host", fam: Family) -> Ruleset:
        raise NotImplementedError


class IptablesLayout(TwoFamilies):
    """A profile written in iptables syntax: loaded with iptables-restore (ip6tables-restore)
    and indexed from iptables-save (ip6tables-save)."""

    syntax = "iptables"

    def load(self, lab: "Lab", host: "Host", ruleset: Ruleset) -> list["FwRule"]:
        return index.load_iptables_ruleset(host.name, host.netns, ruleset)

    def read(self, lab: "Lab", host: "Host", ruleset: Ruleset) -> list["FwRule"]:
        return index.read_iptables_ruleset(host.name, host.netns, ruleset)

    def listing(self, host: "Host") -> tuple[str, str]:
        from nettrace.topology.firewall.saved import dump
        return "iptables-save", dump(host.netns)
