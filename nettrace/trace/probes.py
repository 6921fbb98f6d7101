"""Compile, load and attach the hop probes (bpf/hops.c) with bcc, and detach them.

Always-on set: one raw-tracepoint program on seven skb tracepoints (link cookie = point),
netfilter programs first and last on the 5 IPv4 and 5 IPv6 hooks of every watched
namespace, and one tcx program on ingress and egress of every lab interface. Optional
probes (kprobes, fentry) are detected and reported, never required. Every attachment
is a link fd we own; `close()` detaches all of them.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

from nettrace.errors import EnvironmentProblem, NettraceError
from nettrace.inject.fingerprint import IPV6_KINDS, K_ARP, K_ICMP
from nettrace.topology import netns
from nettrace.trace import links
from nettrace.trace.bcc_headers import BPF_DIR, configure_bcc
from nettrace.trace.events import TRACEPOINTS, Event, Point
from nettrace.trace.ringbuf import RingReader

RINGBUF_PAGES = 16384                # 64 MiB: ~350k events, 1 s of backlog when a loaded
                                     # machine stalls the reader
PAGE_SIZE = 4096
NF_PRIO_TRIES = 16                   # tracers that can share a hook edge
PARALLEL = 32                        # threads attaching/detaching links (they wait on RCU)
ALL_PROTOS = 0xFFFFFFFF


#: one bcc compile at a time in a process: two at once (a build compiled ahead, and the
#: other build a lab turned out to need) gave programs that never emitted an event
_COMPILING = threading.Lock()
#: builds compiled ahead, by (live, tc, ring pages): (thread, its Probes, failures)
_AHEAD: dict[tuple[bool, bool, int], tuple[threading.Thread, "Probes", list]] = {}


def compile_ahead(*, live: bool = False, tc: bool = False,
                  ring_pages: int = RINGBUF_PAGES) -> None:
    """Start compiling a build of the probes now, in a thread, for a `Probes` of the same
    build compiled later in this process (which then waits for it instead). One-shot
    commands call it before they resolve the lab, so loading a lab, or discovering a
    Docker engine, overlaps bcc's compile. Not root: nothing (the real compile says why)."""
    key = (live, tc, ring_pages)
    if os.geteuid() != 0 or key in _AHEAD:
        return
    built, failed = Probes(live=live, tc=tc, ring_pages=ring_pages), []

    def run() -> None:
        try:
            built._compile_now()
        except BaseException as exc:      # compiled again by the Probes that needs it
            failed.append(exc)

    thread = threading.Thread(target=run, name="nettrace-bcc-ahead")
    _AHEAD[key] = (thread, built, failed)
    thread.start()


@dataclass
class ProbeStatus:
    """Whether one probe (or probe family) is attached, and why not."""

    name: str
    live: bool
    reason: str | None = None


@dataclass
class Attachment:
    """Where one probe family is attached, for status and cleanup."""

    name: str
    fds: list[int]


