"""Pipelined replay on a real lab: 200 mixed frames (ICMP, UDP, TCP, ARP; delivered and
dropped) replayed with many in flight give the same paths, frame by frame, as one at a
time. The oracle is the one-at-a-time replay (the tracer as it always worked) plus the
expected verdict of each kind of frame, written by hand below."""

from __future__ import annotations

import re

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from conftest import needs_root
from nettrace.capture.pcapng import write_pcap

pytestmark = [needs_root, pytest.mark.slow]

C1_MAC = "02:42:0a:0a:00:02"
#: the embedded user-bridges lab, with a UDP server on c2: a closed port would be answered
#: by ICMP port unreachable, which the kernel rate-limits (net.ipv4.icmp_ratelimit), so
#: frames sent faster would get fewer answers: true, but not what this test is about
LAB = """
networks:
  - {name: front, driver: bridge, subnet: 10.10.0.0/24}
  - {name: back, driver: bridge, subnet: 10.20.0.0/24}
containers:
  - {name: c1, networks: [front]}
  - {name: c2, networks: [front], listen: ["udp/5353"]}
  - {name: c3, networks: [back]}
"""


def _frames(c1: str, c2: str, c3: str) -> tuple[list[bytes], list[str]]:
    """200 frames from c1 and the verdict each must get (user-bridges: c1 and c2 share a
    bridge, c3 is on another one, which Docker's isolation rules keep apart)."""
    frames, expect = [], []

    def add(pkt, verdict: str) -> None:
        frames.append(bytes(pkt))
        expect.append(verdict)

    eth = Ether(src=C1_MAC, dst="02:42:0a:0a:00:03")
    for n in range(190 // 6 + 1):
        add(eth / IP(src=c1, dst=c2, id=0x1000 + n) / ICMP(id=0x4100 + n, seq=1) / b"pipe", "delivered")
        add(eth / IP(src=c1, dst=c3, id=0x2000 + n) / ICMP(id=0x4200 + n, seq=1) / b"pipe", "dropped")
        add(eth / IP(src=c1, dst=c2, id=0x3000 + n) / UDP(sport=34000 + n, dport=5353) / b"q",
            "delivered")
        add(eth / IP(src=c1, dst=c3, id=0x4000 + n) / UDP(sport=35000 + n, dport=5353) / b"q",
            "dropped")
        add(eth / IP(src=c1, dst=c2, id=0x5000 + n) / TCP(sport=36000 + n, dport=81, flags="S"),
            "delivered")                           # answered by a reset
        add(eth / IP(src=c1, dst=c3, id=0x6000 + n) / TCP(sport=37000 + n, dport=81, flags="S"),
            "dropped")
    for n in range(10):            # one target: they fly one after another (ARP flies alone)
        add(Ether(src=C1_MAC, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=C1_MAC, psrc=c1, pdst=c2), "delivered")
    frames, expect = frames[:190] + frames[-10:], expect[:190] + expect[-10:]
    assert len(frames) == 200
    return frames, expect


def _signatures(results, lab) -> list:
    """What must not depend on how many frames fly at once, in lab-independent names
    (`host:veth(c1)`, as the golden files write them): every hop, the verdict (with the
    rule that dropped the packet), and the same for the answer. The rules that accepted
    it are left out: on a busy machine `nft monitor trace` (a process) may print them after
    the wait for them is over, whatever the pipelining; a drop's rule is checked below."""
    from nettrace.capture.golden import Aliases, frame_signature
    alias = Aliases(lab)
    out = []
    for r in results:
        sig = frame_signature(r.number, r.packet, r.path, lab, alias).to_yaml()
        for side in (sig, sig.get("reply") or {}):
            side["hops"] = [re.sub(r" \[.*\]$", "", h) for h in side.get("hops", [])]
        out.append(sig)
    return out


def test_200_mixed_frames_in_parallel_give_the_paths_of_one_at_a_time(tmp_path, make_lab):
    from nettrace.capture.replay import ReplaySummary, replay
    from nettrace.trace import Tracer

    # two fresh labs of the same file: conntrack entries, neighbour caches and bridge FDBs
    # left by one replay would change the next one's paths (an echo request of a known flow
    # is ESTABLISHED), whatever the pipelining
    results, summaries, signatures = {}, {}, {}
    for window in (1, 64):
        lab = make_lab(text=LAB, name=f"pipe{window}")
        c1 = lab.sandbox("c1").endpoints[0].ipv4
        c2, c3 = lab.sandbox("c2").ip(), lab.sandbox("c3").ip()
        frames, expect = _frames(c1, c2, c3)
        cap = str(tmp_path / f"mixed200-{window}.pcap")
        write_pcap(cap, ((1_767_225_600 * 10**9 + i * 1000, f) for i, f in enumerate(frames)))
        with Tracer(lab) as tracer:
            summaries[window] = ReplaySummary(cap, lab.name, "c1")
            results[window] = list(replay(lab, cap, "c1", tracer=tracer, window=window,
                                          timeout=1.0, summary_out=summaries[window]))
        signatures[window] = _signatures(results[window], lab)
    serial, parallel = results[1], results[64]
    serial_summary, parallel_summary = summaries[1], summaries[64]

    assert [r.number for r in parallel] == list(range(1, 201))          # frame order kept
    assert [r.path.verdict.kind for r in serial] == expect
    assert [r.path.verdict.kind for r in parallel] == expect
    for one, many in zip(signatures[1], signatures[64]):
        if one["packet"].startswith("Ether / ARP"):
            # ARP has no per-packet identity (it is matched by the address asked for), so the
            # kernel's own who-has for that address in the same window joins the path, one at
            # a time or not: compare what it did, not every hop
            one, many = ({k: v for k, v in sig.items() if k != "hops"} for sig in (one, many))
            for sig in (one, many):
                sig["reply"] = {"verdict": (sig.get("reply") or {}).get("verdict")}
        assert many == one, f"frame {one['frame']}: one at a time {one}, in parallel {many}"
    for r in parallel:
        if r.path.verdict.kind == "dropped":          # Docker's rule that kept them apart
            assert r.path.verdict.rule is not None, f"frame {r.number}: no rule"
            assert r.path.verdict.rule.verdict == "drop"
        else:
            assert r.path.reply is not None, f"frame {r.number}: no answer traced"
    assert parallel_summary.events_lost == 0 and serial_summary.events_lost == 0
    assert parallel_summary.lost == serial_summary.lost == 0
    # many in flight is what makes it fast: a wide margin, not a timing target
    assert parallel_summary.trace_seconds < serial_summary.trace_seconds


def test_a_capture_of_both_directions_replays_the_echo_replies_as_packets_of_their_own(
        tmp_path, make_lab):
    """A capture taken on c1 holds its echo requests and its echo replies; replayed from c1,
    an echo reply is the packet sent (its hops start at c1, it is delivered to c2's stack)
    and nothing answers it, so its path is complete once delivered, not at the timeout."""
    from nettrace.capture.replay import replay
    from nettrace.trace.model import DELIVERED
    lab = make_lab(text=LAB, name="pipeboth")
    c1 = lab.sandbox("c1").endpoints[0].ipv4
    c2 = lab.sandbox("c2").ip()
    eth = Ether(src=C1_MAC, dst="02:42:0a:0a:00:03")
    frames = [eth / IP(src=c1, dst=c2, id=0x7001) / ICMP(type=8, id=0x4301, seq=1) / b"both",
              eth / IP(src=c1, dst=c2, id=0x7002) / ICMP(type=0, id=0x4302, seq=1) / b"both"]
    cap = str(tmp_path / "both.pcap")
    write_pcap(cap, ((1_767_225_600 * 10**9 + i * 1000, bytes(f)) for i, f in enumerate(frames)))
    request, reply = [r.path for r in replay(lab, cap, "c1", timeout=5.0, rules=False)]
    assert request.verdict.kind == DELIVERED and request.reply is not None
    assert request.reply.hops[0].packet.info == "echo-reply"
    assert reply.verdict.kind == DELIVERED and reply.reply is None
    assert reply.hops[0].sandbox == "c1" and reply.hops[-1].sandbox == "c2"
    assert {h.packet.info for h in reply.hops if h.packet} == {"echo-reply"}
