"""Many injected packets in flight at once: replay and check at thousands of frames/s.

Each injection gets a fingerprint of its own (its trace id) in the kernel filter before it
is sent; the kernel tags every event with the trace id of the fingerprint it matched, so
one ring buffer serves every packet in flight and events are routed by trace id alone
(`Assembler`). A path is complete when it is terminal and quiet (as for one packet), or
when its time is up; its fingerprint then leaves the filter and a new injection takes
its place in the window. Results come out in the order of the injections.

Two injections whose kernel keys collide (the same TCP source port, the same IPv4 id) are
never in flight together: the second waits until the first is complete, so an event is
never given to the wrong packet. An ARP request flies alone (its key, an address, would
also match the ARP the kernels send for the packets in flight).

    for inj, path in run(tracer, injections, timeout=2.0, window=64): ...

`Tracer.trace_many()` is the public entry point; the tracer's one-packet calls go
through it too.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

from nettrace.errors import NettraceError
from nettrace.inject import injector
from nettrace.inject.fingerprint import Fingerprint
from nettrace.trace.assemble import (_IPID, REPLY, Assembly, Request, TraceRecord, identity,
                                     rules_by_hook)
from nettrace.trace.model import DELIVERED, DROPPED, Path

QUIET_S = 0.02           # a path is complete when terminal and no event came for this long
UDP_REPLY_GRACE_S = 0.3   # UDP has no answer unless a server (a process: it may be slow
                          # on a busy machine) or an ICMP error sends one
NFT_WAIT_S = 0.5          # at most, for the nft trace lines of a path (they lag when busy)
WINDOW = 64               # injections in flight at once: enough to hide the ~50 ms a path
                          # takes at 1,000 frames/s, few enough that one pass over them stays
                          # well under a path's timeout on a busy machine


@dataclass
class Injection:
    """One packet to send and trace: what it is (the assembly's Request: SRC and DST as
    the user said them, the fingerprint), where it leaves and how it is sent."""

    request: Request
    ns: str                      # the sender's namespace
    ifname: str | None           # the sender's interface (layer 2)
    pkt: object                  # scapy packet (IP for l3, Ether for l2) or bytes
    layer: str                   # l3 | l2
    tag: object = None           # the caller's (a frame number)

    @property
    def fp(self) -> Fingerprint:
        return self.request.fingerprint


@dataclass
class _Flight:
    inj: Injection
    asm: Assembly                            # the packet's events -> its path
    sent: float
    lost_before: int
    last_event: float = 0.0
    done_at: float | None = None             # terminal since
    traced_at: float | None = None           # tracing over; waiting for nft lines
    dirty: bool = True
    path: Path | None = None
    result: Path | None = None


def _alone(inj: Injection) -> bool:
    """ARP requests fly alone: their key (an IPv4 address as ARP sender or target) also
    matches the ARP the kernels send for the other packets in flight."""
    return inj.fp.proto == "arp"


def complete(path: Path, fp: Fingerprint) -> bool:
    """Terminal: dropped; or delivered and answered (or no answer to expect)."""
    if path.verdict.kind == DROPPED:
        return True
    if path.verdict.kind != DELIVERED:
        return False
    if fp.proto == "udp" and path.reply is None:
        return False
    if fp.proto == "icmp" and not fp.echo_request:
        return True                   # a replayed echo reply or ICMP error: nothing answers it
    return path.reply is not None and path.reply.verdict.kind in (DELIVERED, DROPPED)


class _Lines:
    """nft trace lines routed to packets: each `nft monitor` trace id is one packet's walk
    through one namespace, and its `packet:` line names the IPv4 id."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], list] = {}
        self.by_ipid: dict[int, set[tuple[str, str]]] = {}
        self._born: deque[tuple[float, tuple[str, str]]] = deque()

    def add(self, lines: list) -> None:
        for tl in lines:
            key = (tl.netns, tl.trace_id)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = []
                self._born.append((tl.ts, key))
            group.append(tl)
            ip_id = _ip_id_of(tl)
            if ip_id is not None:
                self.by_ipid.setdefault(ip_id, set()).add(key)

    def lines_for(self, ip_ids: set[int]) -> list:
        keys = set().union(*(self.by_ipid.get(i, ()) for i in ip_ids)) if ip_ids else set()
        return [tl for key in keys for tl in self.groups.get(key, ())]

    def forget_before(self, ts: float) -> None:
        while self._born and self._born[0][0] < ts:
            _, key = self._born.popleft()
            for tl in self.groups.pop(key, ()):
                ip_id = _ip_id_of(tl)
                if ip_id is not None and ip_id in self.by_ipid:
                    self.by_ipid[ip_id].discard(key)
                    if not self.by_ipid[ip_id]:
                        del self.by_ipid[ip_id]


