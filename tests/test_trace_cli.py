"""`nettrace trace`, `nettrace probes` and `nettrace demo` as a user runs them, and the live
stream's accounting: every watched packet is shown or counted, memory is bounded.

The first tests are pure (nettrace.trace.live, no root). The others run the real CLI on
real labs; the flood test takes `sent` from the kernel's own counters in the sender's
namespace (ICMP OutType8, and the interface's tx packets), never from nettrace.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import re
import signal
import subprocess
import time
import tracemalloc

import pytest

from conftest import NETTRACE, needs_root, our_namespaces, run_cli
from nettrace.trace import live
from nettrace.trace.events import Event, Point

MS = 1_000_000


class _Raw(ct.Structure):
    """struct nt_event (bpf/event.h) as bcc lays it out: a record as the ring buffer gives it."""

    _fields_ = [("ts_ns", ct.c_uint64), ("skb", ct.c_uint64), ("location", ct.c_uint64),
                ("netns", ct.c_uint32), ("ifindex", ct.c_uint32), ("in_ifindex", ct.c_uint32),
                ("out_ifindex", ct.c_uint32), ("trace_id", ct.c_uint32), ("reason", ct.c_uint32),
                ("len", ct.c_uint32), ("ethertype", ct.c_uint16), ("point", ct.c_uint8),
                ("hook", ct.c_uint8), ("pf", ct.c_uint8), ("l2", ct.c_uint8),
                ("hdr_len", ct.c_uint16), ("hdr", ct.c_uint8 * 128)]


def _ipv4_icmp(ip_id: int) -> bytes:
    ip = bytes([0x45, 0, 0, 84]) + ip_id.to_bytes(2, "big") + bytes([0x40, 0, 64, 1, 0, 0]) + \
        bytes([172, 17, 0, 2, 172, 17, 0, 3])
    return ip + bytes([8, 0, 0, 0, 0, 7]) + ip_id.to_bytes(2, "big")


def _event(ts_ns: int, ip_id: int, point: Point = Point.DEV_QUEUE) -> Event:
    raw = _Raw(ts_ns=ts_ns, skb=0xFFFF0000 + ip_id, netns=1, ifindex=2, ethertype=0x0800,
               point=int(point), pf=2, l2=0)
    hdr = _ipv4_icmp(ip_id)
    raw.hdr_len = len(hdr)
    ct.memmove(raw.hdr, hdr, len(hdr))
    return Event(_Raw.from_buffer_copy(raw))     # a private copy, as ringbuf.py makes


# -- the stream, pure -------------------------------------------------------------------------

def test_stream_releases_each_packet_on_its_own_time_bound_under_continuous_load():
    """The old rule (release after 50 ms of quiet) starved under load: here a packet is
    released once 50 ms passed since ITS first event, however busy the stream is."""
    s = live.PacketStream(hold_ns=50 * MS)
    shown_at = {}
    for n in range(1000):                       # one packet per ms, 3 events each, no pause
        now = n * MS
        for k in range(3):
            s.add(_event(now + k * 1000, ip_id=n + 1))
        while (evs := s.pop_due(now)) is not None:
            shown_at[evs[0].ts_ns // MS] = now // MS
            assert len(evs) == 3
    assert len(shown_at) >= 940
    assert all(at - first <= 51 for first, at in shown_at.items())
    rest = s.drain()                            # stop: what waits is shown, not dropped
    assert len(shown_at) + len(rest) == 1000
    assert s.stats.shown == 1000 and s.stats.dropped == 0 and s.held_events == 0


def test_stream_memory_is_bounded_and_every_packet_is_shown_or_counted():
    s = live.PacketStream(hold_ns=50 * MS, max_events=300)
    shown = 0
    for n in range(5000):                       # a flood, read faster than it is shown
        for k in range(4):
            s.add(_event(n * 10_000 + k, ip_id=n % 60000 + 1))
        assert s.held_events <= 300
        if n % 50 == 0:                         # the consumer keeps up with a few only
            if s.pop_due(n * 10_000 + 60 * MS) is not None:
                shown += 1
    shown += len(s.drain())
    assert s.stats.dropped > 0
    assert shown + s.stats.dropped == 5000
    assert s.stats.shown == shown and s.stats.held_events_peak == 300
    # the later events of a dropped packet are not counted as new packets
    assert s.stats.dropped_events == 4 * s.stats.dropped


def test_stream_late_events_of_a_shown_packet_do_not_make_a_new_packet():
    s = live.PacketStream(hold_ns=50 * MS)
    s.add(_event(0, ip_id=9))
    assert s.pop_due(60 * MS) is not None
    s.add(_event(61 * MS, ip_id=9, point=Point.CONSUME_SKB))   # its consume, a little late
    assert s.drain() == [] and s.stats.late_events == 1 and s.stats.shown == 1
    # long after (the IPv4 id came round again): a new packet
    s.add(_event(61 * MS + live.REMEMBER_NS + 1, ip_id=9))
    s.pop_due(61 * MS + live.REMEMBER_NS + 1)
    assert len(s.drain()) == 1 and s.stats.shown == 2


def test_packet_key_tells_packets_apart_like_the_header_parser():
    """The raw-byte key groups events exactly as the parsed headers would: same packet at
    L2 and L3, with and without VXLAN around it; different ids, ports, echo sequences and
    directions apart; ARP and IPv6 by their own rules."""
    import struct
    from nettrace.trace.events import parse_headers

    def ip(ip_id, proto=1, l4=b"", src=(172, 17, 0, 2), dst=(172, 17, 0, 3)):
        return bytes([0x45, 0, 0, 20 + len(l4)]) + ip_id.to_bytes(2, "big") + \
            bytes([0x40, 0, 64, proto, 0, 0]) + bytes(src) + bytes(dst) + l4

    eth = bytes(6) + bytes(6) + b"\x08\x00"
    echo = lambda t, seq: bytes([t, 0, 0, 0, 0, 7]) + seq.to_bytes(2, "big")    # noqa: E731
    udp = lambda sp, dp: struct.pack("!HHHH", sp, dp, 8, 0)                    # noqa: E731
    vxlan = lambda inner: ip(99, 17, udp(40000, 4789) + bytes(8) + eth + inner,  # noqa: E731
                             (192, 168, 50, 11), (192, 168, 50, 12))

    def ev(hdr, l2=False, ethertype=0x0800, skb=1):
        raw = _Raw(netns=1, ethertype=ethertype, l2=int(l2), skb=skb, hdr_len=len(hdr))
        ct.memmove(raw.hdr, hdr, len(hdr))
        return Event(raw)

    def parsed(e):
        p = parse_headers(e.hdr, e.l2, e.ethertype)
        return (p.proto, p.src, p.dst, p.ip_id, p.sport, p.dport)

    same = [ev(ip(5, 1, echo(8, 1))), ev(eth + ip(5, 1, echo(8, 1)), l2=True),
            ev(vxlan(ip(5, 1, echo(8, 1)))), ev(eth + vxlan(ip(5, 1, echo(8, 1))), l2=True)]
    assert len({live.packet_key(e) for e in same}) == 1
    assert len({parsed(e) for e in same}) == 1
    apart = [ev(ip(5, 1, echo(8, 1))), ev(ip(6, 1, echo(8, 1))), ev(ip(5, 1, echo(8, 2))),
             ev(ip(5, 1, echo(8, 1), (172, 17, 0, 3), (172, 17, 0, 2))),
             ev(ip(5, 17, udp(1000, 53))), ev(ip(5, 17, udp(1001, 53))), ev(ip(5, 6, udp(1000, 53)))]
    assert len({live.packet_key(e) for e in apart}) == len(apart)
    assert len({parsed(e) for e in apart}) == len(apart)
    arp = bytes([0, 1, 8, 0, 6, 4, 0, 1]) + bytes(6) + bytes([10, 0, 0, 1]) + bytes(6) + \
        bytes([10, 0, 0, 2])
    assert live.packet_key(ev(arp, ethertype=0x0806)) == ("arp", "10.0.0.1", "10.0.0.2",
                                                          "who-has 10.0.0.2 tell 10.0.0.1")
    v6 = bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + bytes(32) + udp(1, 2)
    assert live.packet_key(ev(v6, ethertype=0x86DD, skb=42)) == ("skb", 42)


def test_held_event_memory_is_within_the_documented_bound():
    """EVENT_BYTES and GONE_BYTES (the memory bound's terms) measured, not guessed, in the
    worst case: every event a packet of its own (a key, an entry and a list each)."""
    n = 20_000
    s = live.PacketStream(hold_ns=10**15, max_events=n)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        s.add(_event(i, ip_id=i % 60000 + 1, point=Point(i % 5 + 1)))
    per_event = (tracemalloc.get_traced_memory()[0] - before) / n
    assert s.held_events == n
    released = s.drain()
    del released
    gone = len(s._gone)
    per_gone = (tracemalloc.get_traced_memory()[0] - before) / gone
    tracemalloc.stop()
    print(f"\nheld event: {per_event:.0f} bytes, remembered key: {per_gone:.0f} bytes "
          f"(bound: {live.EVENT_BYTES} and {live.GONE_BYTES}; {live.MAX_REMEMBERED} keys "
          f"kept at most)")
    assert per_event <= live.EVENT_BYTES and per_gone <= live.GONE_BYTES
    assert gone == min(n, live.MAX_REMEMBERED)


# -- the real CLI ------------------------------------------------------------------------------

_N = iter(range(1, 1000))


def _lab_name(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 1000}x{next(_N)}"


def _snmp(ns: str, group: str, field: str) -> int:
    from nettrace.topology import netns
    lines = [ln.split() for ln in netns.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
             if ln.startswith(group + ":")]
    head, vals = lines[0], lines[1]
    return int(vals[head.index(field)]) if field in head else 0


def _tx_packets(ns: str, dev: str) -> int:
    from nettrace.topology import netns
    out = netns.run(ns, ["ip", "-s", "-j", "link", "show", dev]).stdout
    return json.loads(out)[0]["stats64"]["tx"]["packets"]


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) * 1024


def _start_trace(lab, *args: str) -> subprocess.Popen:
    from test_signals import _wait_tracing
    # unbuffered (as python -u): a signal that interrupts a write to the full pipe (the test
    # reads only at the end) must not cut a line short
    proc = subprocess.Popen([NETTRACE, "trace", lab.name, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _wait_tracing(proc, lab.namespaces, nft=False)
    return proc


def _stop(proc: subprocess.Popen, sig=signal.SIGINT) -> tuple[list[dict], dict, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert "summary" in objs[-1], out[-500:]
    return objs[:-1], objs[-1]["summary"], err


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("max_events", [2_000, live.MAX_EVENTS], ids=["small-bound", "default"])
def test_flood_every_packet_shown_or_counted(make_lab, max_events):
    """ping -f between two containers: shown + dropped-by-nettrace == sent (kernel counter)."""
    from nettrace.topology import netns
    lab = make_lab("bridge", name=_lab_name("fl"))
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    netns.run(c1.netns, ["ping", "-c1", "-W1", c2.ip()])          # ARP resolved beforehand
    proc = _start_trace(lab, "icmp", "and", "src", "c1", "--json", "--max-events", str(max_events))
    rss_before = _status(proc.pid, "VmRSS")
    echo0, tx0 = _snmp(c1.netns, "IcmpMsg", "OutType8"), _tx_packets(c1.netns, "eth0")
    count = 5000
    netns.run(c1.netns, ["ping", "-f", "-q", "-c", str(count), "-W1", c2.ip()], timeout=120)
    sent = _snmp(c1.netns, "IcmpMsg", "OutType8") - echo0
    tx = _tx_packets(c1.netns, "eth0") - tx0
    time.sleep(0.3)
    peak = _status(proc.pid, "VmHWM")
    paths, summary, err = _stop(proc)
    ours = [p for p in paths if p["src"] == c1.ip() and p["dst"] == c2.ip()
            and p["proto"] == "icmp"]
    ids = [next(h["packet"]["ip_id"] for h in p["hops"] if h.get("packet")) for p in ours]
    shown, dropped = len(ours), summary["packets_dropped_by_nettrace"]
    print(f"\nflood (--max-events {max_events}): sent {sent} (kernel IcmpMsg OutType8; eth0 tx "
          f"{tx}), shown {shown}, counted as dropped by nettrace {dropped}, kernel lost "
          f"{summary['events_lost_in_kernel']} events; held events peak "
          f"{summary['held_events_peak']}, memory bound {summary['memory_bound_bytes'] / 1e6:.1f} MB,"
          f" RSS {rss_before / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB")
    assert sent == count and tx >= sent, (sent, tx)
    assert summary["events_lost_in_kernel"] == 0, f"the ring buffer overflowed: {summary}"
    assert len(set(ids)) == shown, f"a packet was shown twice: {summary}"
    assert shown == summary["packets_shown"] == len(paths), (shown, len(paths), summary)
    assert shown + dropped == sent, summary
    assert summary["held_events_peak"] <= max_events, summary
    if max_events == 2_000:
        assert dropped > 0, "the small bound should have made nettrace drop (and count)"
    assert "dropped by nettrace" in err
    # the memory held for packets stays within the bound (plus the interpreter's slack)
    assert peak - rss_before < summary["memory_bound_bytes"] + 64 * 2**20


@needs_root
@pytest.mark.slow
def test_kernel_loss_is_counted_and_reported(make_lab):
    """A 4 KiB ring buffer cannot hold a flood's events: the kernel counts what it could not
    hand over, and nettrace reports that number (not 0) at the end and in --json."""
    from nettrace.topology import netns
    lab = make_lab("bridge", name=_lab_name("lo"))
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    proc = _start_trace(lab, "icmp", "--json", "--ring-kib", "4")
    netns.run(c1.netns, ["ping", "-f", "-q", "-c", "3000", "-W1", c2.ip()], timeout=120)
    paths, summary, err = _stop(proc)
    lost = summary["events_lost_in_kernel"]
    assert lost > 0
    assert f"{lost} events lost in the kernel" in err
    assert paths and max(p["events_lost"] for p in paths) > 0     # and on the paths themselves


@needs_root
@pytest.mark.slow
def test_trace_text_shows_each_packet_hop_by_hop(make_lab):
    from nettrace.topology import netns
    lab = make_lab("user-bridges", name=_lab_name("tt"))
    c1, c2, c3 = (lab.sandboxes[n] for n in ("c1", "c2", "c3"))
    proc = subprocess.Popen([NETTRACE, "trace", lab.name, "icmp", "and", "host", "c2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from test_signals import _wait_tracing
    _wait_tracing(proc, lab.namespaces, nft=False)
    assert netns.run(c1.netns, ["ping", "-c2", "-i0.2", "-W1", c2.ip()], check=False).returncode == 0
    netns.run(c3.netns, ["ping", "-c1", "-W1", c1.ip()], check=False)     # not host c2: not shown
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    requests = [ln for ln in lines if ln.startswith(f"{c1.ip()} > {c2.ip()}") and "echo-request" in ln]
    replies = [ln for ln in lines if ln.startswith(f"{c2.ip()} > {c1.ip()}") and "echo-reply" in ln]
    assert len(requests) == 2 and len(replies) == 2, out
    bridge = lab.network("front").device
    for ln in requests:     # c1's eth0, its veth on the host, the bridge, c2's eth0
        assert "c1:eth0" in ln and bridge in ln and "c2:eth0" in ln, ln
        assert ln.index("c1:eth0") < ln.index(bridge) < ln.index("c2:eth0")
    assert not any(c3.ip() in ln for ln in lines)
    assert "4 packets shown, 0 dropped by nettrace" in err and "0 events lost" in err


@needs_root
def test_trace_refuses_a_bad_ring_size_before_tracing(labs):
    lab = labs("bridge", as_name="tc-bridge")
    bad = run_cli("trace", lab.name, "--ring-kib", "6")
    assert bad.returncode == 2 and "--ring-kib" in bad.stderr and "power of two" in bad.stderr
    assert "Traceback" not in bad.stderr


@needs_root
@pytest.mark.slow
def test_probes_lists_what_is_live_and_why_not(labs):
    lab = labs("bridge", as_name="tc-bridge")
    out = run_cli("probes", lab.name, check=True).stdout
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\W\s*(\S+)\s+\W\s*(yes|no)\s", out, re.M)}
    for tp in ("tp:net_dev_queue", "tp:netif_receive_skb", "tp:kfree_skb", "tp:consume_skb"):
        assert rows.get(tp) == "yes", out
    assert rows.get("nf:first/last") == "yes" and rows.get("nft:trace") == "yes", out
    assert rows.get("tc:ingress/egress") == "no" and "macvlan" in out    # bridge lab: none
    bare = run_cli("probes", check=True).stdout                           # no lab named
    assert re.search(r"nf:first/last\s+\W\s*no\s+\W\s*attached per lab namespace", bare), bare


@needs_root
@pytest.mark.slow
def test_demo_traces_c1_to_c2_and_leaves_nothing(tmp_path):
    prefix = f"ntd{os.getpid() % 10000}"
    env = {"NETTRACE_NS_PREFIX": prefix, "NETTRACE_STATE_DIR": str(tmp_path / "state")}
    res = run_cli("demo", env=env, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "c1 reached c2 and the reply came back" in res.stderr
    assert "namespaces removed" in res.stderr
    # the path itself: c1's eth0, docker0, c2's eth0, and the reply delivered at c1
    assert "c1:eth0" in res.stdout and "docker0" in res.stdout and "c2:eth0" in res.stdout
    assert re.search(r"reply delivered at c1", res.stdout), res.stdout[-800:]
    assert our_namespaces(prefix) == []
    assert not [f for f in os.listdir(tmp_path / "state") if f.startswith("demo.")]
