"""Replay a capture into a lab: inject every frame from one endpoint and trace it.

Frames are pipelined: many are in flight at once, each under its own fingerprint in the
kernel filter (nettrace.trace.pipeline), and results come back in frame order. The
capture is streamed (only the frames in flight are in memory). IP frames are sent at layer 3
by default, so the lab's kernel routes them and resolves MAC addresses as it would for
the container's own traffic; other frames (ARP) are sent at layer 2. A frame whose
destination cannot be routed from the endpoint stops the replay with an error naming the
frame; every frame before it is traced and handed to the caller first.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from nettrace.capture.frames import (Rewrite, apply_rewrite, frame_bytes, link_payload,
                                     parse_rewrites, summary, to_packet)
from nettrace.trace.endpoints import NodeAddress, node_address
from nettrace.capture.reader import CaptureError, CaptureReader
from nettrace.errors import NettraceError
from nettrace.trace.events import ETH_P_IP, ETH_P_IPV6, parse_headers
from nettrace.trace.model import DELIVERED, DROPPED, Path
from nettrace.views.paths import rule_text

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

LAYERS = ("auto", "l2", "l3")


class UnroutableFrame(CaptureError):
    """A frame the chosen endpoint has no route for."""


@dataclass
class FrameResult:
    number: int
    data: bytes                 # the frame as injected (IP packet for l3, Ethernet for l2)
    layer: str                  # l2 | l3
    path: Path

    @property
    def packet(self) -> str:
        """Scapy's summary of the frame (made when asked: it costs more than tracing it)."""
        return summary(self.data, self.layer)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.number, "packet": self.packet, "layer": self.layer,
                "path": self.path.to_dict()}


@dataclass
class ReplaySummary:
    """What happened to the frames of a replay."""

    capture: str
    lab: str
    source: str
    sent: int = 0
    delivered: int = 0
    dropped: Counter = field(default_factory=Counter)     # (place, reason) -> frames
    lost: int = 0
    events_lost: int = 0
    error: str | None = None
    seconds: float = 0.0          # wall time of the whole replay, tracer start-up included
    trace_seconds: float = 0.0    # from the first frame sent to the last path traced

    def add(self, result: FrameResult) -> None:
        self.sent += 1
        v = result.path.verdict
        self.events_lost += result.path.events_lost
        if v.kind == DELIVERED:
            self.delivered += 1
        elif v.kind == DROPPED:
            reason = v.reason or "no reason given"
            if v.rule:
                reason += f", {rule_text(v.rule)}"
            self.dropped[(v.where or "?", reason)] += 1
        else:
            self.lost += 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def lines(self) -> list[str]:
        rate = ""
        if self.seconds > 0:
            rate = f" in {self.seconds:.2f} s"
        if self.trace_seconds > 0 and self.sent:
            rate += (f" ({self.sent / self.trace_seconds:.1f} frames/s once the tracer was up, "
                     f"after {self.seconds - self.trace_seconds:.2f} s of start-up)")
        out = [f"replayed {self.capture} into lab {self.lab} from {self.source}{rate}",
               f"  sent      {self.sent}",
               f"  delivered {self.delivered}",
               f"  dropped   {self.dropped_total}"]
        for (place, reason), n in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            out.append(f"    {n:>6}  at {place}: {reason}")
        out.append(f"  lost      {self.lost}")
        if self.events_lost:
            out.append(f"  (tracer lost {self.events_lost} events: paths may be incomplete)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"capture": self.capture, "lab": self.lab, "from": self.source,
                "sent": self.sent, "delivered": self.delivered, "dropped": self.dropped_total,
                "dropped_by": [{"where": p, "reason": r, "frames": n}
                               for (p, r), n in sorted(self.dropped.items())],
                "lost": self.lost, "events_lost": self.events_lost, "error": self.error,
                "seconds": round(self.seconds, 3), "trace_seconds": round(self.trace_seconds, 3)}