def check_environment(*, bcc: bool = True) -> None:
    """Clear errors for what eBPF tracing needs: root, and (`bcc`) an importable bcc.
    Missing BTF and headers are reported by the header step (bcc_headers)."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("tracing needs root (eBPF programs and namespaces); run with sudo")
    if not bcc:
        return
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise EnvironmentProblem("bcc is not importable (apt-get install python3-bpfcc; "
                                 "make setup links it into the venv)") from None


class Probes:
    """The loaded program set. Use `compile()` (slow, ~1 s), then `attach_*`."""

    def __init__(self, *, live: bool = False, tc: bool = True,
                 ring_pages: int = RINGBUF_PAGES) -> None:
        if ring_pages < 1 or ring_pages & (ring_pages - 1):
            raise NettraceError(f"ring buffer pages must be a power of two (not {ring_pages})")
        self.live = live                         # build for the live expression, not fingerprints
        self.ipv6 = False                        # attach IPv6 netfilter hooks too (IPv6 paths)
        self.tc = tc                             # build the tcx program too
        self.ring_pages = ring_pages
        self.bpf = None
        self.prog_fds: dict[str, int] = {}
        self.status: dict[str, ProbeStatus] = {}
        self._links: dict[tuple, int] = {}       # (kind, ns, ...) -> link fd
        self._lock = threading.Lock()
        self._ring: RingReader | None = None
        self._conf: dict = dict(live=live, netns_filter=True, proto=0, port=0, host=0, src=0, dst=0)
        self._watched: dict[tuple[int, int, int], int] = {}
        self._hot: dict[int, int] = {}           # 16-bit value -> watched keys holding it
        self.compile_seconds = 0.0

    # -- building -----------------------------------------------------------------------
    def compile(self) -> None:
        ahead = _AHEAD.pop((self.live, self.tc, self.ring_pages), None)
        if ahead is not None:             # compiled while the lab was being resolved
            thread, built, failed = ahead
            thread.join()
            if not failed:
                for attr in ("bpf", "prog_fds", "status", "_ring", "compile_seconds"):
                    setattr(self, attr, getattr(built, attr))
                built.bpf, built._ring = None, None       # closed by their new owner only
                return                    # (a failure is compiled again, and reported, here)
        self._compile_now()

    def _compile_now(self) -> None:
        check_environment()
        configure_bcc()
        from bcc import BPF
        t0 = time.monotonic()
        cflags = [f"-I{BPF_DIR}", f"-DNT_RINGBUF_PAGES={self.ring_pages}", "-Wno-unused-function",
                  "-Wno-visibility", f"-DNT_LIVE={int(self.live)}", f"-DNT_TC={int(self.tc)}"]
        with _COMPILING:
            try:
                self.bpf = BPF(src_file=os.path.join(BPF_DIR, "hops.c").encode(), cflags=cflags)
            except Exception as exc:               # bcc raises bare Exception
                raise EnvironmentProblem(f"bcc could not compile the probes: {exc}") from None
            b = self.bpf
            self.prog_fds = {
                "tp_skb": b.load_func(b"tp_skb", BPF.RAW_TRACEPOINT).fd,
                "nf_hop": b.load_func(b"nf_hop", 32, attach_type=links.BPF_NETFILTER).fd,
            }
            if self.tc:
                self.prog_fds["tc_hop"] = b.load_func(b"tc_hop", BPF.SCHED_CLS).fd
        self.compile_seconds = time.monotonic() - t0
        self._ring = RingReader(b[b"events"], self.ring_pages * PAGE_SIZE)
        self._check_optional()

    def prog_ids(self) -> list[int]:
        """Kernel ids of our programs (to check that none survive us)."""
        from bcc import libbcc
        ids = []
        for fd in self.prog_fds.values():
            info = ct.create_string_buffer(256)
            size = ct.c_uint32(256)
            if libbcc.lib.bpf_obj_get_info(fd, info, ct.byref(size)) == 0:
                ids.append(int.from_bytes(info.raw[4:8], "little"))    # bpf_prog_info.id
        return ids

    def attach_tracepoints(self) -> None:
        for tp, point in TRACEPOINTS.items():
            name = f"tp:{tp}"
            try:
                self._links[("tp", tp)] = links.raw_tracepoint(self.prog_fds["tp_skb"], tp, point)
                self.status[name] = ProbeStatus(name, True)
            except OSError as exc:
                self.status[name] = ProbeStatus(name, False, str(exc))
        if not any(s.live for n, s in self.status.items() if n.startswith("tp:")):
            raise EnvironmentProblem("no skb tracepoint could be attached: "
                                     + self.status["tp:kfree_skb"].reason)

    def attach_netns(self, ns: str | None) -> None:
        """Netfilter first/last on every IPv4 hook of namespace `ns` (and IPv6 in a live
        build: fingerprints are IPv4 or ARP, so their packets never run the IPv6 hooks).

        A priority holds one program per hook: when another tracer (the TUI, a second
        `nettrace path`) already sits at the edge, take the next free priority inward.
        """
        errors = []
        with netns.entered(ns):             # once per namespace: setns costs ~1 ms
            self._attach_nf_here(ns, errors)
        name = "nf:first/last"
        if errors:
            self.status[name] = ProbeStatus(name, False, errors[0])
        elif name not in self.status:
            self.status[name] = ProbeStatus(name, True)

    def _attach_nf_here(self, ns: str | None, errors: list[str]) -> None:
        both = self.live or self.ipv6
        for pf in (links.PF_INET, links.PF_INET6) if both else (links.PF_INET,):
            for hook in range(5):
                # one program at both ends of the hook (it tells first from last itself)
                for edge, prio, step in (("first", links.NF_PRIO_FIRST, 1),
                                         ("last", links.NF_PRIO_LAST, -1)):
                    key = ("nf", ns, pf, hook, edge)
                    if key in self._links:
                        continue
                    for attempt in range(NF_PRIO_TRIES):
                        try:
                            self._links[key] = links.netfilter(self.prog_fds["nf_hop"], None, pf,
                                                               hook, prio + step * attempt)
                            break
                        except OSError as exc:
                            if exc.errno != errno.EBUSY or attempt == NF_PRIO_TRIES - 1:
                                errors.append(f"{exc} in {ns or 'root namespace'}")
                                break

    def attach_interfaces(self, targets: Iterable[tuple[str | None, int]]) -> None:
        """tcx ingress and egress on interfaces (bridge ports, macvlan, ARP), as (netns, ifindex).

        Each tcx attach waits for an RCU grace period (~15 ms): attach in parallel threads,
        whose waits overlap."""
        targets = list(targets)
        if not targets:
            return
        if "tc_hop" not in self.prog_fds:
            raise NettraceError("internal: tcx probes requested from a build without them")
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(targets))) as pool:
            list(pool.map(lambda t: self._attach_tc(*t), targets))

    def _attach_tc(self, ns: str | None, ifindex: int) -> None:
        for ingress in (True, False):
            key = ("tc", ns, ifindex, ingress)
            if key in self._links:
                continue
            try:
                self._links[key] = links.tcx(self.prog_fds["tc_hop"], ns, ifindex, ingress)
                self.status.setdefault("tc:ingress/egress", ProbeStatus("tc:ingress/egress", True))
            except OSError as exc:
                self.status["tc:ingress/egress"] = ProbeStatus("tc:ingress/egress", False, str(exc))

    def _check_optional(self) -> None:
        from nettrace.trace.bcc_headers import CACHE_DIR, btf_hash
        from nettrace.trace.optional import detect
        for fn, why in detect(os.path.join(CACHE_DIR, btf_hash())).items():
            name = f"optional:{fn}"
            self.status[name] = ProbeStatus(
                name, False, why or "the kernel allows it, but this version does not attach "
                                    "optional probes: tracepoints and netfilter cover the hop")

    # -- maps -----------------------------------------------------------------------------
    def configure(self, *, live: bool, netns_filter: bool, proto: int = 0, port: int = 0,
                  host: int = 0, src: int = 0, dst: int = 0) -> None:
        """Set the kernel filter: watched fingerprints, or the live expression's fields."""
        self._conf = dict(live=live, netns_filter=netns_filter, proto=proto, port=port, host=host,
                          src=src, dst=dst)
        self._write_conf()

    def _proto_mask(self) -> int:
        """IP protocols (bit n) and ARP (bit 0) a packet must have to be looked at."""
        if self._conf.get("live"):
            proto = self._conf["proto"]
            return ALL_PROTOS if not proto else 1 if proto == 0x0806 else 1 << proto
        mask = 0
        for (kind, proto, _val) in self._watched:
            if kind in IPV6_KINDS or proto >= 32:
                continue                  # IPv6 (ICMPv6 is 58): the `ipv6` flag covers it
            # an IP fingerprint's answer may be an ICMP error: always look at ICMP too
            mask |= 1 if kind == K_ARP else (1 << proto) | (1 << 1)
        return mask

    def _ipv6_watched(self) -> int:
        """1 when a watched fingerprint is IPv6 (or the live expression may match IPv6)."""
        if self._conf.get("live"):
            return 1
        return int(any(kind in IPV6_KINDS for (kind, _p, _v) in self._watched))

    def _write_conf(self) -> None:
        conf = self.bpf[b"nt_conf"]
        c = self._conf
        conf[ct.c_int(0)] = conf.Leaf(c["live"], c["netns_filter"], c["proto"], c["port"],
                                      c["host"], c["src"], c["dst"], self._proto_mask(),
                                      self._ipv6_watched())

    def watch_namespaces(self, inodes: Iterable[int]) -> None:
        nset = self.bpf[b"netns_set"]
        for inode in inodes:
            nset[nset.Key(inode)] = nset.Leaf(1)

    def watch_keys(self, keys: Iterable[tuple[int, int, int]], trace_id: int) -> None:
        """Add (kind, proto, value) fingerprint keys that map to `trace_id`. Any number of
        fingerprints may be watched at once, each under its own trace id."""
        self.watch_many([(list(keys), trace_id)])

    def watch_many(self, fingerprints: Iterable[tuple[list[tuple[int, int, int]], int]]) -> None:
        """watch_keys() for several (keys, trace_id) at once: the pre-filter bitmap and the
        configuration are written once."""
        watch = self.bpf[b"watch"]
        changed: set[int] = set()
        for keys, trace_id in fingerprints:
            for key in keys:
                watch[watch.Key(key[0], key[1], 0, key[2])] = watch.Leaf(trace_id)
                if key not in self._watched:
                    changed |= self._hot_add(key, 1)
                self._watched[key] = trace_id
        self._write_hot(changed)
        self._write_conf()

    def unwatch_keys(self, keys: Iterable[tuple[int, int, int]]) -> None:
        watch = self.bpf[b"watch"]
        changed: set[int] = set()
        for key in keys:
            if self._watched.pop(key, None) is None:
                continue
            changed |= self._hot_add(key, -1)
            try:
                del watch[watch.Key(key[0], key[1], 0, key[2])]
            except KeyError:
                pass
        self._write_conf()                # narrower protocol mask first, then the bitmap
        self._write_hot(changed)

    @staticmethod
    def hot_value(key: tuple[int, int, int]) -> int | None:
        """The 16-bit value of a watched key in the kernel's pre-filter bitmap (`hot` in
        bpf/hops.c): IPv4 id, port, ICMP echo id. ARP keys need none (ARP is rare)."""
        kind, _proto, val = key
        if kind == K_ARP or kind in IPV6_KINDS:
            return None
        return (val >> 16) & 0xFFFF if kind == K_ICMP else val & 0xFFFF

    def _hot_add(self, key: tuple[int, int, int], delta: int) -> set[int]:
        """Count the keys holding each hot value; return the bitmap words to rewrite."""
        v = self.hot_value(key)
        if v is None:
            return set()
        n = self._hot.get(v, 0) + delta
        if n > 0:
            self._hot[v] = n
        else:
            self._hot.pop(v, None)
        return {v >> 6}

    def _write_hot(self, words: set[int]) -> None:
        if not words:
            return
        hot = self.bpf[b"hot"]
        bits: dict[int, int] = dict.fromkeys(words, 0)
        for v in self._hot:
            if v >> 6 in bits:
                bits[v >> 6] |= 1 << (v & 63)
        for word, value in bits.items():
            hot[ct.c_int(word)] = ct.c_uint64(value)

    @property
    def events_lost(self) -> int:
        lost = self.bpf[b"lost"]
        return sum(lost.getvalue(lost.Key(0)))

    # -- events ---------------------------------------------------------------------------
    def poll(self, callback: Callable[[Event], None], timeout_ms: int = 50,
             limit: int | None = None) -> int:
        """Deliver pending events (at most `limit`) to `callback`, waiting up to `timeout_ms`
        for the first."""
        with self._lock:
            return self._ring.poll(lambda raw: callback(Event(raw)), timeout_ms, limit)

    def ring_fill(self) -> float:
        """How full the ring buffer is (0: everything read, 1: the kernel is losing events)."""
        return self._ring.backlog() / (self.ring_pages * PAGE_SIZE)

    # -- teardown -------------------------------------------------------------------------
    def detach(self, kinds: tuple[str, ...] = ("tp", "nf", "tc")) -> None:
        """Close the links of these kinds (programs stay loaded, ready to attach again)."""
        keys = [k for k in self._links if k[0] in kinds]
        fds = [self._links.pop(k) for k in keys]
        if fds:                          # detaching waits for RCU too: overlap the waits
            with ThreadPoolExecutor(max_workers=min(PARALLEL, len(fds))) as pool:
                list(pool.map(links.close, fds))

    def close(self) -> None:
        self.detach()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.bpf is not None:
            try:
                self.bpf.cleanup()
            finally:
                self.bpf = None
        self.prog_fds = {}


__all__ = ["Probes", "ProbeStatus", "check_environment", "NettraceError", "Point"]
