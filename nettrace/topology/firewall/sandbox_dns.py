"""Embedded DNS rules inside a container on a user-defined network (docker-drivers.md §8).

The same in every engine profile: Docker writes them with iptables in the container's
namespace (the nftables backend's `ip docker-dns` table is not reproduced)."""

from __future__ import annotations

import hashlib

from nettrace.topology.firewall.base import IptablesDoc, Ruleset, builtin_policies
from nettrace.topology.firewall.purposes import RulePurpose

DNS_IP = "127.0.0.11"


def dns_ports(sandbox) -> tuple[int, int]:
    """The embedded resolver's (udp, tcp) ports for a container: Docker picks random ones;
    nettrace derives them from the name so golden files stay stable."""
    h = int(hashlib.sha1(sandbox.name.encode()).hexdigest()[:6], 16)
    return 30000 + h % 15000, 45000 + h % 15000


def render(sandbox) -> Ruleset:
    udp, tcp = dns_ports(sandbox)
    doc = IptablesDoc()
    doc.table("nat", builtin_policies("nat"), ["DOCKER_OUTPUT", "DOCKER_POSTROUTING"])
    add = lambda chain, spec: doc.add("nat", chain, spec, RulePurpose.EMBEDDED_DNS)
    add("OUTPUT", f"-d {DNS_IP}/32 -j DOCKER_OUTPUT")
    add("POSTROUTING", f"-d {DNS_IP}/32 -j DOCKER_POSTROUTING")
    add("DOCKER_OUTPUT", f"-d {DNS_IP}/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination {DNS_IP}:{tcp}")
    add("DOCKER_OUTPUT", f"-d {DNS_IP}/32 -p udp -m udp --dport 53 -j DNAT --to-destination {DNS_IP}:{udp}")
    add("DOCKER_POSTROUTING", f"-s {DNS_IP}/32 -p tcp -m tcp --sport {tcp} -j SNAT --to-source :53")
    add("DOCKER_POSTROUTING", f"-s {DNS_IP}/32 -p udp -m udp --sport {udp} -j SNAT --to-source :53")
    return doc.ruleset()


def render_sandbox_dns(sandbox) -> str:
    """iptables-restore input for a container's embedded DNS rules."""
    return render(sandbox).document
