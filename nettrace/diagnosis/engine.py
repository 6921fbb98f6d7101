"""diagnose(path, lab): why a traced path ended as it did, in Docker's terms, and what to do.

A pure function of the traced `Path` (request and reply) and the lab model: no kernel,
no bcc, no pyroute2. It reasons from evidence, in this order:

1. the request's verdict: the deciding hop, the netfilter rule there (its purpose, looked
   up in the lab's rule index), the kernel's drop reason and where it was freed;
2. the answer: RST or ICMP port unreachable (no listener), ICMP fragmentation needed
   (MTU), ICMP time exceeded (TTL), and the reply's own verdict;
3. the lab model: the networks each container is on and their options (icc, internal,
   MTU), published ports, listeners, hosts' sysctls and firewall entries.

Never from a lab's name or description. When the evidence does not decide, the cause is
`unknown` and the summary says what is missing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from nettrace.diagnosis.model import Cause, Diagnosis, EditOp, Fix, LabEdit
from nettrace.diagnosis.rules import RuleInfo, explain
from nettrace.topology.firewall.purposes import RulePurpose as P
from nettrace.topology.firewall.sandbox_dns import DNS_IP
from nettrace.topology.model import VXLAN_OVERHEAD, Host, Lab, Network, Sandbox
from nettrace.trace.model import DELIVERED, DROPPED, Hop, Path

VXLAN_PORT = 4789
#: kernel drop reasons (enum skb_drop_reason names) -> cause, when no rule decided
REASON_CAUSES = {
    "IP_INNOROUTES": Cause.NO_ROUTE, "IP_OUTNOROUTES": Cause.NO_ROUTE,
    "NEIGH_FAILED": Cause.ARP_UNRESOLVED, "NEIGH_QUEUEFULL": Cause.ARP_UNRESOLVED,
    "NEIGH_DEAD": Cause.ARP_UNRESOLVED, "NEIGH_CREATEFAIL": Cause.ARP_UNRESOLVED,
    "IP_RPFILTER": Cause.RP_FILTER, "PKT_TOO_BIG": Cause.MTU_BLACKHOLE,
}
ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED = 3, 11
ICMP_PORT_UNREACH, ICMP_FRAG_NEEDED = 3, 4
FORWARD_SYSCTL = "net.ipv4.ip_forward"
BRIDGE_NF_SYSCTL = "net.bridge.bridge-nf-call-iptables"


# -- the facts one diagnosis works from --------------------------------------------------

@dataclass
class _Facts:
    path: Path
    lab: Lab
    hops: list[Hop] = field(default_factory=list)   # request hops, then the reply's
    src: Sandbox | Host | None = None
    dst: Sandbox | Host | None = None                # what the packet was finally for
    dst_ip: str | None = None                        # the address the user sent to
    port: int | None = None
    proto: str = "icmp"

    @property
    def offset(self) -> int:
        return len(self.path.hops)


def _node_by_ip(lab: Lab, ip: str | None) -> Sandbox | Host | None:
    if not ip:
        return None
    for sb in lab.sandboxes.values():
        if any(ep.ipv4 == ip for ep in sb.endpoints):
            return sb
    for node in list(lab.hosts.values()) + list(lab.clients.values()):
        if node.address == ip:
            return node
    for net in lab.networks:              # a network's gateway is its host's own address
        if net.gateway == ip and net.host in lab.hosts:
            return lab.hosts[net.host]
    return None


def _node(lab: Lab, text: str) -> Sandbox | Host | None:
    name = text.rpartition(":")[0] if text.rpartition(":")[2].isdigit() else text
    try:
        node = lab.node(name)
    except KeyError:
        node = _node_by_ip(lab, name)
    if isinstance(node, Sandbox) and node.network_mode == "host":
        return lab.hosts.get(node.host, node)
    return node


def _facts(path: Path, lab: Lab) -> _Facts:
    fp = path.fingerprint or {}
    f = _Facts(path, lab, list(path.hops) + (list(path.reply.hops) if path.reply else []))
    f.proto = path.proto
    f.src = _node(lab, path.src)
    f.dst_ip = fp.get("dst")
    f.port = fp.get("dport") if path.proto in ("tcp", "udp") else None
    if f.port is None and path.dst.rpartition(":")[2].isdigit():
        f.port = int(path.dst.rpartition(":")[2])
    # the destination is who the packet was last addressed to (after DNAT)
    last_dst = next((h.packet.dst for h in reversed(path.hops)
                     if h.packet and h.packet.dst and h.packet.proto != "arp"), None)
    f.dst = _node_by_ip(lab, last_dst) or _node(lab, path.dst)
    if f.dst_ip is None:
        first = next((h.packet for h in path.hops if h.packet and h.packet.dst), None)
        f.dst_ip = first.dst if first else None
    return f


# -- words ----------------------------------------------------------------------------------

def _hop_ref(f: _Facts, i: int) -> str:
    """`hop 7 (host:br-1a2b FORWARD)`, numbered as the hop tables number them."""
    reply = i >= f.offset
    hop = f.hops[i]
    n = (i - f.offset if reply else i) + 1
    where = hop.place + (f" {hop.hook}" if hop.hook else "")
    return f"{'reply ' if reply else ''}hop {n} ({where})"


def _name(node: Sandbox | Host | None, address: str | None = None) -> str:
    if node is None:          # an address no container or node of the lab owns
        if address == DNS_IP:
            return f"Docker's embedded DNS server ({DNS_IP})"
        return address or "?"
    if isinstance(node, Sandbox):
        return f"container {node.name}"
    return f"{'client' if node.kind == 'client' else 'host'} {node.name}"


def _nets(lab: Lab, sb: Sandbox) -> list[Network]:
    out = []
    for ep in sb.endpoints:
        try:
            out.append(lab.network(ep.network, sb.host))
        except KeyError:
            continue
    return out


def _net_of_ip(lab: Lab, sb: Sandbox, ip: str | None) -> Network | None:
    for ep in sb.endpoints:
        if ep.ipv4 == ip:
            try:
                return lab.network(ep.network, sb.host)
            except KeyError:
                return None
    nets = _nets(lab, sb)
    return nets[0] if nets else None


def _on(lab: Lab, sb: Sandbox) -> str:
    names = [n.name for n in _nets(lab, sb)]
    if not names:
        return f"{sb.name} has no network"
    return f"{sb.name} is on {_list(names, 'network')}"


def _list(items: list[str], noun: str) -> str:
    if len(items) == 1:
        return f"{noun} {items[0]}"
    return f"{noun}s {', '.join(items[:-1])} and {items[-1]}"


def _rule_words(info: RuleInfo | None) -> str:
    return f"the rule `{info.named}`" if info else "an untraced rule"


# -- helpers on hops ------------------------------------------------------------------------

def _icmp(hop: Hop) -> tuple[int, int] | None:
    """(type, code) of an ICMP packet from the hop's captured bytes."""
    data, pkt = hop.frame, hop.packet
    if not data or pkt is None or pkt.proto != "icmp":
        return None
    off = 14 if pkt.eth_src else 0
    if len(data) < off + 20:
        return None
    ihl = (data[off] & 0xF) * 4
    if len(data) < off + ihl + 2:
        return None
    return data[off + ihl], data[off + ihl + 1]


def _answer(f: _Facts) -> tuple[int | None, Hop | None]:
    """The first reply hop with a packet (and its index)."""
    for i, hop in enumerate(f.hops[f.offset:]):
        if hop.packet and hop.packet.proto:
            return f.offset + i, hop
    return None, None


def _reason(hop: Hop | None, text: str | None) -> str:
    """The drop reason's enum name (first word of `NETFILTER_DROP at nft_do_chain+0x3e8`)."""
    raw = (hop.drop_reason if hop is not None and hop.drop_reason else None) or text or ""
    return raw.split(" ")[0]


def _drop_event(hops: list[Hop], start: int) -> int | None:
    for j in range(start, len(hops)):
        if hops[j].point == "drop":
            return j
    return None


