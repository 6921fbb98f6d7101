"""Why Docker installed the netfilter rule a hop names: its purpose, and the network it serves.

The lab's rule index (`Lab.rules`, `lab.rule_for(host, family, table, chain, handle)`,
maintained by the firewall profiles) is the source: a traced `NfRule` keeps numbers and
is looked up there. For rules the index cannot know (a chain's policy verdict, a path
recorded without handles, an engine whose rules were not indexed) `_purpose_20_10` reads
Docker 20.10's chain layout from the rule text (a live 20.10 engine, `--docker`, has no
index): it is the one place that knows chain names, and goes once every engine has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nettrace.topology.firewall.purposes import RulePurpose
from nettrace.topology.model import Lab
from nettrace.trace.model import Hop, NfRule

P = RulePurpose


@dataclass
class RuleInfo:
    """A traced rule, explained."""

    purpose: str | None        # a RulePurpose value, None when nobody can tell
    network: str | None        # the Docker network the rule serves, when it serves one
    text: str                  # the rule in the profile's own syntax (else the nft trace's)
    chain: str
    table: str
    named: str                 # as every view names it (nettrace.views.paths.rule_text)


def explain(lab: Lab, hop: Hop, rule: NfRule | None = None) -> RuleInfo | None:
    """The purpose of the rule that decided at `hop` (or of `rule`)."""
    from nettrace.views.paths import rule_text
    rule = rule or hop.rule
    if rule is None:
        return None
    named = rule_text(rule, lab, hop.netns)
    owner = lab.owner_of_netns(hop.netns) if hop.netns else None
    fw = lab.rule_for(owner, rule.family, rule.table, rule.chain, rule.handle) if owner else None
    if fw is not None:
        purpose = fw.purpose
        if purpose == P.USER_FIREWALL and fw.chain in _user_chains(lab, fw):
            purpose = P.DOCKER_USER            # the administrator's rule, where Docker wants it
        return RuleInfo(purpose.value, fw.network, fw.text, fw.chain, fw.table, named)
    purpose, network = _purpose_20_10(lab, hop, rule)
    return RuleInfo(purpose, network, rule.rule or rule.verdict or "", rule.chain, rule.table,
                    named)


def _user_chains(lab: Lab, fw) -> set[str]:
    """Chains Docker jumps to for the administrator's rules (DOCKER-USER on iptables
    profiles): targets of the index's DOCKER_USER-purpose jumps on that host and table."""
    out = set()
    for r in lab.rules:
        if r.purpose == P.DOCKER_USER and (r.host, r.family, r.table) == (fw.host, fw.family,
                                                                        fw.table):
            m = re.search(r"(?:-j|-g|jump|goto) (\S+)$", r.text.strip())
            if m and m.group(1) not in ("RETURN", "return", "ACCEPT", "DROP"):
                out.add(m.group(1))
    return out


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
        return P.POLICY, None
    if chain == "DOCKER-USER":
        return P.DOCKER_USER, network
    if chain == "DOCKER-ISOLATION-STAGE-2":
        return P.ISOLATION, network
    if chain == "DOCKER-ISOLATION-STAGE-1":
        if re.search(r"ip [sd]addr != ", text):
            return P.INTERNAL, network
        return P.ISOLATION, network
    if table == "nat":
        if "dnat" in text:
            return P.DNAT, network
        if "masquerade" in text:
            return P.MASQUERADE, network
        return None, network
    if chain == "DOCKER" and table == "filter":
        return (P.PUBLISHED_PORT if text.endswith("accept") else P.UNPUBLISHED_PORT_DROP), network
    if table == "raw" and chain == "PREROUTING" and text.endswith("drop"):
        m = re.search(r"ip daddr (\d+\.\d+\.\d+\.\d+)", text)
        if m and any(ep.ipv4 == m.group(1) for sb in lab.sandboxes.values()
                     for ep in sb.endpoints) and "iifname !=" in text:
            return P.DIRECT_ACCESS, network
        return P.USER_FIREWALL, network
    if chain == "FORWARD" and table == "filter":
        if "ct state" in text and "established" in text:
            return P.CONNTRACK_ESTABLISHED, network
        m = re.match(r'iifname "([^"]+)" oifname "([^"]+)" (accept|drop)$', text)
        if m and m.group(1) == m.group(2) and network:
            return P.ICC, network
        if re.match(r'iifname "[^"]+" oifname != "[^"]+" accept$', text) and network:
            return P.OUTGOING, network
    return P.USER_FIREWALL, network
