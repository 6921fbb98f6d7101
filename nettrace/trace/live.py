"""Live tracing's stream of observed packets: group events per packet, release each packet
within a time bound, hold a bounded amount, and count every packet that is not shown.

`nettrace trace` (Tracer.live) reads the ring buffer, hands every event to a
`PacketStream`, and shows the packets the stream releases. The rules:

* One packet = one key: its IPv4 identity (protocol, addresses, id, ports), its ARP
  operation, or (headers unreadable) its skb.
* Time bound per packet, not per quiet spell: a packet is released `hold_ns` after its
  FIRST event (kernel clock), however busy the traffic is, so continuous load cannot
  starve it. Events of a released packet that come later are counted (`late_events`).
* Bounded memory: at most `max_events` events are held. A packet whose first event
  arrives while the stream is full is not kept: it is counted in `dropped` (nettrace's own
  loss counter, beside the kernel's ring-buffer counter), and so are later events of a
  held packet that no longer fit (`events_discarded`: the packet is still shown). The
  reader (Tracer.live) first lets the kernel's ring buffer absorb a burst: while it is
  less than half full, only as many events are read as the stream has room for, and a
  full stream shows its oldest packets early (`pop_oldest`) to make room; beyond half
  full everything is read and what does not fit is dropped here, counted, so the kernel
  does not have to lose events.
* `drain()` releases everything held at once: what waits when tracing stops is shown.

So every packet the probes reported is either shown or counted in `dropped`. This module
is pure (events in, groups of events out): no bcc, no clock of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Hashable

from nettrace.trace.events import ETH_P_IP, VXLAN_PORT, Event, parse_headers

HOLD_NS = 50_000_000          # a packet is shown 50 ms after its first event
MAX_EVENTS = 50_000           # events held for packets not shown yet
#: worst case per held event, measured by tests/test_trace_cli.py (tracemalloc): the copy
#: of the kernel record (~190 bytes of fields and headers), its Event, and (one event per
#: packet) the packet's key, entry and list
EVENT_BYTES = 1024
#: per remembered key of a released or dropped packet (same test)
GONE_BYTES = 640
#: a released or dropped packet's key is remembered this long after its first event, so
#: its late events are not taken for a new packet; well under the time an IPv4 id takes
#: to come round again (65,536 packets between two hosts: 0.6 s at 100k packets/s)
REMEMBER_NS = 3 * HOLD_NS
MAX_REMEMBERED = 16_384      # 150 ms of packets at 100k/s


def packet_key(ev: Event) -> Hashable:
    """One observed packet: its IPv4 identity (protocol, addresses, id, ports or ICMP echo
    id and sequence; the inner packet of VXLAN), its ARP operation, else its skb.

    IPv4 is keyed on the raw header bytes (the same fields parse_headers reads, a few times
    cheaper: every event of a flood goes through here)."""
    hdr = ev.hdr
    off, ethertype = 0, ev.ethertype
    if ev.l2 and len(hdr) >= 14:
        ethertype, off = hdr[12] << 8 | hdr[13], 14
    if ethertype == ETH_P_IP:
        key = _ipv4_key(hdr, off)
        if key is not None:
            return key
    pkt = parse_headers(hdr, ev.l2, ev.ethertype)
    if pkt.proto == "arp":
        return ("arp", pkt.src, pkt.dst, pkt.info)
    return ("skb", ev.skb)


def _ipv4_key(hdr: bytes, off: int) -> bytes | None:
    if len(hdr) < off + 20:
        return None
    proto, l4 = hdr[off + 9], off + (hdr[off] & 0xF) * 4
    if proto in (6, 17) and len(hdr) >= l4 + 4:
        if proto == 17 and hdr[l4 + 2] << 8 | hdr[l4 + 3] == VXLAN_PORT and \
                len(hdr) >= l4 + 16 + 14 + 20 and hdr[l4 + 28:l4 + 30] == b"\x08\x00":
            return _ipv4_key(hdr, l4 + 16 + 14)        # VXLAN: the inner packet
        ports = hdr[l4:l4 + 4]
    elif proto == 1 and len(hdr) >= l4 + 8:
        ports = hdr[l4:l4 + 1] + (hdr[l4 + 4:l4 + 8] if hdr[l4] in (0, 8) else b"")
    else:
        ports = b""
    return hdr[off + 9:off + 10] + hdr[off + 12:off + 20] + hdr[off + 4:off + 6] + ports


@dataclass
class LiveStats:
    """What a live stream did; `dropped` is nettrace's own loss counter (packets)."""

    shown: int = 0                # packets released
    dropped: int = 0              # packets seen but not held: memory bound reached
    events: int = 0               # events received
    events_discarded: int = 0     # events of held packets that did not fit
    late_events: int = 0          # events of packets already shown
    dropped_events: int = 0       # events of packets counted in `dropped`
    held_events_peak: int = 0
    held_packets: int = 0         # packets held now (neither shown nor dropped yet)
    max_events: int = MAX_EVENTS

    @property
    def memory_bound_bytes(self) -> int:
        return self.max_events * EVENT_BYTES + MAX_REMEMBERED * GONE_BYTES

    def to_dict(self) -> dict:
        return {**asdict(self), "memory_bound_bytes": self.memory_bound_bytes}