def _size(f: _Facts) -> int | None:
    return next((h.packet.length for h in f.path.hops if h.packet and h.packet.length), None)


# -- firewall entries of the lab (hosts[].firewall) ---------------------------------------

def _entries(lab: Lab, host: str | None) -> list[str]:
    node = lab.hosts.get(host or "")
    return list(node.firewall) if node else []


def _sysctls(lab: Lab, host: str | None) -> dict:
    node = lab.hosts.get(host or "")
    return dict(node.sysctls) if node else {}


def _entry_chain(entry: str) -> tuple[str, str | None, str | None]:
    """(table, chain, target) of an `iptables` argument string."""
    words = entry.split()
    table = words[words.index("-t") + 1] if "-t" in words[:-1] else "filter"
    chain = next((words[i + 1] for i, w in enumerate(words[:-1])
                  if w in ("-A", "-I", "-P", "--append", "--insert", "--policy")), None)
    target = words[words.index("-j") + 1] if "-j" in words[:-1] else None
    if "-P" in words[:-1] or "--policy" in words[:-1]:
        target = words[-1]
    return table, chain, target


def _find_entry(lab: Lab, hop: Hop, info: RuleInfo | None) -> str | None:
    """The lab firewall entry that made the rule at `hop`, when one matches clearly."""
    if info is None:
        return None
    policy = info.purpose == P.POLICY or info.text.startswith("policy ")
    cands = []
    for entry in _entries(lab, hop.host):
        table, chain, target = _entry_chain(entry)
        if table != info.table or chain != info.chain:
            continue
        is_policy = "-P" in entry.split() or "--policy" in entry.split()
        if policy != is_policy:
            continue
        if target and target.upper() not in ("DROP", "REJECT", "TTL") and not policy:
            continue
        cands.append(entry)
    if len(cands) <= 1:
        return cands[0] if cands else None
    # several: the one whose addresses and ports appear in the traced text
    def score(entry: str) -> int:
        return sum(1 for tok in re.findall(r"\d+(?:\.\d+){3}|\b\d{2,5}\b", entry)
                   if tok.split("/")[0] in info.text)
    best = max(cands, key=score)
    return best if score(best) > 0 else None


def _undo(entry: str) -> str:
    """The iptables command that takes a firewall entry back."""
    words = entry.split()
    for i, w in enumerate(words):
        if w in ("-P", "--policy"):
            return "iptables " + " ".join(words[:i] + [w, words[i + 1], "ACCEPT"])
        if w in ("-A", "-I", "--append", "--insert"):
            rest = words[i + 2:]
            if w in ("-I", "--insert") and rest and rest[0].isdigit():
                rest = rest[1:]
            return "iptables " + " ".join(words[:i] + ["-D", words[i + 1]] + rest)
    return "iptables " + entry


def _remove_entry_fix(lab: Lab, host: str | None, entry: str) -> Fix:
    return Fix([_undo(entry)],
               [LabEdit(EditOp.REMOVE, f"hosts[name={host}].firewall", entry)])


# -- the diagnosis ------------------------------------------------------------------------

def diagnose(path: Path, lab: Lab) -> Diagnosis:
    """Why `path` (and its reply) ended as it did; see the module docstring."""
    f = _facts(path, lab)
    v = path.verdict
    if v.kind == DROPPED:
        d = _dropped(f, path, 0, "request")
    elif v.kind == DELIVERED:
        d = _delivered(f)
    else:
        d = _lost(f, path, 0, "request")
    d.summary = _sentences(d.summary)
    return d


def _sentences(text: str) -> str:
    """Capital letters where sentences start with one of our words (parts are written
    lower-case to compose); names (c1, br-1a2b) keep their case."""
    return re.sub(r"(^|\. )(container|host|client|the|no|a|an|nothing|cannot|reply)\b",
                  lambda m: m.group(1) + m.group(2).capitalize(), text.strip())


def _dropped(f: _Facts, part: Path, base: int, side: str) -> Diagnosis:
    """A drop of the request (base 0) or of the reply (base = offset)."""
    v = part.verdict
    if v.hop_index is None or not part.hops:
        return _refused_at_sender(f, part, side)
    i = v.hop_index
    hop = part.hops[i]
    rule = v.rule or hop.rule
    if hop.point.startswith("nf:") and hop.verdict in ("drop", "stolen"):
        if rule is not None and (rule.verdict or "").startswith("drop"):
            return _rule_drop(f, part, base, i, hop, explain(f.lab, hop, rule), side)
        drop_at = _drop_event(part.hops, i)
        if _is_vxlan(hop):
            return _vxlan(f, hop, None, [base + i], _prefix(side, f))
        return _unknown(f"{side} dropped by netfilter at {_hop_ref(f, base + i)}, but the rule "
                        f"was not traced (nft trace gave no verdict for it)",
                        [base + i] + ([base + drop_at] if drop_at is not None else []))
    reason = _reason(hop, v.reason)
    if hop.point == "consume" or "no ARP answer" in (v.reason or ""):
        reason = "NEIGH_FAILED"
    return _kernel_drop(f, part, base, i, hop, reason, side)


def _prefix(side: str, f: _Facts) -> str:
    if side == "reply":
        return (f"The request reached {_name(f.dst, f.dst_ip)}, but its reply did not come back: ")
    return ""


def _rule_drop(f: _Facts, part: Path, base: int, i: int, hop: Hop, info: RuleInfo,
               side: str) -> Diagnosis:
    lab = f.lab
    ev = [base + i]
    ref = _hop_ref(f, base + i)
    rule = _rule_words(info)
    purpose = info.purpose
    pre = _prefix(side, f)
    src = f.src if side == "request" else f.dst
    dst = f.dst if side == "request" else f.src
    vxlan = _is_vxlan(hop)
    if "ct state invalid" in info.text or "INVALID" in info.text:
        return _conntrack_invalid(f, hop, info, ev, pre)
    if vxlan:
        return _vxlan(f, hop, info, ev, pre)
    if purpose == P.ISOLATION:
        return _isolation(f, hop, info, ev, pre, src, dst)
    if purpose == P.ICC:
        return _icc(f, hop, info, ev, pre)
    if purpose == P.INTERNAL:
        return _internal(f, hop, info, ev, pre, src, dst)
    if purpose == P.UNPUBLISHED_PORT_DROP:
        return _not_published(f, ev, pre, f"{rule} at {ref} drops traffic to ports the "
                              f"container does not publish")
    if purpose == P.DIRECT_ACCESS:
        return _direct_access(f, hop, info, ev, pre)
    if purpose == P.DOCKER_USER:
        entry = _find_entry(lab, hop, info)
        after = _after_dnat(part.hops[:i + 1], hop)
        return Diagnosis(
            Cause.DOCKER_USER_RULE,
            f"{pre}{_name(src)} -> {_name(dst)} was dropped by a rule in DOCKER-USER, the "
            f"chain Docker keeps for the administrator's own rules: {rule} at {ref}. "
            f"Docker's rules never ran; the drop is the host's own policy.{after}",
            ev, [_remove_entry_fix(lab, hop.host, entry)] if entry else [])
    if purpose == P.POLICY and hop.hook == "FORWARD" and hop.family == "ipv6" and \
            not any(r.host == hop.host and r.family == "ip6" for r in lab.rules):
        return _ipv6_forward_policy(f, hop, ev, pre)
    if purpose == P.POLICY and hop.hook == "FORWARD":
        return _forward_policy(f, hop, info, ev, pre)
    if purpose in (P.POLICY, P.USER_FIREWALL):
        return _host_firewall(f, hop, info, ev, pre)
    return _unknown(f"{pre}dropped at {ref} by {rule}, a rule whose purpose nettrace cannot "
                    f"tell (not in the lab's rule index)", ev)


