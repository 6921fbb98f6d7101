"""Docker's own rule documents as test fixtures (tests/fixtures/moby-rules/), the labs that
reproduce each scenario, and the normalisation used to compare a ruleset with a document.

Each fixture was derived from one document of moby's iptablesdoc/nftablesdoc (the file and
scenario are named at its top): iptables fixtures hold the document's `iptables commands`
blocks (`-P`/`-N`/`-A` per table, as `iptables -S` prints them), nftables fixtures the
document's full `table ip docker-bridges` listing.

Normalisation (the fixtures and their sources: tests/fixtures/moby-rules/README.md):
  * interface and address names: none needed. The labs use the documents' own bridge
    names (`bridge1`, `bridgeICC`, `bridgeNoICC`, via com.docker.network.bridge.name) and
    subnets (192.0.2.0/24, 198.51.100.0/24), and docker0 is 172.17.0.0/16 as in Docker.
  * counters are dropped (`counter packets N bytes N` -> `counter`; iptables `[N:N]`).
  * iptables: rules are compared chain by chain, in order; chain declarations and policies
    as sets. The FORWARD policy is DROP in a lab: dockerd set ip_forward itself in the
    fresh host namespace, which the documents say turns the policy to DROP; they were made
    on hosts that already forwarded (ACCEPT). Only the tables a document lists are compared.
  * nftables: whitespace; a map's elements are compared as a set; blocks (chains, maps) by
    name. Two lines differ by construction on this machine's nft 1.0.6 and are mapped:
    nat-OUTPUT's `priority -100` is the document's `priority dstnat` (1.0.6 refuses the
    name on the output hook), and filter-FORWARD's `policy drop` its `policy accept` (as
    FORWARD DROP above).
"""

from __future__ import annotations

import ipaddress
import os
import re

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "moby-rules")

_BR1 = ("  - {name: bridge1, bridge_name: bridge1, subnet: 192.0.2.0/24, gateway: 192.0.2.1%s}\n")
_C1 = "containers:\n  - {name: c1, networks: [bridge1], publish: [\"%s\"]}\n"

#: scenario -> (lab file text, backends the document exists for)
SCENARIOS: dict[str, str] = {
    "new-daemon": "networks: []\ncontainers: []\n",
    "usernet-portmap": "networks:\n" + _BR1 % "" + _C1 % "8080:80",
    "usernet-portmap-lo": "networks:\n" + _BR1 % "" + _C1 % "127.0.0.1:8080:80",
    "usernet-portmap-noproxy": "engine: {userland_proxy: false}\nnetworks:\n" + _BR1 % "" +
                               _C1 % "8080:80",
    "usernet-portmap-noicc": "networks:\n" + _BR1 % ", options: {com.docker.network.bridge."
                             "enable_icc: \"false\"}" + _C1 % "8080:80",
    "usernet-portmap-routed": "networks:\n" + _BR1 % ", gateway_mode: routed" + _C1 % "8080:80",
    "usernet-portmap-natunprot": "networks:\n" + _BR1 % ", options: {com.docker.network.bridge."
                                 "gateway_mode_ipv4: nat-unprotected}" + _C1 % "8080:80",
    # The document's second network is named bridgeNoICC and its rules are those of ICC
    # disabled (DROP), although its command line shows enable_icc=true: the rules are the oracle.
    "usernet-internal": (
        "networks:\n"
        "  - {name: neticc, bridge_name: bridgeICC, internal: true, subnet: 192.0.2.0/24,"
        " gateway: 192.0.2.1}\n"
        "  - {name: netnoicc, bridge_name: bridgeNoICC, internal: true, icc: false,"
        " subnet: 198.51.100.0/24, gateway: 198.51.100.1}\n"
        "containers:\n  - {name: c1, networks: [neticc]}\n  - {name: c2, networks: [netnoicc]}\n"),
}


def fixture(backend: str, scenario: str) -> str:
    ext = "rules" if backend == "iptables" else "nft"
    with open(os.path.join(FIXTURES, backend, f"{scenario}.{ext}")) as f:
        return f.read()


def scenarios(backend: str) -> list[str]:
    ext = ".rules" if backend == "iptables" else ".nft"
    have = {f[:-len(ext)] for f in os.listdir(os.path.join(FIXTURES, backend)) if f.endswith(ext)}
    return sorted(s for s in SCENARIOS if s in have)


def lab_text(scenario: str, backend: str) -> str:
    text = SCENARIOS[scenario]
    engine = f"engine: {{version: \"29\", firewall: {backend}"
    if text.startswith("engine: {"):
        return engine + ", " + text[len("engine: {"):]
    return engine + "}\n" + text


# -- iptables ---------------------------------------------------------------------------
def ipt_canon(text: str, tables: set[str] | None = None) -> dict:
    """{table: {"P": {...}, "N": {...}, chain: [rules...]}} from `iptables -S`-style
    fixture lines or iptables-save/iptables-restore text."""
    out: dict = {}
    table = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            out.setdefault(table, {"P": set(), "N": set()})
            continue
        if line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            line = f"-N {chain}" if policy == "-" else f"-P {chain} {policy}"
        if line.startswith("-P "):
            if line == "-P FORWARD DROP":
                line = "-P FORWARD ACCEPT"        # see the module docstring
            out[table]["P"].add(line)
        elif line.startswith("-N "):
            out[table]["N"].add(line)
        elif line.startswith("-A "):
            out[table].setdefault(line.split()[1], []).append(line)
    if tables is not None:
        out = {t: v for t, v in out.items() if t in tables}
    return out


