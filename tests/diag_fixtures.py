"""Hand-written labs and hops shaped like what the tracer really produces (see
`nettrace path --json` on the embedded labs): used by the pure diagnosis tests."""

from __future__ import annotations

from nettrace.topology.model import (
    Endpoint,
    Host,
    Interface,
    Lab,
    Network,
    Role,
    Sandbox,
    Scope,
)
from nettrace.trace.assemble import verdict
from nettrace.trace.model import Hop, NfRule, Packet, Path

HOST_IP, CLIENT_IP = "192.168.50.11", "192.168.50.100"


def lab(*nets: tuple, containers: dict[str, list[str]] | None = None, name: str = "t",
        published: dict[str, list[str]] | None = None, macvlan: bool = False) -> Lab:
    """nets: (name, subnet-prefix "10.10.0", icc, internal[, driver]); containers: name -> nets."""
    L = Lab(name=name)
    L.hosts["host"] = Host("host", "nt.t.host", "eth0", HOST_IP)
    L.clients["client"] = Host("client", "nt.t.client", "eth0", CLIENT_IP, kind="client")
    L.networks.append(Network("bridge", "bridge", Scope.LOCAL, "b" * 64, "host",
                              "172.17.0.0/16", "172.17.0.1", "docker0", "nt.t.host"))
    for n in nets:
        name_, prefix, icc, internal = n[:4]
        driver = n[4] if len(n) > 4 else "bridge"
        dev = f"br-{name_[:4]}00000000"[:15] if driver == "bridge" else "mvparent"
        L.networks.append(Network(name_, driver, Scope.LOCAL, name_ * 8, "host",
                                  f"{prefix}.0/24", f"{prefix}.1", dev, "nt.t.host",
                                  icc=icc, internal=internal))
    for cname, cnets in (containers or {}).items():
        sb = Sandbox(cname, "host", f"nt.t.host.{cname}",
                     published=list((published or {}).get(cname, [])))
        for k, net in enumerate(cnets):
            nw = L.network(net)
            base = nw.subnet.rsplit(".", 1)[0]
            ip = f"{base}.{2 + sum(1 for s in L.sandboxes.values() for e in s.endpoints if e.network == net)}"
            sb.endpoints.append(Endpoint(f"{cname}-{net}", cname, net, f"eth{k}", "02:42:00:00:00:01",
                                         ip, int(nw.subnet.split("/")[1]), nw.mtu,
                                         f"veth{cname}{k}", "nt.t.host"))
            L.interfaces.append(Interface(sb.netns, f"eth{k}", Role.CONTAINER, "host", cname, net))
            L.interfaces.append(Interface("nt.t.host", f"veth{cname}{k}", Role.VETH_HOST, "host",
                                          None, net))
        L.sandboxes[cname] = sb
    for net in L.networks:
        L.interfaces.append(Interface("nt.t.host", net.device, Role.BRIDGE, "host", None, net.name))
    return L


def pkt(src, dst, proto="icmp", sport=None, dport=None, info=None, ttl=64, length=84,
        outer=None) -> Packet:
    return Packet(src=src, dst=dst, proto=proto, sport=sport, dport=dport, ttl=ttl, ip_id=7,
                  length=length, info=info or ("echo-request" if proto == "icmp" else "SYN"),
                  outer=outer)


def out(L: Lab, sb: str, p: Packet, ts: int) -> list[Hop]:
    """A container sending: LOCAL_OUT, POST_ROUTING, the queue on eth0, the host's veth end."""
    ns = L.sandboxes[sb].netns if sb in L.sandboxes else L.netns_of(sb)
    owner = {"sandbox": sb, "host": "host"} if sb in L.sandboxes else {"host": sb}
    return [Hop(ts, "nf:LOCAL_OUT", netns=ns, device="eth0", hook="LOCAL_OUT", out_dev="eth0",
                verdict="accept", packet=p, family="ipv4", **owner),
            Hop(ts + 50, "nf:POST_ROUTING", netns=ns, device="eth0", hook="POST_ROUTING",
                out_dev="eth0", verdict="accept", packet=p, family="ipv4", **owner),
            Hop(ts + 100, "tp:net_dev_queue", netns=ns, device="eth0", packet=p, **owner)]


def nf(hook: str, p: Packet, ts: int, *, in_dev=None, out_dev=None, verdict_="accept",
       rule: NfRule | None = None, netns="nt.t.host", sandbox=None, host="host",
       changes=None) -> Hop:
    return Hop(ts, f"nf:{hook}", host=host, sandbox=sandbox, netns=netns,
               device=out_dev or in_dev, role="bridge", hook=hook, family="ipv4",
               in_dev=in_dev, out_dev=out_dev, verdict=verdict_, rule=rule, packet=p,
               changes=list(changes or []))


def rx(dev: str, p: Packet, ts: int, *, netns="nt.t.host", sandbox=None, host="host",
       point="tp:netif_receive_skb") -> Hop:
    return Hop(ts, point, host=host, sandbox=sandbox, netns=netns, device=dev, packet=p)


def drop(reason: str, p: Packet | None, ts: int, location: str, *, netns="nt.t.host",
         sandbox=None, host="host", dev=None) -> Hop:
    return Hop(ts, "drop", host=host, sandbox=sandbox, netns=netns, device=dev,
               drop_reason=reason, location=location, packet=p)


def rule(table: str, chain: str, text: str, verdict_: str) -> NfRule:
    return NfRule("ip", table, chain, text, None, verdict_)


def path(L: Lab, src: str, dst: str, hops: list[Hop], reply_hops: list[Hop] | None = None,
         proto="icmp", dport=None, answered=None, dst_ip=None) -> Path:
    p = Path(L.name, src, dst, proto, hops=hops, verdict=verdict(hops, answered=answered),
             fingerprint={"proto": proto, "dst": dst_ip, "dport": dport})
    if reply_hops is not None:
        p.reply = Path(L.name, dst, src, proto, hops=reply_hops, verdict=verdict(reply_hops),
                       direction="reply")
    return p