def _after_dnat(hops: list[Hop], hop: Hop) -> str:
    """A sentence when FORWARD saw the packet after a published port's DNAT: DOCKER-USER
    rules written for the host port never match it."""
    change = next((c for h in hops for c in h.changes if c.endswith("(DNAT)")), None)
    if change is None or hop.packet is None or not hop.packet.dport:
        return ""
    original = change.split(" -> ")[0].removeprefix("dst ")
    port = original.rpartition(":")[2]
    return (f" DOCKER-USER sees the packet after Docker's DNAT ({change}): a rule for the "
            f"published port must match the original port with `-m conntrack "
            f"--ctorigdstport {port}`, not `--dport {port}`.")


def _is_vxlan(hop: Hop) -> bool:
    pkt = hop.packet
    return pkt is not None and (pkt.outer is not None or
                                (pkt.proto == "udp" and pkt.dport == VXLAN_PORT))


def _vxlan(f: _Facts, hop: Hop, info: RuleInfo | None, ev: list[int], pre: str) -> Diagnosis:
    """The overlay's outer UDP 4789 packet dropped by a host firewall on the underlay."""
    lab = f.lab
    entry = _find_entry(lab, hop, info) if info else None
    if entry is None:          # the outer packet's rule is not traced: the entry that names it
        cands = [e for e in _entries(lab, hop.host)
                 if str(VXLAN_PORT) in e.split() and _entry_chain(e)[2] in ("DROP", "REJECT")]
        entry = cands[0] if len(cands) == 1 else None
    by = f"by {_rule_words(info)}" if info else "by netfilter (the outer packet's rule is " \
        "not traced)"
    allow = f"-I INPUT -p udp --dport {VXLAN_PORT} -j ACCEPT"
    fixes = [_remove_entry_fix(lab, hop.host, entry)] if entry else [
        Fix([f"iptables {allow}"],
            [LabEdit(EditOp.ADD, f"hosts[name={hop.host}].firewall", allow)])]
    outer = hop.packet.outer if hop.packet else None
    between = f" from {outer.src} to {outer.dst}" if outer else ""
    return Diagnosis(
        Cause.VXLAN_BLOCKED,
        f"{pre}{_name(f.src, f.path.src)} and {_name(f.dst, f.dst_ip)} talk over an overlay network, carried between "
        f"Docker hosts in VXLAN (UDP {VXLAN_PORT}){between}. Host {hop.host} dropped that "
        f"outer packet {by} at {_hop_ref(f, ev[0])}: the hosts' firewalls must let UDP "
        f"{VXLAN_PORT} through between the swarm's nodes.", ev, fixes)


def _isolation(f, hop, info, ev, pre, src, dst) -> Diagnosis:
    lab = f.lab
    ref = _hop_ref(f, ev[0])
    facts = []
    fixes = []
    if isinstance(src, Sandbox) and isinstance(dst, Sandbox):
        facts = [_on(lab, src), _on(lab, dst)]
        src_net = _net_of_ip(lab, src, hop.packet.src if hop.packet else None)
        dst_net = _net_of_ip(lab, dst, hop.packet.dst if hop.packet else None)
        if dst_net is not None:
            fixes.append(Fix([f"docker network connect {dst_net.name} {src.name}"],
                             [LabEdit(EditOp.ADD, f"containers[name={src.name}].networks",
                                      dst_net.name)]))
        if src_net is not None:
            fixes.append(Fix([f"docker network connect {src_net.name} {dst.name}"],
                             [LabEdit(EditOp.ADD, f"containers[name={dst.name}].networks",
                                      src_net.name)]))
    where = ("; ".join(facts) + ". ") if facts else ""
    net = f" (network {info.network})" if info.network else ""
    return Diagnosis(
        Cause.NETWORK_ISOLATION,
        f"{pre}{where}Docker isolates user-defined networks from each other: "
        f"{_rule_words(info)}{net} dropped the packet at {ref}. To let them talk, put both "
        f"containers on one network.", ev, fixes)


def _icc(f, hop, info, ev, pre) -> Diagnosis:
    lab = f.lab
    net = None
    if info.network:
        net = next((n for n in lab.networks if n.name == info.network and
                    n.host in (None, hop.host)), None)
    name = net.name if net else (info.network or "?")
    cmds = _recreate(lab, net, ["-o com.docker.network.bridge.enable_icc=true"], hop.host) \
        if net else []
    return Diagnosis(
        Cause.ICC_DISABLED,
        f"{pre}{_name(f.src, f.path.src)} and {_name(f.dst, f.dst_ip)} are both on network {name}, which was "
        f"created with com.docker.network.bridge.enable_icc=false: containers on it may not "
        f"talk to each other. {_rule_words(info)} dropped the packet at {_hop_ref(f, ev[0])}. "
        f"ICC is fixed when a network is created: re-create it with ICC on.",
        ev, [Fix(cmds, [LabEdit(EditOp.SET, f"networks[name={name}].icc", True)])])


def _recreate(lab: Lab, net: Network, opts: list[str], host: str | None = None) -> list[str]:
    """Docker commands that re-create `net` with `opts` (options are fixed at creation)."""
    members = [sb.name for sb in lab.sandboxes.values()
               if any(ep.network == net.name for ep in sb.endpoints) and
               (host is None or sb.host == host)]
    create = ["docker network create", f"-d {net.driver}"]
    if net.subnet:
        create.append(f"--subnet {net.subnet}")
    create += opts + [net.name]
    return ([f"docker network disconnect {net.name} {m}" for m in members] +
            [f"docker network rm {net.name}", " ".join(create)] +
            [f"docker network connect {net.name} {m}" for m in members])


def _outside_net(lab: Lab, sb: Sandbox) -> str:
    """A non-internal bridge network on the container's host to connect it to."""
    for net in lab.networks:
        if net.driver == "bridge" and not net.internal and net.host in (None, sb.host) and \
                net.name != "bridge" and not any(ep.network == net.name for ep in sb.endpoints):
            return net.name
    return "bridge"


def _internal_fixes(lab: Lab, sb: Sandbox, net: Network | None,
                    peer: Sandbox | Host | None = None) -> list[Fix]:
    """Connect the container to a normal network (the peer container's, when the peer is
    one, so that they share it); or re-create the network without --internal, which helps
    only when the peer is not a container on another network (isolation would remain)."""
    peer_nets = [n for n in _nets(lab, peer) if not n.internal and n.host in (None, sb.host)] \
        if isinstance(peer, Sandbox) else []
    other = peer_nets[0].name if peer_nets else _outside_net(lab, sb)
    fixes = [Fix([f"docker network connect {other} {sb.name}"],
                 [LabEdit(EditOp.ADD, f"containers[name={sb.name}].networks", other)])]
    if net is not None and not (isinstance(peer, Sandbox) and
                                not any(ep.network == net.name for ep in peer.endpoints)):
        fixes.append(Fix(_recreate(lab, net, []),
                         [LabEdit(EditOp.SET, f"networks[name={net.name}].internal", False)]))
    return fixes


def _internal(f, hop, info, ev, pre, src, dst) -> Diagnosis:
    lab = f.lab
    inner = next((s for s in (src, dst) if isinstance(s, Sandbox) and
                  any(n.internal for n in _nets(lab, s))), None)
    net = None
    if info.network:
        net = next((n for n in lab.networks if n.name == info.network), None)
    if net is None and inner is not None:
        net = next((n for n in _nets(lab, inner) if n.internal), None)
    name = net.name if net else "?"
    peer = dst if inner is src else src
    fixes = _internal_fixes(lab, inner, net, peer) if inner is not None else []
    return Diagnosis(
        Cause.INTERNAL_NETWORK,
        f"{pre}Network {name} is internal (docker network create --internal): nothing enters "
        f"or leaves it, only its own containers talk. {_rule_words(info)} dropped the packet "
        f"at {_hop_ref(f, ev[0])}. {_on(lab, inner) + '.' if inner else ''}",
        ev, fixes)


