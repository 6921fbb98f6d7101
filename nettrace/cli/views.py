"""Rendering of labs for the terminal (rich; colour only on a TTY)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from nettrace.topology.model import Lab


def console() -> Console:
    """Colour and terminal width on a TTY; plain, unwrapped lines for pipes and scripts."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=250, no_color=True)


def print_table(headers: list[str], rows: list[list]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    console().print(table)


def addresses(ep) -> str:
    """An endpoint's addresses with prefix lengths: IPv4, then IPv6 where the network has it."""
    return " ".join(a for a in (f"{ep.ipv4}/{ep.prefixlen}" if ep.ipv4 else "",
                                f"{ep.ipv6}/{ep.prefixlen6}" if ep.ipv6 else "") if a)


def print_lab_summary(lab: Lab) -> None:
    rows = []
    for sb in lab.sandboxes.values():
        eps = ", ".join(f"{e.ifname} {addresses(e)} ({e.network})" for e in sb.endpoints)
        rows.append([sb.name, sb.host, sb.network_mode, eps or "lo only",
                     " ".join(sb.published)])
    for c in lab.clients.values():
        rows.append([c.name, "(external)", "client", f"eth0 {c.address}/24 (underlay)", ""])
    print_table(["CONTAINER", "HOST", "MODE", "ENDPOINTS", "PUBLISHED"], rows)


def lab_tree(lab: Lab) -> Tree:
    """Hosts -> networks and sandboxes -> endpoints, in Docker's terms."""
    root = Tree(f"[bold]lab {lab.name}[/]  ({lab.source or 'docker'})")
    root.add(f"engine {lab.engine}")
    if lab.underlay_netns:
        root.add(f"underlay {lab.underlay_subnet}  netns {lab.underlay_netns}"
                 + (f"  mtu {lab.underlay_mtu}" if lab.underlay_mtu != 1500 else ""))
    for host in lab.hosts.values():
        addr = f"  uplink {host.uplink} {host.address}" if host.address else ""
        h = root.add(f"[bold]host {host.name}[/]  netns {host.netns}{addr}")
        _lab_settings(h, host)
        nets = h.add("networks")
        for net in lab.networks:
            if net.host not in (None, host.name):
                continue
            if net.scope.value == "swarm" and not any(
                    sb.host == host.name and any(e.network == net.name for e in sb.endpoints)
                    for sb in lab.sandboxes.values()):
                continue
            flags = [f for f, on in (("internal", net.internal), ("icc off", not net.icc)) if on]
            extra = f" vni {net.vni}" if net.vni else ""
            nets.add(f"{net.name} [dim]({net.driver}, {net.scope.value})[/] {net.subnet or ''}"
                     + (f" {net.subnet_v6} gw6 {net.gateway_v6}" if net.subnet_v6 else "") +
                     f" gw {net.gateway or '-'} dev {net.device or '-'} mtu {net.mtu}{extra}"
                     + (f" [{', '.join(flags)}]" if flags else "") + f"  id {net.id[:12]}")
        sbs = h.add("sandboxes")
        for sb in lab.sandboxes.values():
            if sb.host != host.name:
                continue
            node = sbs.add(f"[bold]{sb.name}[/] ({sb.network_mode})  netns {sb.netns}"
                           + (f"  publish {' '.join(sb.published)}" if sb.published else "")
                           + (f"  listen {' '.join(sb.listen)}" if sb.listen else ""))
            if not sb.endpoints:
                node.add("lo" if sb.network_mode == "none" else "shares the host's interfaces")
            for ep in sb.endpoints:
                peer = f" <-> {ep.host_ifname}" if ep.host_ifname else ""
                node.add(f"endpoint {ep.name}: {ep.ifname} {addresses(ep)} {ep.mac} "
                         f"mtu {ep.mtu}{peer} -> network {ep.network}")
            for route in sb.routes[:1]:
                node.add(f"[dim]route {route}[/]")
    for c in lab.clients.values():
        _lab_settings(root.add(f"[bold]client {c.name}[/] (external)  netns {c.netns}  "
                               f"eth0 {c.address}"), c)
    return root


def _lab_settings(node: Tree, host) -> None:
    """What the lab file set on a host or client beyond Docker: sysctls, iptables entries,
    routes."""
    from rich.markup import escape
    for key, value in host.sysctls.items():
        node.add(f"[dim]sysctl[/] {escape(key)}={escape(value)}")
    for entry in host.firewall:
        node.add(f"[dim]iptables[/] {escape(entry)}")
    for route in host.routes:
        node.add(f"[dim]route[/] {escape(route)}")


def print_lab_tree(lab: Lab) -> None:
    console().print(lab_tree(lab))


def print_firewall(lab: Lab) -> None:
    from nettrace.topology import firewall
    con = console()
    for host in lab.hosts.values():
        how, text = firewall.listing(lab, host)      # in the engine profile's own syntax
        con.print(f"\n[bold]firewall of host {host.name}[/] ({how} in {host.netns})")
        con.print(text or "(no rules)", markup=False)