def _ip_id_of(tl) -> int | None:
    """The IPv4 id (IPv6 flow label) a `packet:` trace line names."""
    if not tl.text.startswith("packet:"):
        return None
    m = _IPID.search(tl.text)
    return int(m.group(1)) if m else None


def run(tracer, injections: Iterable[Injection], *, timeout: float = 2.0,
        window: int = WINDOW, skip: set[str] = frozenset()) -> Iterator[tuple[Injection, Path]]:
    """Send and trace `injections` with up to `window` in flight; yield (injection, path)
    in their order. An exception raised by the `injections` iterable (a bad frame) is
    raised after the paths of every injection before it have been yielded.

    `skip`: namespaces whose netfilter hooks no injection can pass (see Tracer._attach).
    Holds the tracer's lock until the iterator ends or is closed."""
    probes, nft = tracer.probes, tracer.nft
    source = iter(injections)
    order: deque[_Flight] = deque()          # every flight not yet yielded, in order
    flying: dict[int, _Flight] = {}          # trace id -> flight collecting events
    waiting: list[_Flight] = []              # traced; waiting for their nft lines
    busy: dict[tuple, int] = {}              # kernel key -> trace id that holds it
    lines = _Lines()
    held: Injection | None = None
    exhausted, failure = False, None
    sender = injector.Sender()

    def on_event(ev) -> None:
        f = flying.get(ev.trace_id)
        if f is not None:
            f.asm.add(ev)
            f.last_event = time.monotonic()
            f.dirty = True

    with tracer._lock:
        tracer._settle()
        probes.ipv6 = False                  # IPv6 hooks only once an IPv6 packet comes
        tracer._attach(probes, skip)
        try:
            while True:
                # 1. admit new injections while the window has room
                batch: list[Injection] = []
                batch_keys: set[tuple] = set()
                # in batches of a quarter window: each batch costs a round trip to every
                # namespace's nft shell (the marks must be in before the packets leave)
                room = window - len(flying) - len(waiting)
                if room < max(1, window // 4) and (flying or waiting):
                    room = 0
                while not exhausted and len(batch) < room:
                    if held is not None:
                        inj, held = held, None
                    else:
                        try:
                            inj = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        except Exception as exc:       # a bad frame: finish what flies
                            exhausted, failure = True, exc
                            break
                    keys = {tuple(k) for k in inj.fp.keys()}
                    if any(k in busy or k in batch_keys for k in keys) or (
                            _alone(inj) and (flying or waiting or batch)) or \
                            any(_alone(f.inj) for f in flying.values()):
                        held = inj                    # same key as a packet in flight
                        break
                    batch_keys |= keys
                    batch.append(inj)
                if batch:
                    _launch(tracer, batch, sender, order, flying, busy, skip)
                # 2. events
                probes.poll(on_event, timeout_ms=0 if held is None and batch else 2)
                if nft is not None:
                    lines.add(nft.drain())
                now = time.monotonic()
                # 3. paths that are complete (or out of time) leave the filter
                done: list[_Flight] = []
                for f in list(flying.values()):
                    if _traced(tracer, f, now, timeout):
                        done.append(f)
                if done:
                    gone = []
                    for f in done:
                        del flying[f.inj.fp.trace_id]
                        for k in f.inj.fp.keys():
                            busy.pop(tuple(k), None)
                            gone.append(tuple(k))
                        f.traced_at = now
                        waiting.append(f)
                    probes.unwatch_keys(gone)
                    if nft is not None:
                        nft.unwatch(*(f.inj.fp for f in done))
                # 4. nft lines: wait for them a little, then the final path
                for f in list(waiting):
                    if _finished(tracer, f, lines, now):
                        waiting.remove(f)
                # 5. results in order
                while order and order[0].result is not None:
                    f = order.popleft()
                    yield f.inj, f.result
                if exhausted and not order and held is None:
                    break
                if nft is not None and order:
                    lines.forget_before(order[0].sent - 5)
        finally:
            sender.close()
            left = [tuple(k) for f in flying.values() for k in f.inj.fp.keys()]
            if left:
                probes.unwatch_keys(left)
            if nft is not None and flying:
                nft.unwatch(*(f.inj.fp for f in flying.values()))
            # detaching waits for RCU (5-20 ms): do it behind the caller's back
            tracer._detach_later()
    if failure is not None:
        raise failure


def _launch(tracer, batch: list[Injection], sender: injector.Sender, order: deque,
            flying: dict, busy: dict, skip: set[str]) -> None:
    """Filter first (kernel keys, nft marks), then send every injection of the batch."""
    probes = tracer.probes
    if not probes.ipv6 and any(inj.fp.family == 6 for inj in batch):
        probes.ipv6 = True                       # IPv6 netfilter hooks too, from now on
        tracer._attach(probes, skip)
    probes.watch_many([(inj.fp.keys(), inj.fp.trace_id) for inj in batch])
    if tracer.nft is not None:
        tracer.nft.watch(*(inj.fp for inj in batch))
    lost = tracer.events_lost
    for inj in batch:
        now = time.monotonic()
        f = _Flight(inj, Assembly(tracer.names, inj.request), now, lost, last_event=now)
        for k in inj.fp.keys():
            busy[tuple(k)] = inj.fp.trace_id
        flying[inj.fp.trace_id] = f
        order.append(f)
        try:
            if inj.layer == "l2":
                if not inj.ifname:
                    raise NettraceError(f"{inj.request.src} has no interface for a layer-2 frame")
                sender.send_l2(inj.ns, inj.ifname, inj.pkt)
            else:
                sender.send_l3(inj.ns, inj.pkt)
        except (injector.NoRoute, injector.TooBig) as exc:   # the sender's own stack refused it
            inj.request.refused = str(exc)


def _traced(tracer, f: _Flight, now: float, timeout: float) -> bool:
    """Whether the flight's packet (and its answer) is complete, or out of time."""
    fp = f.inj.fp
    if f.inj.request.refused or now - f.sent >= timeout:
        if f.dirty or f.path is None:
            f.path = f.asm.path()
        return True
    if now - f.last_event < QUIET_S:
        return False                  # events still coming: assembling now would be wasted
    if f.dirty:
        f.path = f.asm.path()
        f.dirty = False
        if complete(f.path, fp):
            f.done_at = f.done_at or f.last_event
    if f.done_at is not None:
        return now - f.last_event >= QUIET_S and now - f.done_at >= QUIET_S
    return (f.path.verdict.kind == DELIVERED and fp.proto == "udp"
            and now - f.last_event >= UDP_REPLY_GRACE_S)


def _all_lines(nft, path: Path, found: list, ip_ids: set[int]) -> bool:
    """Whether `nft monitor trace` has printed a verdict for every netfilter hop of the
    path (and of its answer) at a hook where the namespace has base chains."""
    hops = path.hops + (path.reply.hops if path.reply else [])
    needed = {(h.netns, h.hook) for h in hops if h.point.is_netfilter and h.netns in
              nft.namespaces and h.hook in nft.base_hooks(h.netns, h.family or "ipv4")}
    if not needed:
        return True
    return needed <= rules_by_hook(found, ip_ids).keys()


def _finished(tracer, f: _Flight, lines: _Lines, now: float) -> bool:
    """Final path once the nft lines it needs came (or waiting for them is over)."""
    found: list = []
    if tracer.nft is not None and not f.inj.request.refused:
        ip_ids = _ip_ids(f)
        found = lines.lines_for(ip_ids)
        if not _all_lines(tracer.nft, f.path, found, ip_ids) and now - f.traced_at < NFT_WAIT_S:
            return False
    f.result = f.asm.path(found) if found or f.dirty else f.path
    record = TraceRecord(f.inj.request, f.asm.events, found,
                         tracer.events_lost - f.lost_before, tracer.missing_probes())
    f.result.events_lost = record.events_lost
    f.result.probes_missing = list(record.probes_missing)
    if tracer.records is not None:           # what an offline reader gets: the same path
        tracer.records.append(record)
    return True


def _ip_ids(f: _Flight) -> set[int]:
    """What nft trace shows of the flight's packet and of its answers (IPv4 id, IPv6 flow
    label), to find their lines."""
    ids = {identity(p) for _, p in f.asm.sides[REPLY] if identity(p) is not None}
    fp = f.inj.fp
    own = fp.ip_id if fp.family == 4 else fp.flow_label
    if own is not None:
        ids.add(own)
    return ids


__all__ = ["Injection", "run", "complete", "WINDOW"]
