"""The tracing API every front end uses (CLI, TUI, capture replay, Docker tracing).

    with Tracer(lab, progress=print) as tr:       # compile (~0.7 s), check attachment
        paths = tr.path(InjectRequest("c1", "c2"))  # list[Path], each with .reply
        path = tr.trace_packet("c1", scapy_pkt, layer="l3")
        for path in tr.live(expr="icmp", stop=lambda: False): ...
        tr.probe_status(); tr.events_lost

The programs stay loaded while the Tracer is open; their links (tracepoints, netfilter
hooks) are attached only while a packet is traced or live() runs, so an open Tracer
costs other traffic nothing between paths. Everything is detached on exit, also on
exceptions and Ctrl-C. One call at a time per Tracer (a lock serialises them; live()
holds it until its iterator ends): the ring buffer is shared.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from nettrace.errors import NettraceError
from nettrace.inject import frames, injector
from nettrace.inject.fingerprint import Fingerprint, FingerprintFactory
from nettrace.topology import netns
from nettrace.topology.model import Lab, Role
from nettrace.trace import expr as expr_mod
from nettrace.trace import live as live_mod
from nettrace.trace import pipeline, symbols
from nettrace.inject.request import InjectRequest
from nettrace.trace.endpoints import resolve_request, resolve_source
from nettrace.trace.assemble import (Request, TraceRecord, assemble_observed)
from nettrace.trace.events import ETH_P_IP, ETH_P_IPV6, Event, parse_headers
from nettrace.trace.events import marker as find_marker
from nettrace.trace.model import Path
from nettrace.trace.names import Names
from nettrace.trace.nftrace import NfTrace
from nettrace.trace.pipeline import Injection
from nettrace.trace.probes import RINGBUF_PAGES, Probes, ProbeStatus, check_environment

Progress = Callable[[str], None]
#: devices whose receive no tracepoint sees (macvlan_handle_frame returns RX_HANDLER_ANOTHER):
#: they get tcx probes. Elsewhere the tracepoints see every crossing, and each tcx link
#: costs ~15 ms to attach (RCU under RTNL) plus two program runs per packet.
TC_KINDS = {"macvlan", "macvtap", "ipvlan"}
#: Probes attached only while a packet is traced (attach ~3 ms, detach ~5-20 ms), so a
#: long-lived tracer costs the traffic nothing between paths. tcx links stay: they take
#: ~15 ms each to attach, and exist only on the few devices in TC_KINDS.
ON_DEMAND = ("tp", "nf")
LIVE_SHOW_BUDGET_S = 0.1  # live: show packets this long, then read the ring buffer again
LIVE_RING_SHED = 0.5      # live: ring buffer fill beyond which nettrace reads all and drops
LIVE_FLUSH_S = 3.0        # live, once stopped: show what waits in the ring buffer this long


def open_ahead() -> None:
    """Start, in threads, what opening a Tracer waits for: bcc's compile of the usual build
    (probes.compile_ahead), scapy's import, the kernel symbol tables. One-shot commands
    call it before they resolve their lab, so loading a lab file or discovering a Docker
    engine (mostly waiting on its API and on netlink) overlaps them."""
    from nettrace.trace.probes import compile_ahead
    compile_ahead()
    if os.geteuid() == 0:
        threading.Thread(target=_warm, name="nettrace-warm").start()


def _warm() -> None:
    try:
        import scapy.layers.inet  # noqa: F401
        symbols.warm()
    except Exception:                  # warming only: Tracer.open does it again, and reports
        pass


class Tracer:
    """Probes attached to one lab; see the module docstring."""

    def __init__(self, lab: Lab, progress: Progress | None = None, *, nftrace: bool = True,
                 watch: bool = True, tc_all: bool = False,
                 ring_pages: int = RINGBUF_PAGES) -> None:
        """`watch=False`: only live() will be used (skips compiling the fingerprint probes).
        `tc_all`: tcx probes on every lab interface, not only where tracepoints are blind.
        `ring_pages`: ring buffer size in 4 KiB pages (a power of two)."""
        self.lab = lab
        self.say = progress or (lambda msg: None)
        self.use_nftrace = nftrace and watch
        self.watch = watch
        self.tc_all = tc_all
        self.ring_pages = ring_pages
        self.probes = Probes(tc=self._needs_tc(), ring_pages=ring_pages)
        self.live_stats: live_mod.LiveStats | None = None   # of the last live() stream
        self.live_lost = 0                       # kernel-counted loss of the last live()
        self.names = Names()
        self.nft: NfTrace | None = None
        self.fingerprints = FingerprintFactory()
        self._lock = threading.RLock()
        self._live_probes: Probes | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nettrace-detach")
        self._detaching: Future | None = None
        self.timings: dict[str, float] = {}
        #: when lists, every traced injection's TraceRecord, and the events of every packet
        #: live() yields, are appended (trace bundles)
        self.records: list[TraceRecord] | None = None
        self.observed: list[list[Event]] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "Tracer":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        check_environment(bcc=False)      # root: a clear error before anything starts; the
                                          # compile thread imports (and checks) bcc
        t0 = time.monotonic()
        failure: list[BaseException] = []

        def compile_probes() -> None:     # bcc compiles in C with the GIL released
            try:
                self.probes.compile()
            except BaseException as exc:  # re-raised below, in the caller's thread
                failure.append(exc)

        worker = threading.Thread(target=compile_probes, name="nettrace-bcc-compile")
        if self.watch:
            self.say("compiling probes (bcc)")
            worker.start()
        try:
            self.names = Names.from_lab(self.lab)
            if self.use_nftrace:
                self.nft = NfTrace(self._firewall_namespaces())
                self.nft.start()
            if self.watch:                # warm what the first path needs while bcc compiles
                import scapy.layers.inet  # noqa: F401
                symbols.warm()
        finally:
            if worker.is_alive():         # never tear down under a running compile
                worker.join()
        if failure:
            raise failure[0]
        if self.watch:
            self.timings["compile"] = self.probes.compile_seconds
            self.say("attaching probes")
            t1 = time.monotonic()
            self._attach(self.probes)          # once now: fail early, and for probe_status()
            self.timings["attach"] = time.monotonic() - t1
            self.probes.detach(ON_DEMAND)
        self.timings["open"] = time.monotonic() - t0

    def _attach(self, probes: Probes, skip: set[str] = frozenset(), **live_filter: int) -> None:
        """Filter first (namespaces, expression), then attach: no event escapes the filter.

        `skip`: namespaces whose netfilter hooks cannot be on this packet's way (other
        containers); tracepoints still see a packet that goes there by mistake."""
        probes.configure(live=probes.live, netns_filter=True, **live_filter)
        probes.watch_namespaces(self.names.places)
        probes.attach_tracepoints()
        for place in self.names.places.values():
            if place.netns not in skip:
                probes.attach_netns(place.netns)
        probes.attach_interfaces(
            (self.names.places[inode].netns, ifindex)
            for (inode, ifindex), dev in self.names.devices.items()
            if dev.role and dev.role != Role.LOOPBACK.value and (self.tc_all or dev.kind in TC_KINDS))

    def _needs_tc(self) -> bool:
        """Whether any lab device needs tcx probes (decides the build: less C to compile)."""
        return self.tc_all or any(i.kind in TC_KINDS for i in self.lab.interfaces)

    def _bystanders(self, src_ns: str, dst_ns: str | None) -> set[str]:
        """Containers that are neither source nor destination (none are when the destination
        is not a container: a published port on a host may lead to any of them)."""
        hosts = {h.netns for h in self.lab.hosts.values()}
        if dst_ns is None or dst_ns in hosts:     # a host may forward (DNAT) to any container
            return set()
        return {sb.netns for sb in self.lab.sandboxes.values()
                if sb.netns not in (src_ns, dst_ns) and sb.netns not in hosts}

    def _firewall_namespaces(self) -> list[str]:
        return [h.netns for h in self.lab.hosts.values() if netns.exists(h.netns)]

    def _settle(self) -> None:
        """Wait for a background detach to finish (links are not shared between threads)."""
        if self._detaching is not None:
            self._detaching.result()
            self._detaching = None

    def close(self) -> None:
        try:
            self._settle()
            self._pool.shutdown()
            if self.nft is not None:
                self.nft.close()
                self.nft = None
        finally:
            self.probes.close()

    # -- status ---------------------------------------------------------------------------
    def probe_status(self) -> list[ProbeStatus]:
        live = self._live_probes
        out = list((self.probes if self.watch or live is None else live).status.values())
        names = {s.name for s in out}
        if "nf:first/last" not in names:
            out.append(ProbeStatus("nf:first/last", False, "attached per lab namespace: name a lab"))
        if "tc:ingress/egress" not in names:
            out.append(ProbeStatus(
                "tc:ingress/egress", False,
                "attached only to devices whose receive tracepoints miss (macvlan/ipvlan "
                "children); this lab has none (Tracer(tc_all=True) attaches everywhere)"))
        if self.use_nftrace:
            err = self.nft.error if self.nft else "not started"
            out.append(ProbeStatus("nft:trace", err is None, err))
        else:
            out.append(ProbeStatus("nft:trace", False, "disabled"))
        return out

    @property
    def events_lost(self) -> int:
        """Ring-buffer outputs that failed, counted in the kernel (fingerprint and live probes)."""
        total = self.probes.events_lost if self.probes.bpf is not None else 0
        live = self._live_probes
        if live is not None and live.bpf is not None:
            total += live.events_lost
        return total

    def missing_probes(self) -> list[str]:
        """Always-on probes that failed to attach (not optional ones, not ones this lab
        has no place for)."""
        failed = [s.name for s in self.probes.status.values()
                  if not s.live and not s.name.startswith("optional:")]
        if self.nft is not None and self.nft.error:
            failed.append("nft:trace")
        return failed

    # -- tracing injected packets -----------------------------------------------------------
    def path(self, request: InjectRequest, timeout: float = 2.0) -> list[Path]:
        """Inject `request.count` packets from SRC to DST and trace each, with its reply
        (the request is checked by `resolve_request`; see InjectRequest for its fields)."""
        if not self.watch:
            raise NettraceError("this Tracer was opened with watch=False: it only traces live")
        r = resolve_request(self.lab, request)
        source, target, port = r.source, r.target, r.port
        paths = []
        for n in range(1, request.count + 1):
            fp = self.fingerprints.new(r.proto, source.ip, target.ip, port, seq=n)
            if fp.proto in ("arp", "nd"):
                pkt = frames.build_l2(fp, injector.interface_mac(source.netns, source.ifname))
            elif r.layer == "l2":
                gateway = injector.neighbour_mac(source.netns, self._next_hop(source, target.ip),
                                                 source.name)
                pkt = frames.build_l2(fp, injector.interface_mac(source.netns, source.ifname),
                                      gateway, size=request.size, df=request.df)
            else:
                pkt = frames.build_l3(fp, size=request.size, df=request.df)
            inj = Injection(Request(self.lab.name, request.src, request.dst, fp, target.netns),
                            source.netns, source.ifname, pkt, r.layer)
            paths.append(self._trace(inj, timeout))
        return paths

    def _next_hop(self, source, ip: str) -> str:
        """The destination itself when on the sender's subnet, else its network's gateway."""
        sb = self.lab.sandboxes.get(source.name)
        for ep in sb.endpoints if sb else []:
            v6 = ep.ipv6 is not None and ep.ipv6 == source.ip
            if ep.ipv4 == source.ip or v6:
                net = ipaddress.ip_network(f"{source.ip}/{ep.prefixlen6 if v6 else ep.prefixlen}",
                                           strict=False)
                if ipaddress.ip_address(ip) in net:
                    return ip
                network = self.lab.network(ep.network, sb.host)
                gateway = network.gateway_v6 if v6 else network.gateway
                if gateway:
                    return gateway
        return ip

    def trace_packet(self, src: str, pkt, layer: str = "l3", timeout: float = 2.0) -> Path:
        """Send one packet from SRC and trace it: a scapy packet, or raw bytes (an IPv4
        packet for layer "l3", an Ethernet frame for "l2")."""
        inj = self.prepare(src, pkt, layer)
        return self._trace(inj, timeout)

    def prepare(self, src: str, pkt, layer: str = "l3", tag=None) -> Injection:
        """One packet to send from SRC and trace, for trace_many(): a scapy packet, or raw
        bytes (an IPv4 or IPv6 packet for layer "l3", an Ethernet frame for "l2"), with a
        fingerprint of its own. Raises NettraceError for what cannot be traced."""
        if layer not in ("l3", "l2"):
            raise NettraceError(f"layer must be 'l3' or 'l2' (not {layer!r})")
        source = resolve_source(self.lab, src)
        data = bytes(pkt)                      # a scapy packet builds itself; bytes stay
        fp = fingerprint_of(data, layer, self.fingerprints.trace_id())
        request = Request(self.lab.name, src, fp.dst or "?", fp, self._netns_of_ip(fp.dst))
        return Injection(request, source.netns, source.ifname,
                         with_identity(data, layer, fp), layer, tag)

    def trace_many(self, injections: Iterable[Injection], timeout: float = 2.0,
                   window: int | None = None) -> Iterator[tuple[Injection, Path]]:
        """Send and trace many injections (from prepare()) with up to `window` in flight at
        once, each under its own fingerprint; yield (injection, path) in their order (see
        nettrace.trace.pipeline). Holds the tracer until the iterator ends or is closed."""
        if not self.watch:
            raise NettraceError("this Tracer was opened with watch=False: it only traces live")
        return pipeline.run(self, injections, timeout=timeout,
                            window=window or pipeline.WINDOW)

    def _trace(self, inj: Injection, timeout: float) -> Path:
        """One injection, alone: netfilter probes only where it can pass."""
        skip = self._bystanders(inj.ns, inj.request.dst_netns)
        ((_, path),) = pipeline.run(self, [inj], timeout=timeout, window=1, skip=skip)
        return path

    def _detach_later(self) -> None:
        """Detach the on-demand probes in the background (detaching waits for RCU)."""
        self._detaching = self._pool.submit(self.probes.detach, ON_DEMAND)

    # -- live -----------------------------------------------------------------------------
    def live(self, expr: str | None = None, stop: Callable[[], bool] = lambda: False,
             *, hold: float = live_mod.HOLD_NS / 1e9,
             max_events: int = live_mod.MAX_EVENTS) -> Iterator[Path]:
        """Paths of observed traffic matching `expr` (see nettrace.trace.expr), until stop().

        Each packet is shown `hold` seconds after its first event; at most `max_events`
        events wait to be shown, and packets beyond that are counted, not kept (see
        nettrace.trace.live; `live_stats` has the counters). When stop() turns true the
        packets still waiting are shown before the iterator ends, and so are those whose
        events are still in the ring buffer, for LIVE_FLUSH_S (the rest is counted). Live
        tracing uses its own probe build (NT_LIVE), compiled and attached here and detached
        when the iterator ends (or is closed).
        """
        flt = expr_mod.parse(expr, self._ip_of)
        stream = live_mod.PacketStream(hold_ns=int(hold * 1e9), max_events=max_events)
        self.live_stats = stream.stats
        with self._lock:
            self._settle()
            probes = Probes(live=True, tc=self._needs_tc(), ring_pages=self.ring_pages)
            try:
                self.say("compiling live probes (bcc)")
                probes.compile()
                self._attach(probes, **flt.kernel_args())
                self._live_probes = probes
                while not stop():
                    # a burst waits in the ring buffer while packets are shown (a full stream
                    # shows its oldest early); past half full read it all: what does not fit
                    # in the stream is dropped there, and counted
                    shed = probes.ring_fill() >= LIVE_RING_SHED
                    room = None if shed else stream.room
                    early = room == 0
                    if not early:
                        probes.poll(stream.add, limit=room,
                                    timeout_ms=0 if stream.due(stream.frontier_ns) else 20)
                    # the kernel's clock (CLOCK_MONOTONIC) once all is read, else the
                    # newest event read
                    horizon = time.monotonic_ns() if probes.ring_fill() == 0 \
                        else stream.frontier_ns
                    budget = time.monotonic() + LIVE_SHOW_BUDGET_S
                    while time.monotonic() < budget:
                        evs = stream.pop_due(horizon)
                        if evs is None and early and stream.room < stream.stats.max_events // 4:
                            evs = stream.pop_oldest()
                        if evs is None:
                            break
                        yield self._live_path(evs, probes)
                # stopped: nothing new comes; what waits (held, and in the ring buffer) is
                # shown, for LIVE_FLUSH_S at most; then the rest is read and counted
                probes.detach(ON_DEMAND)
                deadline = time.monotonic() + LIVE_FLUSH_S
                while probes.ring_fill() > 0 and time.monotonic() < deadline:
                    if stream.room == 0:
                        yield self._live_path(stream.pop_oldest(), probes)
                    else:
                        probes.poll(stream.add, timeout_ms=0, limit=stream.room)
                while probes.poll(stream.add, timeout_ms=0):
                    pass
                for evs in stream.drain():
                    yield self._live_path(evs, probes)
            finally:
                self._live_probes = None
                self.live_lost = probes.events_lost if probes.bpf is not None else 0
                probes.close()

    def _live_path(self, evs: list[Event], probes: Probes) -> Path:
        if self.observed is not None:
            self.observed.append(evs)
        return assemble_observed(evs, self.names, self.lab.name, probes.events_lost)

    def _netns_of_ip(self, ip: str | None) -> str | None:
        """The namespace of the container that has `ip` (an ARP request or IPv6 neighbour
        solicitation is delivered there)."""
        for sb in self.lab.sandboxes.values():
            if ip and any(ip in (ep.ipv4, ep.ipv6) for ep in sb.endpoints):
                return sb.netns
        return None

    def _ip_of(self, name: str) -> str | None:
        sb = self.lab.sandboxes.get(name)
        return sb.ip() if sb else None


def fingerprint_of(data: bytes, layer: str, trace_id: int) -> Fingerprint:
    """The fingerprint of a packet given by the caller (replays): an IP packet (layer
    "l3") or an Ethernet frame ("l2"), read with the probes' own header parser. An IPv4 id
    (IPv6 flow label) of 0 gets one derived from `trace_id`, which the sender must put on
    the packet it sends (`with_identity`). A VXLAN frame is known by its outer addresses
    and id, and by its inner packet's protocol."""
    l2 = layer == "l2"
    off = 14 if l2 else 0
    ethertype = 0 if l2 else (ETH_P_IPV6 if data and data[0] >> 4 == 6 else ETH_P_IP)
    pkt = parse_headers(data, l2, ethertype)
    ip = pkt.outer or pkt
    if pkt.proto == "arp" and pkt.outer is None:
        return Fingerprint(trace_id, "arp", pkt.src, pkt.dst)
    v6 = ip.flow_label is not None
    if ip.src is None or not (v6 or ip.ip_id is not None):
        raise NettraceError("only IPv4, IPv6 and ARP packets can be traced")
    l4 = off + (40 if v6 else (data[off] & 0xF) * 4)
    if pkt.outer is not None:             # the inner packet's (after UDP, VXLAN, Ethernet)
        inner = l4 + 8 + 8 + 14
        l4 = inner + (40 if pkt.flow_label is not None else (data[inner] & 0xF) * 4)
    icmp_type = data[l4] if pkt.proto in ("icmp", "ipv6-icmp") and len(data) > l4 else None
    if v6 and icmp_type == 135 and len(data) >= l4 + 24:
        return Fingerprint(trace_id, "nd", ip.src, socket.inet_ntop(socket.AF_INET6,
                                                                     data[l4 + 8:l4 + 24]),
                           family=6)
    marker = find_marker(data) if b"nettrace-" in data else None
    if v6:
        common = dict(trace_id=trace_id, src=ip.src, dst=ip.dst, marker=marker, family=6,
                      flow_label=ip.flow_label or (trace_id * 7919) % 0xFFFFE + 1)
    else:
        common = dict(trace_id=trace_id, src=ip.src, dst=ip.dst, marker=marker,
                      ip_id=ip.ip_id or (trace_id * 7919) % 0xFFFE + 1)  # never 0: the identity
    if icmp_type is not None:
        echo = icmp_type in (0, 8, 128, 129)
        return Fingerprint(proto="icmp", icmp_id=pkt.sport if echo else None,
                           icmp_seq=pkt.dport if echo else None, icmp_type=icmp_type, **common)
    if pkt.proto in ("tcp", "udp"):
        return Fingerprint(proto=pkt.proto, sport=pkt.sport, dport=pkt.dport, **common)
    return Fingerprint(proto=str(data[off + (6 if v6 else 9)]), **common)