def _candidates(lab: Lab, host: str | None, port: int | None, proto: str) -> list[Sandbox]:
    """Containers on `host` that could serve PORT: those listening on it first."""
    sbs = [sb for sb in lab.sandboxes.values() if sb.host == host and
           any(not n.internal and n.driver == "bridge" for n in _nets(lab, sb))]
    listening = [sb for sb in sbs if f"{proto}/{port}" in (sb.listen)]
    return listening or [sb for sb in sbs if sb.listen] or sbs


def _not_published(f: _Facts, ev: list[int], pre: str, how: str) -> Diagnosis:
    lab = f.lab
    host = f.dst.name if isinstance(f.dst, Host) else (
        f.dst.host if isinstance(f.dst, Sandbox) else None)
    port, proto = f.port, f.proto
    fixes = []
    # the container the packet was for, else those that could serve the port
    cands = [f.dst] if isinstance(f.dst, Sandbox) else _candidates(lab, host, port, proto)
    for sb in cands[:2]:
        listen = [x for x in (sb.listen) if x.startswith(proto + "/")]
        cport = int(listen[0].split("/")[1]) if listen and f"{proto}/{port}" not in listen \
            else port
        spec = f"{port}:{cport}/{proto}"
        net = next((n.name for n in _nets(lab, sb) if not n.internal), "bridge")
        fixes.append(Fix([f"docker rm -f {sb.name}",
                          f"docker run -d --name {sb.name} --network {net} -p {spec} IMAGE"],
                         [LabEdit(EditOp.ADD, f"containers[name={sb.name}].publish", spec)]))
    who = f"host {host}" if host else "the host"
    return Diagnosis(
        Cause.PORT_NOT_PUBLISHED,
        f"{pre}No container publishes {proto}/{port} on {who}: {how}. A container's port is "
        f"reachable from outside only when published (docker run -p {port}:PORT).",
        ev, fixes)


def _direct_access(f, hop, info, ev, pre) -> Diagnosis:
    lab = f.lab
    dst = f.dst if isinstance(f.dst, Sandbox) else None
    if dst is not None and isinstance(f.src, Sandbox) and f.src.host == dst.host:
        # a container of the same host on another network: Docker 28.2+ keeps networks apart
        # with this per-endpoint raw rule too (the packet reaches the other bridge's address
        # from outside it); in Docker's terms that is isolation (or an internal network)
        if any(n.internal for n in _nets(lab, dst)):
            return _internal(f, hop, info, ev, pre, f.src, dst)
        return _isolation(f, hop, info, ev, pre, f.src, dst)
    net = _net_of_ip(lab, dst, hop.packet.dst if hop.packet else None) if dst else None
    fixes = []
    opt = "com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected"
    if net is not None and net.name == "bridge":     # the default bridge: a daemon option
        fixes.append(Fix([f"dockerd --default-network-opt bridge={opt}"], []))
    elif net is not None:
        fixes.append(Fix(
            _recreate(lab, net, [f"-o {opt}"]),
            [LabEdit(EditOp.SET, f"networks[name={net.name}].gateway_mode", "nat-unprotected")]))
    return Diagnosis(
        Cause.DIRECT_ACCESS_BLOCKED,
        f"{pre}The packet was routed straight to {_name(dst) if dst else f.dst_ip}'s address "
        f"from outside its network. Since Docker 28 the raw table drops that unless the "
        f"network's gateway mode allows it: {_rule_words(info)} at {_hop_ref(f, ev[0])}. Reach "
        f"it through a published port on the host's address, or use gateway mode "
        f"nat-unprotected or routed.", ev, fixes)


def _removes_docker_rules(entry: str) -> bool:
    """A lab firewall entry that flushes or deletes rules of a filter chain (`-F FORWARD`,
    `-F`, `-D FORWARD 1`): what a firewall reload does to Docker's rules."""
    words = entry.split()
    table = words[words.index("-t") + 1] if "-t" in words[:-1] else "filter"
    return table == "filter" and any(w in ("-F", "--flush", "-D", "--delete", "-X",
                                           "--delete-chain") for w in words)


def _has_docker_user(lab: Lab, host: str | None) -> bool:
    """Whether the host has a DOCKER-USER chain to add rules to (iptables backends: the
    rule index has its jump; without an index, the engine's backend says)."""
    if any(r.host == host for r in lab.rules):
        return any(r.host == host and r.purpose == P.DOCKER_USER for r in lab.rules)
    return lab.engine.firewall.value == "iptables"


def _forward_policy(f, hop, info, ev, pre) -> Diagnosis:
    lab = f.lab
    dst_ip = hop.packet.dst if hop.packet else f.dst_ip
    lost = [e for e in _entries(lab, hop.host) if _removes_docker_rules(e)]
    if lost:               # Docker's own rules are gone: put them back, nothing else works
        return Diagnosis(
            Cause.FORWARD_POLICY,
            f"{pre}No rule accepted {_name(f.src, f.path.src)} -> {_name(f.dst, f.dst_ip)} in FORWARD on "
            f"{hop.host}, so the chain's policy DROP decided at {_hop_ref(f, ev[0])}: Docker's "
            f"own FORWARD rules are gone (the host's firewall ran `iptables "
            f"{lost[0]}`, as a firewall reload does). Restarting Docker puts them back.",
            ev, [Fix(["systemctl restart docker"],
                     [LabEdit(EditOp.REMOVE, f"hosts[name={hop.host}].firewall", e)
                      for e in lost])])
    nft = lab.engine.firewall.value == "nftables"
    policies = [e for e in _entries(lab, hop.host)
                if _entry_chain(e)[:2] == ("filter", "FORWARD") and _entry_chain(e)[2] == "DROP"
                and ("-P" in e.split() or "--policy" in e.split())]
    fixes = []
    if nft and policies:     # Docker's nftables backend leaves iptables' FORWARD to the host
        fixes += [_remove_entry_fix(lab, hop.host, e) for e in policies]
    if f.proto in ("tcp", "udp") and isinstance(f.dst, Sandbox) and f.port:
        spec = f"{f.port}:{f.port}/{f.proto}"
        net = next((n.name for n in _nets(lab, f.dst) if not n.internal), "bridge")
        fixes.append(Fix([f"docker rm -f {f.dst.name}",
                          f"docker run -d --name {f.dst.name} --network {net} -p {spec} IMAGE"],
                         [LabEdit(EditOp.ADD, f"containers[name={f.dst.name}].publish", spec)]))
    if dst_ip and _has_docker_user(lab, hop.host):
        rule = f"-I DOCKER-USER -d {dst_ip} -j ACCEPT"
        fixes.append(Fix([f"iptables {rule}"],
                         [LabEdit(EditOp.ADD, f"hosts[name={hop.host}].firewall", rule)]))
    if nft:
        return Diagnosis(
            Cause.FORWARD_POLICY,
            f"{pre}Host {hop.host} runs Docker's nftables backend, where an accept in Docker's "
            f"own table is not final: the host's iptables FORWARD chain also ran for "
            f"{_name(f.src, f.path.src)} -> {_name(f.dst, f.dst_ip)}, and its policy DROP decided at "
            f"{_hop_ref(f, ev[0])}. Docker leaves iptables' FORWARD to the host there.",
            ev, fixes)
    return Diagnosis(
        Cause.FORWARD_POLICY,
        f"{pre}No rule accepted {_name(f.src, f.path.src)} -> {_name(f.dst, f.dst_ip)} in FORWARD on "
        f"{hop.host}, so the chain's policy DROP decided at {_hop_ref(f, ev[0])}. Docker "
        f"accepts forwarded traffic only for its networks' own flows and published ports.",
        ev, fixes)