def ipt_diff(expected: dict, got: dict) -> list[str]:
    """Human-readable differences, table by table and chain by chain (empty: equal)."""
    lines = []
    for table in sorted(expected):
        e, g = expected[table], got.get(table, {"P": set(), "N": set()})
        for key in sorted(set(e) | set(g), key=str):
            ev, gv = e.get(key, []), g.get(key, [])
            if isinstance(ev, set) or isinstance(gv, set):
                ev, gv = sorted(ev or []), sorted(gv or [])
            if ev != gv:
                lines.append(f"*{table} {key}:\n  expected {ev}\n  got      {gv}")
    return lines


# -- nftables ---------------------------------------------------------------------------
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")


def nft_canon(text: str) -> dict[str, list]:
    """{block header: [lines]} for `table ip docker-bridges`; map elements as a sorted list."""
    blocks: dict[str, list] = {}
    cur = None
    in_elements = False
    elems: list[str] = []
    for raw in text.splitlines():
        line = _COUNTER.sub("counter", raw).strip()
        line = re.sub(r"\s*# handle \d+$", "", line)
        if not line or line.startswith("#") or line.startswith("table ") or \
                line.startswith("# Warning"):
            continue
        if re.match(r"^(chain|map) \S+ \{$", line):
            cur = line[:-2]
            blocks[cur] = []
            continue
        if line == "}":
            cur = None
            continue
        if cur is None:
            continue
        if line.startswith("elements = {"):
            in_elements = True
            elems = []
            line = line[len("elements = {"):].strip()
        if in_elements:
            done = line.endswith("}")
            line = line.rstrip("}").strip()
            elems += [e.strip() for e in line.split(",") if e.strip()]
            if done:
                in_elements = False
                blocks[cur].append("elements: " + " | ".join(sorted(elems)))
            continue
        blocks[cur].append(" ".join(line.split()))
    return blocks


def nft_normalise(blocks: dict[str, list]) -> dict[str, list]:
    """The two documented mappings (module docstring)."""
    out = dict(blocks)
    if "chain nat-OUTPUT" in out:
        out["chain nat-OUTPUT"] = [ln.replace("priority -100;", "priority dstnat;")
                                   for ln in out["chain nat-OUTPUT"]]
    if "chain filter-FORWARD" in out:
        out["chain filter-FORWARD"] = [ln.replace("policy drop;", "policy accept;")
                                       for ln in out["chain filter-FORWARD"]]
    return out


def nft_document_canon(document: str) -> dict[str, list]:
    """The same blocks from the nft script a profile renders (`table {...}` + add rule)."""
    blocks: dict[str, list] = {}
    for raw in document.splitlines():
        line = raw.strip()
        m = re.match(r"^(chain|map) (\S+) \{ ?(.*?) ?\}$", line)
        if m:
            kind, name, body = m.groups()
            items = []
            if kind == "map":
                typ, _, rest = body.partition(";")
                items.append(typ.strip())
                em = re.search(r"elements = \{ (.*) \}", rest)
                if em:
                    elems = [e.strip() for e in em.group(1).split(",")]
                    items.append("elements: " + " | ".join(sorted(elems)))
            elif body:
                items.append(body)
            blocks[f"{kind} {name}"] = items
            continue
        m = re.match(r"^add rule ip \S+ (\S+) (.*)$", line)
        if m:
            blocks[f"chain {m.group(1)}"].append(" ".join(m.group(2).split()))
    return blocks


def nft_diff(expected: dict, got: dict) -> list[str]:
    out = []
    for key in sorted(set(expected) | set(got)):
        if expected.get(key) != got.get(key):
            out.append(f"{key}:\n  expected {expected.get(key)}\n  got      {got.get(key)}")
    return out


# -- a lab on paper (no kernel): what the builder would record, for the pure tests --------
def paper_lab(spec):
    """The Lab the builder records for `spec` (one host, bridge networks, containers with the
    first free addresses), without creating anything: input for the renderers."""
    from nettrace.topology.model import Endpoint, Host, Lab, Network, Sandbox, Scope
    lab = Lab(name=spec.name, engine=spec.engine)
    lab.hosts["host"] = Host("host", "ns.host")
    nets = [n for n in spec.networks if n.name == "bridge"] + \
        [n for n in spec.networks if not n.builtin]
    next_ip: dict[str, int] = {}
    for ns in nets:
        lab.networks.append(Network(
            name=ns.name, driver="bridge", scope=Scope.LOCAL, id="0" * 64, host="host",
            subnet=ns.subnet, gateway=ns.gateway, device=ns.bridge_name, icc=ns.icc,
            internal=ns.internal, masquerade=ns.masquerade and not ns.internal,
            gateway_mode=ns.gateway_mode, host_ipv4=ns.host_ipv4))
        next_ip[ns.name] = 2
    for c in spec.containers:
        sb = Sandbox(c.name, "host", f"ns.{c.name}", published=[str(p) for p in c.publish])
        for i, att in enumerate(c.networks):
            net = lab.network(att.network)
            if att.ip:
                ip = att.ip
            else:
                ip = ipaddress.IPv4Network(net.subnet)[next_ip[net.name]]
                next_ip[net.name] += 1
            sb.endpoints.append(Endpoint(f"{c.name}-{net.name}", c.name, net.name, f"eth{i}",
                                         "02:42:00:00:00:00", str(ip), 24, 1500))
        lab.sandboxes[c.name] = sb
    return lab