def with_identity(data: bytes, layer: str, fp: Fingerprint) -> bytes:
    """The packet with the fingerprint's IPv4 id (and a header checksum that fits) or IPv6
    flow label; the caller's bytes are not changed. Transport checksums do not cover them."""
    off = 14 if layer == "l2" else 0
    if fp.family == 4 and fp.ip_id is not None and \
            struct.unpack_from("!H", data, off + 4)[0] != fp.ip_id:
        out = bytearray(data)
        struct.pack_into("!HH", out, off + 4, fp.ip_id, struct.unpack_from("!H", data, off + 6)[0])
        ihl = (out[off] & 0xF) * 4
        out[off + 10:off + 12] = b"\0\0"
        total = sum(struct.unpack_from(f"!{ihl // 2}H", out, off))
        total = (total & 0xFFFF) + (total >> 16)
        struct.pack_into("!H", out, off + 10, ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF)
        return bytes(out)
    if fp.family == 6 and fp.flow_label is not None and \
            int.from_bytes(data[off + 1:off + 4], "big") & 0xFFFFF != fp.flow_label:
        out = bytearray(data)
        word = (int.from_bytes(out[off:off + 4], "big") & ~0xFFFFF) | fp.flow_label
        out[off:off + 4] = word.to_bytes(4, "big")
        return bytes(out)
    return data


__all__ = ["Tracer", "ProbeStatus", "fingerprint_of", "with_identity"]
