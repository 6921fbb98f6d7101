"""Network drivers: each wires sandboxes to its kind of network out of Linux primitives.

A driver (the `Driver` protocol in base.py) has three steps, called by the builder:
`create_network(ctx, spec, host)` (bridge, overlay sandbox, macvlan parent...),
`join(ctx, spec, sandbox, attachment)` (an Endpoint: veth pair or macvlan child), and
`finish(ctx)` once every container is joined (overlay peer programming). The registry
below maps Docker's driver names to them, and SANDBOXES wires containers' namespaces;
both are handed to the builder (`builder.up(spec, drivers=, sandboxes=)`), like Mininet is
handed its classes. Drivers build with `nettrace.topology.context`, never the builder.
"""

from __future__ import annotations

from nettrace.errors import KernelFeatureMissing
from nettrace.topology.drivers.base import Driver, NullDriver, SandboxWiring
from nettrace.topology.drivers.bridge import BridgeDriver
from nettrace.topology.drivers.macvlan import IpvlanDriver, MacvlanDriver
from nettrace.topology.drivers.overlay import OverlayDriver
from nettrace.topology.drivers.sandbox import SandboxDriver
from nettrace.topology.spec import LabSpec

DRIVERS: dict[str, Driver] = {
    "bridge": BridgeDriver(),
    "host": NullDriver(),      # the container shares its host's namespace: nothing to wire
    "null": NullDriver(),      # only lo
    "macvlan": MacvlanDriver(),
    "ipvlan": IpvlanDriver(),
    "overlay": OverlayDriver(),
}
SANDBOXES: SandboxWiring = SandboxDriver()


def check_kernel_support(spec: LabSpec) -> None:
    """Refuse, before building, what this kernel cannot do (named, never a crash)."""
    from nettrace.topology.features import has_link_kind
    for net in spec.networks:
        if net.driver == "ipvlan" and not has_link_kind("ipvlan"):
            raise KernelFeatureMissing("ipvlan (CONFIG_IPVLAN)", f"network '{net.name}' (driver ipvlan)")
        if net.driver == "macvlan":
            if not has_link_kind("macvlan"):
                raise KernelFeatureMissing("macvlan (CONFIG_MACVLAN)", f"network '{net.name}'")
            if net.parent and "." in net.parent and not has_link_kind("vlan"):
                raise KernelFeatureMissing(
                    "802.1Q VLAN (CONFIG_VLAN_8021Q)",
                    f"network '{net.name}': parent '{net.parent}' is a VLAN sub-interface, which")
        if net.driver == "overlay" and not has_link_kind("vxlan"):
            raise KernelFeatureMissing("vxlan (CONFIG_VXLAN)", f"network '{net.name}' (overlay)")
