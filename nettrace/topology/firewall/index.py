"""The rule index: every rule in a namespace's firewall, with its nft handle and purpose.

After a profile loads its rules, the namespace's ruleset is read back: `nft -j -a list
ruleset` gives each chain's rules in order with their handles (what `nft monitor trace`
reports), and `iptables-save` (iptables profiles) or `nft -a list table` (nftables profile)
gives the same rules in the profile's own syntax. Zipping them chain by chain yields
`FwRule(host, family, table, chain, handle, number, text, purpose, network)`. A rule's
purpose is the one its renderer gave it; a rule nobody rendered is the user's own
(`USER_FIREWALL`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque

from nettrace.errors import NettraceError
from nettrace.topology import netns
from nettrace.topology.firewall.base import IPT_TABLES, RenderedRule, Ruleset
from nettrace.topology.firewall.purposes import RulePurpose
from nettrace.topology.model import FwRule

_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")


def nft_handles(ruleset_json: str, family: str, tables: tuple[str, ...] | None = None
                ) -> dict[tuple[str, str], list[int]]:
    """(table, chain) -> rule handles in chain order, from `nft -j -a list ruleset`."""
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item in json.loads(ruleset_json or '{"nftables": []}').get("nftables", []):
        rule = item.get("rule")
        if rule and rule["family"] == family and (tables is None or rule["table"] in tables):
            out[(rule["table"], rule["chain"])].append(rule["handle"])
    return out


def iptables_save_rules(text: str) -> dict[tuple[str, str], list[str]]:
    """(table, chain) -> "-A CHAIN ..." lines in chain order, from iptables-save output."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and table:
            out[(table, line.split()[1])].append(line.strip())
    return out


def nft_rule_texts(listing: str) -> dict[int, str]:
    """handle -> rule text (counter values dropped: `counter`) from `nft -a list table ...`."""
    out: dict[int, str] = {}
    depth = 0
    for raw in listing.splitlines():
        line = raw.strip()
        m = _HANDLE.search(line)
        body = _HANDLE.sub("", line).strip()
        if body.endswith("{"):
            depth += 1
            continue
        if body == "}":
            depth -= 1
            continue
        # rule lines live two levels deep (table { chain { rule } }) and carry a handle
        if m and depth == 2 and not body.startswith(("type ", "policy ")):
            out[int(m.group(1))] = " ".join(_COUNTER.sub("counter", body).split())
    return out


def zip_rules(owner: str, family: str, handles: dict[tuple[str, str], list[int]],
              texts: dict[tuple[str, str], list[str]], rendered: list[RenderedRule]
              ) -> list[FwRule]:
    """Match each chain's handles with its texts in order; purposes from `rendered`."""
    want: dict[tuple[str, str, str], deque[RenderedRule]] = defaultdict(deque)
    for r in rendered:
        want[(r.table, r.chain, normalise(r.text))].append(r)
    out: list[FwRule] = []
    for (table, chain), lines in texts.items():
        hs = handles.get((table, chain), [])
        if len(hs) != len(lines):
            raise NettraceError(f"rule index: {owner} {family} {table} {chain} has "
                                f"{len(lines)} rules but nft lists {len(hs)}")
        for i, (handle, text) in enumerate(zip(hs, lines)):
            mine = want.get((table, chain, normalise(text)))
            r = mine.popleft() if mine else None
            out.append(FwRule(owner, family, table, chain, handle, i + 1, text,
                              r.purpose if r else RulePurpose.USER_FIREWALL,
                              r.network if r else None))
    return out


def normalise(text: str) -> str:
    """Rule text for matching: counter values dropped, blanks collapsed."""
    return " ".join(_COUNTER.sub("counter", text).split())


#: the iptables command family for each nft family the iptables-nft tools write to
IPTABLES = {"ip": "iptables", "ip6": "ip6tables"}


def read_iptables(owner: str, ns: str, rendered: list[RenderedRule],
                  family: str = "ip") -> list[FwRule]:
    """Index the iptables-nft rules in namespace `ns` (ip family, or ip6 for ip6tables)."""
    saved = netns.run(ns, [f"{IPTABLES[family]}-save"]).stdout
    listed = netns.run(ns, ["nft", "-j", "-a", "list", "ruleset"]).stdout
    return zip_rules(owner, family, nft_handles(listed, family, IPT_TABLES),
                     iptables_save_rules(saved), rendered)


def load_iptables(owner: str, ns: str, ruleset: Ruleset, family: str = "ip") -> list[FwRule]:
    """iptables-restore (ip6tables-restore) `ruleset` in `ns`, then index what the kernel holds."""
    netns.run(ns, [f"{IPTABLES[family]}-restore"], input=ruleset.document)
    return read_iptables(owner, ns, ruleset.rules, family)


def load_iptables_ruleset(owner: str, ns: str, ruleset: Ruleset) -> list[FwRule]:
    """Load and index an iptables profile's rules, and its IPv6 rules when it has them."""
    rules = load_iptables(owner, ns, ruleset)
    if ruleset.ipv6 is not None:
        rules += load_iptables(owner, ns, ruleset.ipv6, family="ip6")
    return rules


def read_iptables_ruleset(owner: str, ns: str, ruleset: Ruleset) -> list[FwRule]:
    """Index an iptables profile's rules (both families) as the namespace holds them now."""
    rules = read_iptables(owner, ns, ruleset.rules)
    if ruleset.ipv6 is not None:
        rules += read_iptables(owner, ns, ruleset.ipv6.rules, family="ip6")
    return rules


def read_nft_table(owner: str, ns: str, family: str, table: str,
                   rendered: list[RenderedRule]) -> list[FwRule]:
    """Index one native nft table in `ns` (nftables profile): texts in nft syntax."""
    listed = netns.run(ns, ["nft", "-j", "-a", "list", "table", family, table]).stdout
    handles = nft_handles(listed, family, (table,))
    by_handle = nft_rule_texts(netns.run(ns, ["nft", "-a", "list", "table", family, table]).stdout)
    texts = {key: [by_handle.get(h, "") for h in hs] for key, hs in handles.items()}
    return zip_rules(owner, family, handles, texts, rendered)