def _ipv6_forward_policy(f, hop, ev, pre) -> Diagnosis:
    """IPv6 met the host's ip6tables FORWARD policy DROP with no Docker rule to accept it:
    the engine installs no ip6tables rules (20.10, or `"ip6tables": false`), while its
    iptables rules let the same flow through over IPv4."""
    lab = f.lab
    fixes = [Fix(['set "ip6tables": true in /etc/docker/daemon.json (the default since '
                  'Docker 27)', "systemctl restart docker"],
                 [LabEdit(EditOp.SET, "engine.ip6tables", True)])]
    if isinstance(f.dst, Sandbox):      # between containers: opening the chain is enough
        node = lab.hosts.get(hop.host or "")
        for e in node.firewall6 if node else []:
            if _entry_chain(e)[:2] == ("filter", "FORWARD") and _entry_chain(e)[2] == "DROP":
                fixes.append(Fix([_undo(e).replace("iptables ", "ip6tables ", 1)],
                                 [LabEdit(EditOp.REMOVE, f"hosts[name={hop.host}].firewall6",
                                          e)]))
    return Diagnosis(
        Cause.IPV6_FORWARD_POLICY,
        f"{pre}{_name(f.src, f.path.src)} -> {_name(f.dst, f.dst_ip)} over IPv6 met host "
        f"{hop.host}'s IPv6 FORWARD policy DROP at {_hop_ref(f, ev[0])}: the engine installed "
        f"no ip6tables rules (Docker {lab.engine.version.value} with ip6tables off), so nothing "
        f"accepts the containers' IPv6 traffic, while Docker's iptables rules let the same "
        f"flow through over IPv4. Turn ip6tables on in the daemon (Docker 27+ does by "
        f"default).", ev, fixes)


def _host_firewall(f, hop, info, ev, pre) -> Diagnosis:
    lab = f.lab
    entry = _find_entry(lab, hop, info)
    fixes = []
    to_host = hop.hook in ("LOCAL_IN",) or (hop.hook == "PRE_ROUTING" and
                                            isinstance(f.dst, Host))
    if to_host and f.port and hop.in_dev:
        allow = f"-I INPUT -i {hop.in_dev} -p {f.proto} --dport {f.port} -j ACCEPT"
        fixes.append(Fix([f"iptables {allow}"],
                         [LabEdit(EditOp.ADD, f"hosts[name={hop.host}].firewall", allow)]))
    if entry:
        fixes.append(_remove_entry_fix(lab, hop.host, entry))
    if to_host:
        return Diagnosis(
            Cause.HOST_FIREWALL_INPUT,
            f"{pre}{_name(f.src, f.path.src)} reached host {hop.host}, but the host's own firewall dropped "
            f"it in INPUT: {_rule_words(info)} at {_hop_ref(f, ev[0])}. Traffic from a "
            f"container to a service on its host goes through INPUT (not Docker's FORWARD "
            f"rules): allow it from the Docker bridge.", ev, fixes)
    return Diagnosis(
        Cause.HOST_FIREWALL_FORWARD,
        f"{pre}A rule of the host's own firewall (not Docker's, and not in DOCKER-USER) "
        f"dropped {_name(f.src, f.path.src)} -> {_name(f.dst, f.dst_ip)} at {_hop_ref(f, ev[0])}: "
        f"{_rule_words(info)}. Docker's rules never decided; put exceptions in DOCKER-USER.",
        ev, fixes)


def _conntrack_invalid(f, hop, info, ev, pre) -> Diagnosis:
    entry = _find_entry(f.lab, hop, info)
    return Diagnosis(
        Cause.CONNTRACK_INVALID,
        f"{pre}Connection tracking classed the packet INVALID (it belongs to no connection it "
        f"knows: an asymmetric route, or state lost), and {_rule_words(info)} dropped it at "
        f"{_hop_ref(f, ev[0])}.", ev, [_remove_entry_fix(f.lab, hop.host, entry)] if entry else [])


# -- kernel drops ----------------------------------------------------------------------------

def _kernel_drop(f: _Facts, part: Path, base: int, i: int, hop: Hop, reason: str,
                 side: str) -> Diagnosis:
    lab = f.lab
    ev = [base + i]
    ref = _hop_ref(f, base + i)
    pre = _prefix(side, f)
    pkt = hop.packet
    host = hop.host if hop.host in lab.hosts and not hop.sandbox else None
    # ip_error() counts IP_INADDRERRORS only when the input device does not forward
    if reason == "IP_INADDRERRORS" and host and (hop.location or "").startswith("ip_error") \
            and (str(_sysctls(lab, host).get(FORWARD_SYSCTL, "1")) == "0" or
                 not _addressed_to(lab, host, pkt)):
        return _ip_forward(f, host, ev, pre, ref)
    if reason == "IP_INHDR" and pkt is not None and pkt.ttl is not None and pkt.ttl <= 1:
        return _ttl(f, hop, ev, pre, ref)
    cause = REASON_CAUSES.get(reason)
    if cause == Cause.ARP_UNRESOLVED:
        mv = _macvlan_host(f)
        if mv is not None:
            return mv
        return Diagnosis(
            Cause.ARP_UNRESOLVED,
            f"{pre}Nobody answered ARP for the next hop of {pkt.dst if pkt else f.dst_ip} "
            f"at {ref}: no container or host on that link owns the address (stopped "
            f"container, wrong IP, or a link that does not carry it).", ev, [])
    if cause == Cause.RP_FILTER:
        return _rp_filter(f, hop, ev, pre, ref)
    if cause == Cause.MTU_BLACKHOLE:
        return _mtu(f, hop, ev, pre, ref)
    if cause == Cause.NO_ROUTE:
        return _no_route(f, ev, pre, f"the kernel found no route ({reason}) at {ref}")
    return _unknown(f"{pre}the kernel dropped it at {ref} ({reason}"
                    f"{' at ' + hop.location if hop.location else ''}), a reason nettrace "
                    f"does not map to a Docker cause", ev)


def _addressed_to(lab: Lab, host: str, pkt) -> bool:
    node = lab.hosts.get(host)
    if pkt is None or node is None:
        return False
    if pkt.dst == node.address:
        return True
    return any(n.gateway == pkt.dst for n in lab.networks if n.host == host)


def _ip_forward(f: _Facts, host: str, ev: list[int], pre: str, ref: str) -> Diagnosis:
    return Diagnosis(
        Cause.IP_FORWARD_DISABLED,
        f"{pre}Host {host} does not forward IPv4 ({FORWARD_SYSCTL} is 0), so the packet from "
        f"{_name(f.src, f.path.src)} to {_name(f.dst, f.dst_ip)} was dropped when the host had to route it "
        f"at {ref}. Docker needs forwarding on (it turns it on at start; a later host change "
        f"can turn it off).",
        ev, [Fix([f"sysctl -w {FORWARD_SYSCTL}=1"],
                 [LabEdit(EditOp.SET, f'hosts[name={host}].sysctls["{FORWARD_SYSCTL}"]', 1)])])


def _looping_routes(lab: Lab, ip: str | None) -> list[tuple[str, str]]:
    """(host, route) of lab routes on a host that owns the network of `ip` yet send that
    address to another machine: one half of a routing loop."""
    out = []
    if not ip:
        return out
    addr = ipaddress.ip_address(ip)
    for host in lab.hosts.values():
        owns = any(n.host == host.name and n.subnet and addr in ipaddress.ip_network(n.subnet)
                   for n in lab.networks)
        for route in host.routes:
            prefix = route.split()[0]
            try:
                if owns and addr in ipaddress.ip_network(prefix, strict=False):
                    out.append((host.name, route))
            except ValueError:
                continue
    return out


def _ttl(f, hop, ev, pre, ref, answered: bool = False) -> Diagnosis:
    fixes = []
    for entry in _entries(f.lab, hop.host):
        if "TTL" in entry.split():
            fixes.append(_remove_entry_fix(f.lab, hop.host, entry))
    answer = hop.packet is not None and hop.packet.info == "time-exceeded"
    loops = _looping_routes(f.lab, f.dst_ip if answer or hop.packet is None else hop.packet.dst)
    for host, route in loops:
        fixes.append(Fix([f"ip route del {route.split()[0]}"],
                         [LabEdit(EditOp.REMOVE, f"hosts[name={host}].routes", route)]))
    loop = "".join(f" Host {h} routes {r}, although that address is on its own network: "
                   f"a routing loop." for h, r in loops[:1])
    return Diagnosis(
        Cause.TTL_EXPIRED,
        f"{pre}The packet's TTL ran out" + (f": a router answered ICMP time exceeded "
                                            f"(seen at {ref})" if answered else
                                            f" at {ref}: the router decremented it to zero") +
        f" (a routing loop, too many hops, or a rule that lowered it).{loop}", ev, fixes)


