"""Which link kinds this kernel can create, probed in a scratch namespace of our own.

This kernel has no dummy, 802.1Q VLAN, ipvlan or geneve: asking is the only reliable
test (modules may be built in or absent, /proc/config.gz may not exist).
"""

from __future__ import annotations

import functools
import os

from nettrace.topology import netns
from nettrace.topology.model import NS_PREFIX


@functools.cache
def has_link_kind(kind: str) -> bool:
    from pyroute2.netlink.exceptions import NetlinkError
    scratch = f"{NS_PREFIX}.probe-{os.getpid()}.features"
    netns.create(scratch)
    try:
        with netns.iproute(scratch) as ipr:
            ipr.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
            if kind == "veth":
                return True
            parent = ipr.link_lookup(ifname="p0")[0]
            extra = {"link": parent}
            if kind == "vlan":
                extra["vlan_id"] = 10
            elif kind == "vxlan":
                extra = {"vxlan_id": 42}
            elif kind in ("dummy", "bridge"):
                extra = {}
            try:
                ipr.link("add", ifname="probe", kind=kind, **extra)
                return True
            except NetlinkError:
                return False
    finally:
        netns.remove(scratch)
