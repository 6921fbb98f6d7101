"""Why Docker installed the netfilter rule a hop names: its purpose, and the network it serves.

The lab's rule index (`Lab.rules`, `lab.rule_for(host, family, table, chain, handle)`,
maintained by the firewall profiles) is the source: a traced `NfRule` keeps numbers and
is looked up there. Until every traced rule carries a handle the index knows,
`_purpose_20_10` reads Docker 20.10's chain layout from the rule text: it is the one
place that knows chain names, and goes once the index covers every profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nettrace.topology.model import Lab
from nettrace.trace.model import Hop, NfRule

# RulePurpose values (the rule index's enum is a str Enum with these values)
ISOLATION, ICC, INTERNAL = "isolation", "icc", "internal"
PUBLISHED_PORT, UNPUBLISHED_PORT_DROP = "published-port", "unpublished-port-drop"
DIRECT_ACCESS, CONNTRACK_ESTABLISHED = "direct-access", "conntrack-established"
DOCKER_USER, USER_FIREWALL, POLICY = "docker-user", "user-firewall", "policy"
MASQUERADE, DNAT, EGRESS = "masquerade", "dnat", "egress"


@dataclass
class RuleInfo:
    """A traced rule, explained."""

    purpose: str | None        # a RulePurpose value, None when nobody can tell
    network: str | None        # the Docker network the rule serves, when it serves one
    text: str                  # the rule in the profile's own syntax
    chain: str
    table: str
    number: int | None = None  # position in its chain, 1-based, when the index knows it

    @property
    def named(self) -> str:
        """`filter FORWARD rule 3: -A FORWARD -i br0 -o br0 -j DROP` (what a user greps for)."""
        where = f"{self.table} {self.chain}"
        if self.number:
            where += f" rule {self.number}"
        return f"{where}: {self.text}"


def explain(lab: Lab, hop: Hop, rule: NfRule | None = None) -> RuleInfo | None:
    """The purpose of the rule that decided at `hop` (or of `rule`)."""
    rule = rule or hop.rule
    if rule is None:
        return None
    finder = getattr(lab, "rule_for", None)
    if finder is not None and rule.handle is not None and hop.host:
        fw = finder(hop.host, rule.family, rule.table, rule.chain, rule.handle)
        if fw is not None:
            purpose = getattr(fw.purpose, "value", fw.purpose)
            return RuleInfo(purpose, fw.network, fw.text, fw.chain, fw.table, fw.number)
    purpose, network = _purpose_20_10(lab, hop, rule)
    return RuleInfo(purpose, network, rule.rule or rule.verdict or "", rule.chain, rule.table)


def _bridge_network(lab: Lab, host: str | None, device: str) -> str | None:
    for net in lab.networks:
        if net.device == device and (host is None or net.host in (None, host)):
            return net.name
    return None


def _purpose_20_10(lab: Lab, hop: Hop, rule: NfRule) -> tuple[str | None, str | None]:
    """Docker 20.10's layout (nettrace.topology.firewall) read from nft trace text."""
    text = rule.rule or ""
    devices = re.findall(r'[io]ifname (?:!= )?"([^"]+)"', text)
    network = next((n for n in (_bridge_network(lab, hop.host, d) for d in devices) if n), None)
    chain, table = rule.chain, rule.table
    if text.startswith("policy "):
        return POLICY, None
    if chain == "DOCKER-USER":
        return DOCKER_USER, network
    if chain == "DOCKER-ISOLATION-STAGE-2":
        return ISOLATION, network
    if chain == "DOCKER-ISOLATION-STAGE-1":
        if re.search(r"ip [sd]addr != ", text):
            return INTERNAL, network
        return ISOLATION, network
    if table == "nat":
        if "dnat" in text:
            return DNAT, network
        if "masquerade" in text:
            return MASQUERADE, network
        return None, network
    if chain == "DOCKER" and table == "filter":
        return (PUBLISHED_PORT if text.endswith("accept") else UNPUBLISHED_PORT_DROP), network
    if table == "raw" and chain == "PREROUTING" and text.endswith("drop"):
        m = re.search(r"ip daddr (\d+\.\d+\.\d+\.\d+)", text)
        if m and any(ep.ipv4 == m.group(1) for sb in lab.sandboxes.values()
                     for ep in sb.endpoints) and "iifname !=" in text:
            return DIRECT_ACCESS, network
        return USER_FIREWALL, network
    if chain == "FORWARD" and table == "filter":
        if "ct state" in text and "established" in text:
            return CONNTRACK_ESTABLISHED, network
        m = re.match(r'iifname "([^"]+)" oifname "([^"]+)" (accept|drop)$', text)
        if m and m.group(1) == m.group(2) and network:
            return ICC, network
        if re.match(r'iifname "[^"]+" oifname != "[^"]+" accept$', text) and network:
            return EGRESS, network
    return USER_FIREWALL, network
