"""Docker's iptables rules, rendered from the lab and loaded with iptables-restore.

The layout is Docker 20.10's (docker-drivers.md §7.1), with the userland proxy off
(nettrace has no docker-proxy, so it uses Docker's hairpin mode): each network's FORWARD block is inserted above older
ones, ICC-off drops are appended, internal networks get the two isolation drops, and a
published port adds a DOCKER accept, a DNAT and a hairpin MASQUERADE. Rules are written
in one iptables-restore per namespace (Debian's iptables is the nf_tables backend).
"""

from __future__ import annotations

from nettrace.topology import netns
from nettrace.topology.model import Host, Lab, Network, Sandbox

DNS_IP = "127.0.0.11"


def _bridges(lab: Lab, host: Host) -> list[Network]:
    """Bridge networks on `host`, oldest first (creation order)."""
    return [n for n in lab.networks if n.driver == "bridge" and n.host == host.name]


def _published(lab: Lab, host: Host) -> list[tuple[Sandbox, Network, str, int, int, str | None]]:
    out = []
    for sb in lab.sandboxes.values():
        if sb.host != host.name or not sb.published:
            continue
        nets = [lab.network(ep.network, host.name) for ep in sb.endpoints]
        target = next((n for n in nets if n.driver == "bridge" and not n.internal), None)
        if target is None:
            continue                      # internal, macvlan or host mode: Docker ignores them
        for port in sb.published:
            addr, _, proto = port.partition("/")
            bits = addr.split(":")
            host_ip = bits[0] if len(bits) == 3 else None
            out.append((sb, target, proto or "tcp", int(bits[-2]), int(bits[-1]), host_ip))
    return out


def render_host(lab: Lab, host: Host) -> str:
    """iptables-restore input for one Docker host."""
    nets = _bridges(lab, host)
    newest_first = list(reversed(nets))
    f = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
         ":DOCKER - [0:0]", ":DOCKER-ISOLATION-STAGE-1 - [0:0]",
         ":DOCKER-ISOLATION-STAGE-2 - [0:0]", ":DOCKER-USER - [0:0]",
         "-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"]
    for n in newest_first:
        br = n.device
        if n.internal:
            if n.icc:
                f.append(f"-A FORWARD -i {br} -o {br} -j ACCEPT")
            continue
        f += [f"-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
              f"-A FORWARD -o {br} -j DOCKER",
              f"-A FORWARD -i {br} ! -o {br} -j ACCEPT"]
        if n.icc:
            f.append(f"-A FORWARD -i {br} -o {br} -j ACCEPT")
    for n in nets:
        if not n.icc:
            f.append(f"-A FORWARD -i {n.device} -o {n.device} -j DROP")
    published = _published(lab, host)
    for sb, n, proto, _hp, cp, _hip in published:
        ip = sb.ip(n.name)
        f.append(f"-A DOCKER -d {ip}/32 ! -i {n.device} -o {n.device} -p {proto} -m {proto} "
                 f"--dport {cp} -j ACCEPT")
    for n in newest_first:
        if n.internal:
            f += [f"-A DOCKER-ISOLATION-STAGE-1 ! -s {n.subnet} -o {n.device} -j DROP",
                  f"-A DOCKER-ISOLATION-STAGE-1 ! -d {n.subnet} -i {n.device} -j DROP"]
        else:
            f.append(f"-A DOCKER-ISOLATION-STAGE-1 -i {n.device} ! -o {n.device} "
                     f"-j DOCKER-ISOLATION-STAGE-2")
    f.append("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
    for n in newest_first:
        if not n.internal:
            f.append(f"-A DOCKER-ISOLATION-STAGE-2 -o {n.device} -j DROP")
    f += ["-A DOCKER-ISOLATION-STAGE-2 -j RETURN", "-A DOCKER-USER -j RETURN", "COMMIT"]

    # nat: userland proxy off -> OUTPUT covers loopback too, and LOCAL sources are masqueraded
    n_ = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
          ":POSTROUTING ACCEPT [0:0]", ":DOCKER - [0:0]",
          "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
          "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER"]
    for n in newest_first:
        if not n.internal:
            n_.append(f"-A POSTROUTING -o {n.device} -m addrtype --src-type LOCAL -j MASQUERADE")
    for n in newest_first:
        if n.masquerade and not n.internal:
            n_.append(f"-A POSTROUTING -s {n.subnet} ! -o {n.device} -j MASQUERADE")
    for sb, n, proto, _hp, cp, _hip in published:
        ip = sb.ip(n.name)
        n_.append(f"-A POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {cp} "
                  f"-j MASQUERADE")
    # Hairpin mode: no `-i <br> -j RETURN` and no `! -i <br>` on the DNAT, so containers
    # reach published ports through the host's address without a proxy.
    for sb, n, proto, hp, cp, hip in published:
        dst = f"-d {hip}/32 " if hip else ""
        n_.append(f"-A DOCKER {dst}-p {proto} -m {proto} --dport {hp} "
                  f"-j DNAT --to-destination {sb.ip(n.name)}:{cp}")
    n_.append("COMMIT")
    return "\n".join(f + n_) + "\n"


