"""The in-kernel filter on a real lab: several fingerprints watched at once, each under its
own trace id, and the unrelated packets of a watched flow (same addresses and protocol,
other ports or ids) rejected in the kernel: no event reaches user space for them."""

from __future__ import annotations

import time

import pytest

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]


def _drain(probes, seconds: float = 0.3) -> list:
    events: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probes.poll(events.append, timeout_ms=20)
    return events


def test_unrelated_packets_of_a_watched_flow_emit_no_event(labs):
    from scapy.layers.inet import ICMP, IP, TCP

    from nettrace.inject import injector
    from nettrace.inject.fingerprint import Fingerprint
    from nettrace.trace import Tracer

    lab = labs("bridge", as_name="flt-bridge")
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    tcp_fp = Fingerprint(trace_id=7001, proto="tcp", src=c1.ip(), dst=c2.ip(), ip_id=4321,
                         sport=41001, dport=81)
    icmp_fp = Fingerprint(trace_id=7002, proto="icmp", src=c1.ip(), dst=c2.ip(), ip_id=4322,
                          icmp_id=777, icmp_seq=1)
    with Tracer(lab, nftrace=False) as tr:
        probes = tr.probes
        tr._attach(probes)
        try:
            probes.watch_many([(tcp_fp.keys(), tcp_fp.trace_id),
                               (icmp_fp.keys(), icmp_fp.trace_id)])
            _drain(probes, 0.05)
            # same addresses and protocols, other ports / ids / echo ids: nothing may come up
            for n in range(20):
                injector.send_l3(c1.netns, IP(src=c1.ip(), dst=c2.ip(), id=5000 + n)
                                 / TCP(sport=42000 + n, dport=82, flags="S"))
                injector.send_l3(c1.netns, IP(src=c1.ip(), dst=c2.ip(), id=6000 + n)
                                 / ICMP(id=900 + n, seq=1))
            stray = _drain(probes)
            assert stray == [], f"{len(stray)} events of unwatched packets reached user space"

            # the watched packets: each fingerprint's events carry its own trace id
            injector.send_l3(c1.netns, IP(src=c1.ip(), dst=c2.ip(), id=tcp_fp.ip_id)
                             / TCP(sport=tcp_fp.sport, dport=tcp_fp.dport, flags="S"))
            injector.send_l3(c1.netns, IP(src=c1.ip(), dst=c2.ip(), id=icmp_fp.ip_id)
                             / ICMP(id=icmp_fp.icmp_id, seq=icmp_fp.icmp_seq))
            seen = _drain(probes, 0.5)
            ids = {ev.trace_id for ev in seen}
            assert ids == {tcp_fp.trace_id, icmp_fp.trace_id}
            # the TCP SYN is answered by a RST (nothing listens on 81): request and answer
            tcp_events = [ev for ev in seen if ev.trace_id == tcp_fp.trace_id]
            assert len(tcp_events) >= 8
            assert probes.events_lost == 0

            # unwatching one leaves the other watched, and the pre-filter forgets its values
            probes.unwatch_keys(tcp_fp.keys())
            assert _hot_bit(probes, tcp_fp.sport) is False
            assert _hot_bit(probes, icmp_fp.icmp_id) is True
            injector.send_l3(c1.netns, IP(src=c1.ip(), dst=c2.ip(), id=tcp_fp.ip_id)
                             / TCP(sport=tcp_fp.sport, dport=tcp_fp.dport, flags="S"))
            assert _drain(probes) == []
        finally:
            probes.unwatch_keys(tcp_fp.keys() + icmp_fp.keys())
            probes.detach(("tp", "nf"))
        assert _hot_bit(probes, icmp_fp.icmp_id) is False


def _hot_bit(probes, value: int) -> bool:
    """Whether the kernel's pre-filter bitmap has `value` on (read back from the map)."""
    import ctypes as ct
    word = probes.bpf[b"hot"][ct.c_int(value >> 6)].value
    return bool((word >> (value & 63)) & 1)


def test_a_build_compiled_ahead_is_the_one_a_tracer_uses_and_traces(labs):
    """open_ahead() (what `nettrace path` calls before resolving its lab): the Tracer
    opened later takes the build compiled ahead instead of compiling again, and traces
    with it; a build whose compile failed ahead is compiled again (and reported) there."""
    from nettrace.inject.request import InjectRequest
    from nettrace.trace import Tracer, probes as probes_mod, tracer as tracer_mod

    lab = labs("bridge", as_name="flt-ahead")
    tracer_mod.open_ahead()
    (thread, built, failed), = probes_mod._AHEAD.values()
    with Tracer(lab, nftrace=False) as tr:
        assert tr.probes.prog_fds is built.prog_fds and built.bpf is None
        assert not probes_mod._AHEAD and not failed
        (path,) = tr.path(InjectRequest("c1", "c2"))
    assert path.verdict.kind == "delivered" and path.reply is not None

    probes_mod.compile_ahead()
    (thread, built, failed), = probes_mod._AHEAD.values()
    thread.join()
    failed.append(RuntimeError("as if clang had failed ahead"))
    with Tracer(lab, nftrace=False) as tr:
        assert tr.probes.bpf is not built.bpf and tr.probes.prog_fds
        (path,) = tr.path(InjectRequest("c1", "c2"))
    assert path.verdict.kind == "delivered"
    built.close()
