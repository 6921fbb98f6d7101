"""Docker's firewall, rendered per engine profile, loaded, and indexed rule by rule.

One module per profile behind one interface (`base.Profile`): `docker2010` (Docker 20.10,
iptables), `docker29_iptables` and `docker29_nftables` (Docker 29, both backends). The
profile is picked from `lab.engine`; drivers never ask for a version. After loading, every
rule of a host is recorded in `lab.rules` (`index`), with the purpose its renderer gave it
(`purposes.RulePurpose`), so views name rules in the profile's syntax and the diagnosis
reasons from purposes.

Importing this package does not import the lab model (the model imports `purposes`).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from nettrace.topology import netns
from nettrace.topology.firewall.base import Profile, RenderedRule, Ruleset
from nettrace.topology.firewall.saved import dump
from nettrace.topology.firewall.purposes import RulePurpose
from nettrace.topology.firewall.sandbox_dns import DNS_IP, dns_ports, render_sandbox_dns

if TYPE_CHECKING:
    from nettrace.topology.model import Host, Lab

__all__ = ["DNS_IP", "Profile", "RenderedRule", "RulePurpose", "Ruleset", "apply_host",
           "apply_sandboxes", "dns_ports", "dump", "listing", "profile_for", "reindex_host",
           "render_host", "render_sandbox_dns"]


def profile_for(lab: "Lab") -> Profile:
    """The engine profile of `lab` (lab.engine: version and firewall backend)."""
    from nettrace.errors import NettraceError
    from nettrace.topology.firewall.docker29_iptables import Docker29Iptables
    from nettrace.topology.firewall.docker29_nftables import Docker29Nftables
    from nettrace.topology.firewall.docker2010 import Docker2010
    engine = lab.engine
    version, backend = str(getattr(engine.version, "value", engine.version)), \
        str(getattr(engine.firewall, "value", engine.firewall))
    if version == "20.10" and backend == "iptables":
        return Docker2010()
    if version == "29" and backend == "iptables":
        return Docker29Iptables()
    if version == "29" and backend == "nftables":
        return Docker29Nftables()
    raise NettraceError(f"no firewall profile for Docker {version} with the {backend} backend")


def hairpin_nat(lab: "Lab") -> bool:
    """Whether the profile publishes ports with Docker's hairpin-NAT layout (userland proxy
    off: DNAT for loopback and same-bridge sources too), which needs hairpin on the bridge
    ports and route_localnet on the bridges; with the proxy layout, docker-proxy serves those
    and Docker sets neither (20.10 as recorded on the real engine: hairpin off). Every
    profile renders the layout `engine.userland_proxy` asks for."""
    return not lab.engine.userland_proxy


def render_host(lab: "Lab", host: "Host") -> str:
    """The document that loads `host`'s rules (iptables-restore input or nft script)."""
    return profile_for(lab).render(lab, host).document


def apply_host(lab: "Lab", host: "Host") -> None:
    """Render, load and index one Docker host's firewall (replaces its entries in lab.rules)."""
    profile = profile_for(lab)
    rules = profile.load(lab, host, profile.render(lab, host))
    lab.rules = [r for r in lab.rules if r.host != host.name] + rules


def reindex_host(lab: "Lab", host: "Host") -> None:
    """Index `host`'s rules again (after the lab's own iptables entries were added)."""
    profile = profile_for(lab)
    rules = profile.read(lab, host, profile.render(lab, host))
    lab.rules = [r for r in lab.rules if r.host != host.name] + rules


def apply_sandboxes(lab: "Lab") -> None:
    """DNS rules in every container of a user-defined network, loaded and indexed concurrently."""
    from nettrace.errors import NettraceError
    from nettrace.topology.firewall import index, sandbox_dns
    from nettrace.topology.sandbox_files import uses_embedded_dns
    todo = [sb for sb in lab.sandboxes.values() if uses_embedded_dns(sb)]
    procs = []
    for sb in todo:
        ruleset = sandbox_dns.render(sb)
        proc = netns.popen(sb.netns, ["iptables-restore"], stdin=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        procs.append((sb, proc, ruleset))
    for sb, proc, ruleset in procs:
        _, err = proc.communicate(ruleset.document)
        if proc.returncode:
            raise NettraceError(f"iptables-restore failed in {sb.name}: {err.strip()}")
    reads = [(sb, ruleset,
              netns.popen(sb.netns, ["iptables-save", "-t", "nat"], stdout=subprocess.PIPE,
                          text=True),
              netns.popen(sb.netns, ["nft", "-j", "-a", "list", "ruleset"],
                          stdout=subprocess.PIPE, text=True))
             for sb, _, ruleset in procs]
    names = {sb.name for sb in todo}
    lab.rules = [r for r in lab.rules if r.host not in names]
    for sb, ruleset, save, listing in reads:
        saved, listed = save.communicate()[0], listing.communicate()[0]
        lab.rules += index.zip_rules(sb.name, "ip", index.nft_handles(listed, "ip", ("nat",)),
                                     index.iptables_save_rules(saved), ruleset.rules)


def listing(lab: "Lab", host: "Host") -> tuple[str, str]:
    """(command, text): `host`'s rules as the kernel lists them in the profile's syntax."""
    return profile_for(lab).listing(host)