class RouteCheck:
    """Answers 'can this endpoint send to that address?' from inside its namespace."""

    def __init__(self, node: NodeAddress):
        from nettrace.topology import netns
        self.node = node
        self._ipr = netns.iproute(node.netns)
        self._cache: dict[str, str | None] = {}

    MAX_CACHED = 4096          # a capture of a million hosts must not grow memory

    def problem(self, dst: str) -> str | None:
        if dst not in self._cache:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            from pyroute2.netlink.exceptions import NetlinkError
            try:
                self._ipr.route("get", dst=dst)
                self._cache[dst] = None
            except NetlinkError as exc:
                why = {errno.ENETUNREACH: "no route",
                       errno.EHOSTUNREACH: "host unreachable"}.get(exc.code, str(exc))
                self._cache[dst] = why
        return self._cache[dst]

    def close(self) -> None:
        self._ipr.close()


def replay(lab: "Lab", capture: str, source: str, *, rewrite: Sequence[str] = (),
           layer: str = "auto", timeout: float = 2.0, tracer=None, rules: bool = True,
           on_progress: Callable[[int, int], None] | None = None,
           summary_out: ReplaySummary | None = None,
           window: int | None = None) -> Iterator[FrameResult]:
    """Inject and trace every frame of `capture` from lab node `source`, many in flight at
    once (`window`, see nettrace.trace.pipeline; 1: one at a time); results in frame order.

    `tracer`: an open `nettrace.trace.Tracer` to reuse (one is opened and closed here
    otherwise; `rules=False` opens it without netfilter rule attribution, nft trace).
    `summary_out` is filled as frames go. `on_progress(bytes_read, size)`.
    """
    if layer not in LAYERS:
        raise CaptureError(capture, f"layer '{layer}' is not one of {', '.join(LAYERS)}")
    node = node_address(lab, source)
    rw: Rewrite = parse_rewrites(rewrite, lab, node)
    summ = summary_out if summary_out is not None else ReplaySummary(capture, lab.name, source)
    reader = CaptureReader(capture)          # bad files fail before any kernel object exists
    own_tracer = tracer is None
    routes = RouteCheck(node)
    sender_name = node.name.partition("@")[0]

    def injections():
        """The frames as injections; a frame that cannot be sent stops here, by number."""
        for frame in reader:
            payload = link_payload(frame, capture)
            send_layer = payload.layer if layer == "auto" else layer
            try:                  # scapy only to rewrite: bytes go as they are
                data = bytes(apply_rewrite(to_packet(payload, send_layer), rw)) if rw.active \
                    else frame_bytes(payload, send_layer)
            except ValueError as exc:
                raise CaptureError(capture, f"cannot be sent at layer {send_layer[1]}: "
                                            f"{_why_not(payload, send_layer, exc)}",
                                   frame=frame.number) from None
            try:
                inj = tracer.prepare(sender_name, data, layer=send_layer,
                                     tag=(frame.number, data, send_layer, reader.position))
            except NettraceError as exc:          # e.g. a protocol the tracer cannot follow
                raise CaptureError(capture, f"cannot be traced: {exc}",
                                   frame=frame.number) from None
            why = routes.problem(inj.fp.dst) if send_layer == "l3" else None
            if why:
                raise UnroutableFrame(
                    capture, f"{inj.fp.dst} cannot be routed from {source} ({why} in its "
                             f"namespace); map it to a lab node with --rewrite "
                             f"{_original_dst(payload)}=<container>", frame=frame.number)
            yield inj

    try:
        if own_tracer:
            from nettrace.trace import Tracer
            tracer = Tracer(lab, nftrace=rules).__enter__()
        started = time.perf_counter()
        for inj, path in tracer.trace_many(injections(), timeout=timeout, window=window):
            number, data, send_layer, position = inj.tag
            result = FrameResult(number, data, send_layer, path)
            summ.add(result)
            summ.trace_seconds = time.perf_counter() - started
            if on_progress:
                on_progress(position, reader.size)
            yield result
    except CaptureError as exc:
        summ.error = str(exc)
        raise
    finally:
        routes.close()
        reader.close()
        if own_tracer and tracer is not None:
            tracer.__exit__(None, None, None)


def _why_not(payload, layer: str, exc: ValueError) -> str:
    if "cut short" in str(exc):
        return f"its {exc}"
    if layer == "l2":
        return "it was captured without an Ethernet header (send it with --layer l3)"
    return "it is not an IP packet (send it with --layer l2 or auto)"


def _original_dst(payload) -> str:
    """The capture's own destination (before any rewrite), read by the probes' parser."""
    data = payload.data
    return str(parse_headers(data, False, ETH_P_IPV6 if data[0] >> 4 == 6 else ETH_P_IP).dst)
