"""Hop-by-hop packet tracing with eBPF: `Tracer` is the API (see nettrace.trace.tracer).

Heavy modules (bcc, scapy, pyroute2) load only when a Tracer opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nettrace.trace.probes import ProbeStatus
    from nettrace.trace.tracer import Tracer

__all__ = ["Tracer", "ProbeStatus"]


def __getattr__(name: str):
    if name == "Tracer":
        from nettrace.trace.tracer import Tracer
        return Tracer
    if name == "ProbeStatus":
        from nettrace.trace.probes import ProbeStatus
        return ProbeStatus
    raise AttributeError(name)