def dns_ports(sandbox: Sandbox) -> tuple[int, int]:
    """The embedded resolver's (udp, tcp) ports for a container: Docker picks random ones;
    nettrace derives them from the name so golden files stay stable."""
    import hashlib
    h = int(hashlib.sha1(sandbox.name.encode()).hexdigest()[:6], 16)
    return 30000 + h % 15000, 45000 + h % 15000


def render_sandbox_dns(sandbox: Sandbox) -> str:
    """Embedded DNS rules in a container on a user-defined network (docker-drivers.md §8)."""
    udp, tcp = dns_ports(sandbox)
    return "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]", ":DOCKER_OUTPUT - [0:0]", ":DOCKER_POSTROUTING - [0:0]",
        f"-A OUTPUT -d {DNS_IP}/32 -j DOCKER_OUTPUT",
        f"-A POSTROUTING -d {DNS_IP}/32 -j DOCKER_POSTROUTING",
        f"-A DOCKER_OUTPUT -d {DNS_IP}/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination {DNS_IP}:{tcp}",
        f"-A DOCKER_OUTPUT -d {DNS_IP}/32 -p udp -m udp --dport 53 -j DNAT --to-destination {DNS_IP}:{udp}",
        f"-A DOCKER_POSTROUTING -s {DNS_IP}/32 -p tcp -m tcp --sport {tcp} -j SNAT --to-source :53",
        f"-A DOCKER_POSTROUTING -s {DNS_IP}/32 -p udp -m udp --sport {udp} -j SNAT --to-source :53",
        "COMMIT", ""])


def apply_host(lab: Lab, host: Host) -> None:
    netns.run(host.netns, ["iptables-restore"], input=render_host(lab, host))


def apply_sandboxes(lab: Lab) -> None:
    """DNS rules in every container of a user-defined network, loaded concurrently."""
    import subprocess
    procs = []
    for sb in lab.sandboxes.values():
        if sb.resolv_conf.startswith("nameserver 127.0.0.11") and sb.network_mode != "host":
            proc = netns.popen(sb.netns, ["iptables-restore"], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
            procs.append((sb, proc, render_sandbox_dns(sb)))
    for sb, proc, text in procs:
        _, err = proc.communicate(text)
        if proc.returncode:
            from nettrace.errors import NettraceError
            raise NettraceError(f"iptables-restore failed in {sb.name}: {err.strip()}")


def dump(netns_name: str) -> str:
    """The namespace's rules as iptables-save prints them, without counters or comments."""
    out = netns.run(netns_name, ["iptables-save"], check=False).stdout
    keep = [ln if not ln.startswith(":") else ln.split(" [")[0]
            for ln in out.splitlines() if ln and not ln.startswith("#")]
    return "\n".join(keep)