def _rp_filter(f, hop, ev, pre, ref) -> Diagnosis:
    host = hop.host
    keys = [k for k in _sysctls(f.lab, host) if k.endswith(".rp_filter")]
    keys = keys or ["net.ipv4.conf.all.rp_filter"]
    src = hop.packet.src if hop.packet else "?"
    return Diagnosis(
        Cause.RP_FILTER,
        f"{pre}Reverse-path filtering on {hop.sandbox or host} dropped the packet at {ref}: "
        f"its source {src} is not reachable back through the interface it arrived on "
        f"(strict rp_filter with asymmetric routes).",
        ev, [Fix([f"sysctl -w {k}=2" for k in keys],
                 [LabEdit(EditOp.SET, f'hosts[name={host}].sysctls["{k}"]', 2) for k in keys])])


def _mtu(f, hop, ev, pre, ref, answered: bool = False, lost: bool = False) -> Diagnosis:
    lab = f.lab
    size = _size(f)
    mtus = _path_mtus(f)
    bottleneck = min(mtus.values()) if mtus else None
    fixes = []
    under = next((v for k, v in mtus.items() if k.startswith("underlay")), None)
    if under is not None and under == bottleneck and size and size > under and \
            lab.underlay_mtu < 1500:           # a link below Ethernet's usual 1500
        need = max(size + (VXLAN_OVERHEAD if _in_vxlan(f) else 0), 1500)
        fixes.append(Fix([f"ip link set dev {_uplink(f)} mtu {need}"],
                         [LabEdit(EditOp.SET, "underlay.mtu", need)]))
    if isinstance(f.src, Sandbox) and bottleneck:
        net = _net_of_ip(lab, f.src, f.path.hops[0].packet.src if f.path.hops and
                         f.path.hops[0].packet else None)
        if net is not None and net.mtu > bottleneck and net.name == "bridge":
            fixes.append(Fix([f"dockerd --mtu {bottleneck}"], []))
        elif net is not None and net.mtu > bottleneck:
            # the option Docker's overlay takes VXLAN's overhead off (model.VXLAN_OVERHEAD)
            opt = bottleneck + (VXLAN_OVERHEAD if net.driver == "overlay" else 0)
            fixes.append(Fix(
                _recreate(lab, net, [f"-o com.docker.network.driver.mtu={opt}"]),
                [LabEdit(EditOp.SET, f"networks[name={net.name}].mtu", opt)]))
    where = ", ".join(f"{k} {v}" for k, v in mtus.items())
    return Diagnosis(
        Cause.MTU_BLACKHOLE,
        f"{pre}A {size or '?'}-byte packet that may not be fragmented (DF) is larger than "
        f"the path MTU{f' ({where})' if where else ''}; " +
        (f"a router dropped it and answered ICMP 'fragmentation needed' (seen at {ref})."
         if answered else f"it was {'last seen' if lost else 'dropped'} at {ref}.") +
        " Without that ICMP answer getting back to the sender, connections hang on large "
        "packets.",
        ev, fixes)


def _uplink(f: _Facts) -> str:
    host = f.lab.hosts.get(f.src.host) if isinstance(f.src, Sandbox) else None
    return (host.uplink if host and host.uplink else "eth0")


def _path_mtus(f: _Facts) -> dict[str, int]:
    """MTUs the lab knows along the request: its networks, the overlay's and the underlay."""
    lab = f.lab
    out: dict[str, int] = {}
    for hop in f.path.hops:
        itf = lab.interface(hop.netns or "", hop.device or "")
        if itf is not None and itf.network:
            for net in lab.networks:
                if net.name == itf.network and net.host in (None, hop.host):
                    out[f"network {net.name}"] = net.mtu
    leaves = isinstance(f.dst, Host) or (isinstance(f.dst, Sandbox) and isinstance(f.src, Sandbox)
                                         and f.dst.host != f.src.host)
    if lab.underlay_mtu and (leaves or _in_vxlan(f)):
        under = int(lab.underlay_mtu)
        if _in_vxlan(f):       # the container's packet travels inside VXLAN: 50 bytes less
            out[f"underlay ({under} less VXLAN's {VXLAN_OVERHEAD})"] = under - VXLAN_OVERHEAD
        else:
            out["underlay"] = under
    return out


def _in_vxlan(f: _Facts) -> bool:
    """The request crosses hosts over an overlay network (encapsulated, or about to be)."""
    if any(h.packet and h.packet.outer for h in f.path.hops):
        return True
    return isinstance(f.src, Sandbox) and isinstance(f.dst, Sandbox) and \
        f.src.host != f.dst.host and \
        any(n.driver == "overlay" and any(ep.network == n.name for ep in f.dst.endpoints)
            for n in _nets(f.lab, f.src))


def _macvlan_host(f: _Facts, seen: str = "ARP got no answer") -> Diagnosis | None:
    """A host talking to its own macvlan child (or the reverse): the kernel never lets it."""
    lab = f.lab
    pair = [(f.src, f.dst), (f.dst, f.src)]
    for a, b in pair:
        if isinstance(a, Host) and isinstance(b, Sandbox) and b.host == a.name:
            mv = [n for n in _nets(lab, b) if n.driver in ("macvlan", "ipvlan")]
            if mv:
                net = mv[0]
                br = _outside_net(lab, b)
                return Diagnosis(
                    Cause.MACVLAN_HOST_ISOLATION,
                    f"{_name(b)} is on {net.driver} network {net.name} (parent "
                    f"{net.device}); the Linux kernel does not pass traffic between a "
                    f"{net.driver} child and its own parent, so host {a.name} cannot reach it "
                    f"({seen}). Give the host its own {net.driver} interface on the "
                    f"parent, or reach the container through another network.",
                    [], [Fix([(f"ip link add {net.name}-shim link {net.device} type macvlan "
                               f"mode bridge"), f"ip link set {net.name}-shim up",
                              f"ip route add {b.ip(net.name)}/32 dev {net.name}-shim"], []),
                         Fix([f"docker network connect {br} {b.name}"],
                             [LabEdit(EditOp.ADD, f"containers[name={b.name}].networks", br)])])
    return None


# -- nothing on the wire, or no reply -------------------------------------------------------

def _refused_at_sender(f: _Facts, part: Path, side: str) -> Diagnosis:
    """The sender's own stack refused the packet (no hop was traced)."""
    reason = part.verdict.reason or ""
    if "no route" in reason.lower() or "unreachable" in reason.lower():
        return _no_route(f, [], _prefix(side, f), f"the sender refused it: {reason}")
    return _unknown(f"{side} was not sent: {reason or 'no probe saw it'}", [])


def _no_route(f: _Facts, ev: list[int], pre: str, how: str) -> Diagnosis:
    lab = f.lab
    src = f.src
    mv = _macvlan_host(f, how)
    if mv is not None:
        return mv
    if isinstance(src, Sandbox):
        nets = _nets(lab, src)
        internal = [n for n in nets if n.internal]
        if nets and len(internal) == len(nets) and not _same_subnet(nets, f.dst_ip):
            net = internal[0]
            return Diagnosis(
                Cause.INTERNAL_NETWORK,
                f"{pre}{_on(lab, src)}, an internal network (docker network create "
                f"--internal): Docker gives its containers no gateway, so nothing outside the "
                f"network is reachable ({how}).", ev, _internal_fixes(lab, src, net, f.dst))
        dst = f.dst
        if isinstance(dst, Sandbox) and dst.host != src.host and \
                not {n.id for n in nets} & {n.id for n in _nets(lab, dst)}:   # same name, two hosts
            name = "shared"
            return Diagnosis(
                Cause.NO_ROUTE,
                f"{pre}{_name(src)} on host {src.host} and {_name(dst)} on host {dst.host} share "
                f"no network, and container addresses of one host are not routed from another "
                f"({how}). An overlay network spans hosts.", ev,
                [Fix([f"docker network create -d overlay --attachable {name}",
                      f"docker network connect {name} {src.name}",
                      f"docker network connect {name} {dst.name}"],
                     [LabEdit(EditOp.ADD, "networks", {"name": name, "driver": "overlay"}),
                      LabEdit(EditOp.ADD, f"containers[name={src.name}].networks", name),
                      LabEdit(EditOp.ADD, f"containers[name={dst.name}].networks", name)])])
    return Diagnosis(Cause.NO_ROUTE,
                     f"{pre}No route to {f.dst_ip or _name(f.dst, f.dst_ip)} from {_name(src)}: {how}.",
                     ev, [])


