"""Why Docker installs a firewall rule: one vocabulary for every engine profile.

Each rule a profile renders carries a `RulePurpose`; the rule index (`Lab.rules`) keeps it,
and the diagnosis reasons from it, never from the chain names of one profile (20.10's
DOCKER-ISOLATION-STAGE-2 drop and 29's DOCKER chain drop are both `ISOLATION`-style facts
told apart by purpose, not by name).
"""

from __future__ import annotations

from enum import Enum


class RulePurpose(str, Enum):
    DISPATCH = "dispatch"                    # a jump/vmap into Docker's own chains
    DOCKER_USER = "docker-user"              # the DOCKER-USER hook for the user's rules
    USER_FIREWALL = "user-firewall"          # a rule nobody rendered: the user's own
    CONNTRACK_ESTABLISHED = "conntrack-established"  # accept replies of known flows
    ISOLATION = "isolation"                  # keep networks apart (one bridge to another)
    ICC = "icc"                              # container to container on one bridge (accept/drop)
    INTERNAL = "internal"                    # --internal: nothing in or out of the subnet
    OUTGOING = "outgoing"                    # accept what leaves a network
    PUBLISHED_PORT = "published-port"        # accept a published port's traffic to the container
    UNPUBLISHED_PORT_DROP = "unpublished-port-drop"  # drop what a network did not publish
    UNPROTECTED = "unprotected"              # gateway mode nat-unprotected: accept every port
    ROUTED_ICMP = "routed-icmp"              # gateway mode routed: ICMP to containers accepted
    DIRECT_ACCESS = "direct-access"          # raw drop of packets straight to a container address
    REMOTE_LOOPBACK = "remote-loopback"      # raw drop of remote packets to a loopback-bound port
    DNAT = "dnat"                            # published port: host port -> container port
    MASQUERADE = "masquerade"                # a network's egress NAT
    SNAT = "snat"                            # egress NAT to com.docker.network.host_ipv4
    HAIRPIN = "hairpin"                      # NAT so a container/host reaches a published port
    EMBEDDED_DNS = "embedded-dns"            # 127.0.0.11 redirection inside a container
    INGRESS = "ingress"                      # swarm routing mesh (DOCKER-INGRESS)
    POLICY = "policy"                        # a base chain's default verdict
