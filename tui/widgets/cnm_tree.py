"""The lab as Docker's Container Network Model: hosts → sandboxes → endpoints → networks."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree

from nettrace.topology.model import Lab, Network


def network_text(net: Network) -> Text:
    bits = [f"{net.driver}", net.scope.value if hasattr(net.scope, "value") else str(net.scope)]
    if net.subnet:
        bits.append(net.subnet)
    if net.gateway:
        bits.append(f"gw {net.gateway}")
    if net.device:
        bits.append(f"dev {net.device}")
    if net.vni:
        bits.append(f"vni {net.vni}")
    if not net.icc:
        bits.append("icc off")
    if net.internal:
        bits.append("internal")
    return Text.assemble((net.name, "bold yellow"), " ", (" · ".join(bits), "dim"))


class CnmTree(Tree):
    """Node data is the (netns, ifname) key the topology map uses, where there is one."""

    def __init__(self, **kw) -> None:
        super().__init__("no lab", **kw)
        self.show_root = True
        self.guide_depth = 2

    def set_lab(self, lab: Lab | None) -> None:
        self.clear()
        if lab is None:
            self.root.set_label(Text("no lab open: press l", style="dim"))
            return
        self.root.set_label(Text.assemble(("lab ", "dim"), (lab.name, "bold")))
        for host in lab.hosts.values():
            where = f" {host.uplink} {host.address}" if host.uplink else ""
            hnode = self.root.add(Text.assemble(("host ", "dim"), (host.name, "bold"),
                                                (f" netns {host.netns}{where}", "dim")),
                                  data=(host.netns, None), expand=True)
            for sb in lab.sandboxes.values():
                if sb.host != host.name:
                    continue
                label = Text.assemble(("sandbox ", "dim"), (sb.name, "bold green"),
                                      (f" ({sb.network_mode})", "dim"))
                if sb.published:
                    label.append(f" publish {', '.join(sb.published)}", "cyan")
                snode = hnode.add(label, data=(sb.netns, None), expand=True)
                for ep in sb.endpoints:
                    enode = snode.add(Text.assemble(
                        ("endpoint ", "dim"), (ep.ifname, "bold"),
                        f" {ep.ipv4}/{ep.prefixlen} ", (f"{ep.mac} mtu {ep.mtu}", "dim"),
                        (f" ↔ {ep.host_ifname}" if ep.host_ifname else "", "magenta")),
                        data=(sb.netns, ep.ifname), expand=True)
                    try:
                        net = lab.network(ep.network, sb.host)
                    except KeyError:
                        continue
                    enode.add_leaf(network_text(net), data=(net.netns, net.device))
                if not sb.endpoints:
                    snode.add_leaf(Text("no endpoints (host or none network)", style="dim"))
        for client in lab.clients.values():
            self.root.add_leaf(Text.assemble(("client ", "dim"), (client.name, "bold"),
                                             (f" {client.uplink} {client.address}", "dim")),
                               data=(client.netns, client.uplink))
        nets = self.root.add(Text("networks", style="dim"), expand=False)
        for net in lab.networks:
            host = f" on {net.host}" if net.host else ""
            nets.add_leaf(network_text(net) + Text(host, style="dim"), data=(net.netns, net.device))
        self.root.expand()