class _Held:
    __slots__ = ("first_ns", "events")

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.events: list[Event] = []


class PacketStream:
    """Events in (`add`), packets out (`pop_due`, `drain`): see the module docstring."""

    def __init__(self, *, hold_ns: int = HOLD_NS, max_events: int = MAX_EVENTS,
                 key: Callable[[Event], Hashable] = packet_key) -> None:
        self.hold_ns = hold_ns
        self.key = key
        self.stats = LiveStats(max_events=max_events)
        self._held: OrderedDict[Hashable, _Held] = OrderedDict()   # by first arrival
        self._held_events = 0
        # released or dropped packets: key -> (first_ns, shown)
        self._gone: OrderedDict[Hashable, tuple[int, bool]] = OrderedDict()
        self.frontier_ns = 0          # newest event time seen

    @property
    def held_packets(self) -> int:
        return len(self._held)

    @property
    def held_events(self) -> int:
        return self._held_events

    @property
    def room(self) -> int:
        """Events that can still be held."""
        return max(0, self.stats.max_events - self._held_events)

    def due(self, now_ns: int) -> bool:
        """Whether pop_due(now_ns) would release a packet."""
        return bool(self._held) and \
            next(iter(self._held.values())).first_ns <= now_ns - self.hold_ns

    def add(self, ev: Event) -> None:
        st = self.stats
        st.events += 1
        ts = ev.ts_ns
        if ts > self.frontier_ns:
            self.frontier_ns = ts
        k = self.key(ev)
        held = self._held.get(k)
        if held is None:
            gone = self._gone.get(k)
            if gone is not None and ts - gone[0] > REMEMBER_NS:    # the id came round again
                del self._gone[k]
                gone = None
            if gone is not None:
                if gone[1]:
                    st.late_events += 1
                else:
                    st.dropped_events += 1
                return
            if self._held_events >= st.max_events:
                st.dropped += 1
                st.dropped_events += 1
                self._forget_later(k, ts, shown=False)
                return
            held = self._held[k] = _Held(ts)
            st.held_packets += 1
        elif self._held_events >= st.max_events:
            st.events_discarded += 1
            return
        held.events.append(ev)
        self._held_events += 1
        if self._held_events > st.held_events_peak:
            st.held_events_peak = self._held_events

    def pop_due(self, now_ns: int) -> list[Event] | None:
        """The oldest held packet if `hold_ns` has passed since its first event, else None.

        `now_ns`: the kernel clock (CLOCK_MONOTONIC) when every event up to then has been
        read; the newest event's time (`frontier_ns`) while reading a backlog."""
        if not self._held:
            self._expire(now_ns)
            return None
        k, held = next(iter(self._held.items()))
        if held.first_ns > now_ns - self.hold_ns:
            self._expire(now_ns)
            return None
        return self._release(k)

    def pop_oldest(self) -> list[Event] | None:
        """The oldest held packet, due or not (the stream is full and the rest of the burst
        waits in the ring buffer: show it rather than drop what comes next)."""
        return self._release(next(iter(self._held))) if self._held else None

    def drain(self) -> list[list[Event]]:
        """Every held packet, oldest first (tracing stops: show what waits)."""
        return [self._release(k) for k in list(self._held)]

    def _release(self, k: Hashable) -> list[Event]:
        held = self._held.pop(k)
        self._held_events -= len(held.events)
        self.stats.shown += 1
        self.stats.held_packets -= 1
        self._forget_later(k, held.first_ns, shown=True)
        return held.events

    def _forget_later(self, k: Hashable, first_ns: int, *, shown: bool) -> None:
        self._gone[k] = (first_ns, shown)
        self._gone.move_to_end(k)
        while len(self._gone) > MAX_REMEMBERED:
            self._gone.popitem(last=False)

    def _expire(self, now_ns: int) -> None:
        gone = self._gone
        while gone:
            k, (first, _) = next(iter(gone.items()))
            if first > now_ns - REMEMBER_NS:
                break
            del gone[k]


__all__ = ["PacketStream", "LiveStats", "packet_key", "HOLD_NS", "MAX_EVENTS"]