def _same_subnet(nets: list[Network], ip: str | None) -> bool:
    if not ip:
        return False
    for n in nets:
        try:
            if n.subnet and ipaddress.ip_address(ip) in ipaddress.ip_network(n.subnet):
                return True
        except ValueError:
            continue
    return False


def _lost(f: _Facts, part: Path, base: int, side: str) -> Diagnosis:
    size = _size(f) if side == "request" else None
    mtus = _path_mtus(f)
    if size and mtus and size > min(mtus.values()):
        last = len(part.hops) - 1
        return _mtu(f, part.hops[last], [base + last] if last >= 0 else [], _prefix(side, f),
                    _hop_ref(f, base + last) if last >= 0 else "the sender", lost=True)
    last = len(part.hops) - 1
    where = f" after {_hop_ref(f, base + last)}" if last >= 0 else ""
    return _unknown(f"the {side} disappeared{where} with no drop event and no rule verdict "
                    f"({part.verdict.reason or 'no reason recorded'})",
                    [base + last] if last >= 0 else [])


def _unknown(why: str, ev: list[int]) -> Diagnosis:
    return Diagnosis(Cause.UNKNOWN, f"Cannot tell: {why}.", ev, [])


# -- delivered -------------------------------------------------------------------------------

def _delivered(f: _Facts) -> Diagnosis:
    path = f.path
    v = path.verdict
    if not path.hops:
        return _unknown("the path says delivered, but no hop of the request was recorded", [])
    i = v.hop_index if v.hop_index is not None and v.hop_index < len(path.hops) \
        else len(path.hops) - 1
    ai, answer = _answer(f)
    icmp = _icmp(answer) if answer is not None else None
    rst = answer is not None and answer.packet.proto == "tcp" and \
        (answer.packet.info or "").startswith("RST")
    port_unreach = icmp == (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH)
    no_socket = next((j for j in range(i + 1, len(path.hops))
                      if path.hops[j].point == "drop" and
                      path.hops[j].drop_reason == "NO_SOCKET"), None)
    if icmp == (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED):
        return _mtu(f, answer, [ai], "", _hop_ref(f, ai), answered=True)
    if icmp is not None and icmp[0] == ICMP_TIME_EXCEEDED:
        return _ttl(f, answer, [ai], "", _hop_ref(f, ai), answered=True)
    if f.proto in ("tcp", "udp") and (rst or port_unreach or no_socket is not None):
        ev = [j for j in (i, no_socket, ai) if j is not None]
        return _no_socket(f, i, ev, "RST" if rst else (
            "ICMP port unreachable" if port_unreach else "no socket"))
    bnf = _bridge_nf_off(f)
    if bnf is not None:
        return bnf
    skipped = _un_nat_skipped(f)
    if skipped is not None:
        return skipped
    if path.reply is not None and path.reply.verdict.kind == DROPPED:
        return _dropped(f, path.reply, f.offset, "reply")
    if path.reply is None and f.proto in ("icmp", "tcp"):
        return _unknown(f"the request was delivered to {_name(f.dst, f.dst_ip)} "
                        f"at {_hop_ref(f, i)} but no answer was seen", [i])
    if path.reply is not None and path.reply.verdict.kind != DELIVERED:
        return _lost(f, path.reply, f.offset, "reply")
    return _ok(f, i)


def _no_socket(f: _Facts, i: int, ev: list[int], how: str) -> Diagnosis:
    lab, path = f.lab, f.path
    dst = f.dst
    first = path.hops[0].packet if path.hops and path.hops[0].packet else None
    dnat = any("(DNAT)" in c for h in path.hops for c in h.changes)
    port, proto = f.port, f.proto
    if isinstance(dst, Host) and dst.kind == "docker" and _addressed_to(lab, dst.name, first) \
            and not dnat:
        published = [(sb, p) for sb in lab.sandboxes.values() if sb.host == dst.name
                     for p in sb.ports() if (p.host_port, p.proto) == (port, proto)]
        if published and all(n.internal for n in _nets(lab, published[0][0])):
            sb = published[0][0]
            nets = _nets(lab, sb)
            return Diagnosis(
                Cause.INTERNAL_NETWORK,
                f"{_name(sb)} publishes {published[0][1]}, but {_on(lab, sb)}, an internal "
                f"network: Docker ignores published ports of containers with no other "
                f"network, so {proto}/{port} reached host {dst.name}'s own stack at "
                f"{_hop_ref(f, i)} with no DNAT ({how}).", ev,
                _internal_fixes(lab, sb, nets[0] if nets else None))
        here = [(sb, p) for sb, p in published if p.host_ip in (None, first.dst)]
        if published and not here:
            return _bound_elsewhere(f, i, ev, published[0][0], published[0][1], how)
        if published and isinstance(f.src, Sandbox) and f.src.host == dst.name:
            return _hairpin(f, ev, published[0][0])
        if not published:
            return _not_published(f, ev, "", f"the packet reached host {dst.name}'s own stack "
                                  f"at {_hop_ref(f, i)} with no DNAT, and nothing listens there "
                                  f"({how})")
    # a container (or host service) got it and nothing listens on the port
    inner = next((h.packet for h in reversed(path.hops) if h.packet and h.packet.dport), None)
    cport = inner.dport if inner else port
    fixes = []
    if isinstance(dst, Sandbox):
        listen = dst.listen
        fixes.append(Fix([(f"docker exec -d {dst.name} nc -l{'u' if proto == 'udp' else ''}k "
                           f"-p {cport}")],
                         [LabEdit(EditOp.ADD, f"containers[name={dst.name}].listen",
                                  f"{proto}/{cport}")]))
        others = [x for x in listen if x.startswith(proto + "/")]
        if dnat and others:
            old = next((str(p) for p in dst.ports() if (p.host_port, p.proto) == (port, proto)),
                       None)
            right = f"{port}:{others[0].split('/')[1]}/{proto}"
            fixes.append(Fix([f"docker rm -f {dst.name}",
                              f"docker run -d --name {dst.name} -p {right} IMAGE"],
                             ([LabEdit(EditOp.REMOVE, f"containers[name={dst.name}].publish",
                                       old)] if old else []) +
                             [LabEdit(EditOp.ADD, f"containers[name={dst.name}].publish",
                                      right)]))
    via = ""
    if dnat:
        via = f" (the published port {port}/{proto} was DNATed to {proto}/{cport})"
    return Diagnosis(
        Cause.NO_LISTENER,
        f"{_name(f.src, f.path.src)} reached {_name(dst)}{via} at {_hop_ref(f, i)}, but nothing listens on "
        f"{proto}/{cport} there: the answer was {how}. The network is fine; the service is not "
        f"running, or listens on another port or only on 127.0.0.1.", ev, fixes)


def _bound_elsewhere(f: _Facts, i: int, ev: list[int], sb: Sandbox, port, how: str) -> Diagnosis:
    """A port published on one host address only (-p 127.0.0.1:8080:80), reached on another."""
    first = f.path.hops[0].packet
    everywhere = f"{port.host_port}:{port.container_port}/{port.proto}"
    written = [str(port)] + ([str(port).removesuffix("/tcp")] if port.proto == "tcp" else [])
    net = next((n.name for n in _nets(f.lab, sb) if not n.internal), "bridge")
    return Diagnosis(
        Cause.PORT_NOT_PUBLISHED,
        f"{_name(sb)} publishes {port} on {port.host_ip} only, so Docker's DNAT matches that "
        f"address alone: {port.proto}/{port.host_port} sent to {first.dst} reached the host's "
        f"own stack at {_hop_ref(f, i)} with no DNAT ({how}). Publish it on every address "
        f"(or on {first.dst}).", ev,
        [Fix([f"docker rm -f {sb.name}",
              f"docker run -d --name {sb.name} --network {net} -p {everywhere} IMAGE"],
             [LabEdit(EditOp.REMOVE, f"containers[name={sb.name}].publish", w) for w in written]
             + [LabEdit(EditOp.ADD, f"containers[name={sb.name}].publish", everywhere)])])


def _hairpin(f: _Facts, ev: list[int], target: Sandbox) -> Diagnosis:
    lab = f.lab
    src = f.src
    shared = {n.id for n in _nets(lab, src)} & {n.id for n in _nets(lab, target)}
    fixes = [Fix(["dockerd --userland-proxy=false"],
                 [LabEdit(EditOp.SET, "engine.userland_proxy", False)])]
    if not shared:
        net = next((n.name for n in _nets(lab, target) if not n.internal), None)
        if net:
            fixes.append(Fix([f"docker network connect {net} {src.name}"],
                             [LabEdit(EditOp.ADD, f"containers[name={src.name}].networks", net)]))
    return Diagnosis(
        Cause.HAIRPIN,
        f"{_name(src)} sent to its own host's address and the published port {f.port}/"
        f"{f.proto} of {_name(target)}, but the DNAT did not apply to traffic coming from a "
        f"Docker bridge (hairpin): the host answered itself. With the userland proxy off, "
        f"Docker DNATs and masquerades hairpin traffic; or reach {target.name} by name on a "
        f"shared network.", ev, fixes)


def _bridge_nf_off(f: _Facts) -> Diagnosis | None:
    """Delivered across a bridge whose Docker rules should have dropped it, with no FORWARD
    hop seen on the host: br_netfilter did not run."""
    lab, path = f.lab, f.path
    src, dst = f.src, f.dst
    if not (isinstance(src, Sandbox) and isinstance(dst, Sandbox) and src.host == dst.host):
        return None
    shared = [n for n in _nets(lab, src) if n.driver == "bridge" and
              any(ep.network == n.name for ep in dst.endpoints)]
    if not shared:
        return None
    forward = [h for h in path.hops if h.hook == "FORWARD" and h.host == src.host and
               not h.sandbox]
    if forward:
        return None
    off = str(_sysctls(lab, src.host).get(BRIDGE_NF_SYSCTL, "1")) == "0"
    expected = [n for n in shared if not n.icc]
    if not (off or expected):
        return None
    net = (expected or shared)[0]
    what = (f"network {net.name} has ICC off, so Docker's FORWARD rule should have dropped it"
            if expected else f"no FORWARD rule of Docker's saw it on host {src.host}")
    host = src.host
    return Diagnosis(
        Cause.BRIDGE_NETFILTER_DISABLED,
        f"{_name(src)} reached {_name(dst)} over bridge {net.device} ({net.name}) without "
        f"passing iptables: {what}, but no netfilter FORWARD hop was traced. Bridged traffic "
        f"only meets iptables when br_netfilter is loaded and {BRIDGE_NF_SYSCTL}=1.",
        [i for i, h in enumerate(path.hops) if h.device == net.device][:1],
        [Fix(["modprobe br_netfilter", f"sysctl -w {BRIDGE_NF_SYSCTL}=1"],
             [LabEdit(EditOp.SET, f'hosts[name={host}].sysctls["{BRIDGE_NF_SYSCTL}"]', 1)])])


def _un_nat_skipped(f: _Facts) -> Diagnosis | None:
    """The request was DNATed, but its answer reached the sender from the container's own
    address (no un-DNAT on the way back): the sender has no socket for it. On one bridge
    this is hairpin traffic answered over the bridge without conntrack (br_netfilter off)."""
    path, lab = f.path, f.lab
    if path.reply is None or not path.reply.hops:
        return None
    dnat = next((j for j, h in enumerate(path.hops) if any("(DNAT)" in c for c in h.changes)),
                None)
    first = path.hops[0].packet if path.hops and path.hops[0].packet else None
    if dnat is None or first is None:
        return None
    rep = path.reply.hops
    if any("(un-DNAT)" in c for h in rep for c in h.changes):
        return None
    last = next((h.packet for h in reversed(rep) if h.packet and h.packet.src), None)
    if last is None or last.src == first.dst:
        return None
    end = next((k for k in range(len(rep) - 1, -1, -1) if rep[k].point == "drop"), None)
    if end is None or rep[end].drop_reason != "NO_SOCKET":
        return None
    src, target = f.src, f.dst
    ev = [dnat, f.offset + end]
    same_bridge = isinstance(src, Sandbox) and isinstance(target, Sandbox) and \
        {n.id for n in _nets(lab, src) if n.driver == "bridge"} & \
        {n.id for n in _nets(lab, target) if n.driver == "bridge"}
    if not same_bridge:
        return _unknown(f"the request was DNATed at {_hop_ref(f, dnat)} but its answer came "
                        f"back from {last.src} without being un-NATed, and nettrace cannot "
                        f"tell why", ev)
    host = src.host
    off = str(_sysctls(lab, host).get(BRIDGE_NF_SYSCTL, "1")) == "0"
    why = (f"{BRIDGE_NF_SYSCTL}=0 on host {host}, so" if off else "so")
    return Diagnosis(
        Cause.HAIRPIN,
        f"{_name(src)} reached {_name(target)} through the host's published port "
        f"{first.dst}:{first.dport}, DNATed at {_hop_ref(f, dnat)}, but both are on one bridge: "
        f"{target.name}'s answer went straight back over the bridge, {why} conntrack never "
        f"undid the DNAT. {src.name} got it from {last.src}:{last.sport}, a peer it never "
        f"called, and dropped it at {_hop_ref(f, f.offset + end)}.", ev,
        [Fix(["modprobe br_netfilter", f"sysctl -w {BRIDGE_NF_SYSCTL}=1"],
             [LabEdit(EditOp.SET, f'hosts[name={host}].sysctls["{BRIDGE_NF_SYSCTL}"]', 1)])])


def _ok(f: _Facts, i: int) -> Diagnosis:
    lab = f.lab
    accepts = []
    for j, hop in enumerate(f.hops):
        r = hop.rule
        if r is None or hop.verdict != "accept" or r.table != "filter" or \
                (r.rule or "").startswith("policy"):
            continue
        accepts.append((j, explain(lab, hop, r)))
    dnat = next(((j, explain(lab, h)) for j, h in enumerate(f.path.hops)
                 if any("(DNAT)" in c for c in h.changes) and h.rule is not None), None)
    parts = [f"{_name(f.src, f.path.src)} reached {_name(f.dst, f.dst_ip)} at {_hop_ref(f, i)}"]
    if f.path.reply is not None:
        parts[0] += " and the answer came back"
    ev = [i]
    if dnat:
        parts.append(f"the published port was DNATed by {_rule_words(dnat[1])} at "
                     f"{_hop_ref(f, dnat[0])}")
        ev.append(dnat[0])
    if accepts:
        j, info = accepts[0]
        parts.append(f"{_rule_words(info)} let it through at {_hop_ref(f, j)}")
        ev.append(j)
    else:
        parts.append("no filter rule had to accept it (no Docker host forwarded it, or the "
                     "chains' policy is ACCEPT)")
    return Diagnosis(Cause.OK, "; ".join(parts) + ".", sorted(set(ev)), [])
