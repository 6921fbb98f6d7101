"""Capture throughput: reading a large pcap, and replay-and-trace on the bridge lab.

1. Read rate of a pcap of N frames (default 1,000,000 ICMP frames, 76 MB), as frames/s and
   as a ratio to `tshark -r FILE -T fields -e frame.number` on the same file in the same
   run. scapy's RawPcapReader is timed too: it is why nettrace reads the framing itself
   (see nettrace/capture/reader.py).
2. Replay-and-trace rate: M frames (default 1,000 echo requests c1 -> c2) replayed into
   the embedded bridge lab, many in flight at once, each traced hop by hop with eBPF
   (needs root), with netfilter rule attribution (nft trace) and without it (`replay
   --no-rules`); peer in the same run: `tshark` reading the same capture. Target: 1,000
   frames/s with every path complete and 0 events lost.

Run as root: .venv/bin/python bench/bench_capture.py [--frames N] [--replay M]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntcb")   # never touch labs of a user
os.environ.setdefault("NETTRACE_STATE_DIR", "/run/nettrace-ntcb")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import say  # noqa: E402

from nettrace.capture.pcapng import write_pcap  # noqa: E402
from nettrace.capture.reader import CaptureReader  # noqa: E402


def icmp_frame(seq: int) -> bytes:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    return bytes(Ether(src="02:42:ac:11:00:02", dst="02:42:ac:11:00:03")
                 / IP(src="172.17.0.2", dst="172.17.0.3", id=seq & 0xFFFF)
                 / ICMP(id=0x4e54, seq=seq & 0xFFFF) / b"nettrace-bench")


def big_pcap(path: str, n: int) -> None:
    frame = icmp_frame(1)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        rec = struct.pack("<IIII", 1_767_225_600, 0, len(frame), len(frame)) + frame
        chunk = 10_000
        for done in range(0, n, chunk):
            f.write(rec * min(chunk, n - done))


def read_rates(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nettrace-bench-") as tmp:
        path = os.path.join(tmp, "big.pcap")
        big_pcap(path, n)
        t0 = time.perf_counter()
        with CaptureReader(path) as cap:
            count = sum(1 for _ in cap)
        ours = time.perf_counter() - t0
        assert count == n, (count, n)
        from scapy.utils import RawPcapReader
        t0 = time.perf_counter()
        count = sum(1 for _ in RawPcapReader(path))
        scapy_s = time.perf_counter() - t0
        assert count == n
        out: dict[str, float] = {"frames": n, "mbytes": os.path.getsize(path) / 1e6,
                                 "nettrace_fps": n / ours, "scapy_fps": n / scapy_s}
        if shutil.which("tshark"):
            t0 = time.perf_counter()
            proc = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
            tshark_s = time.perf_counter() - t0
            assert proc.stdout.count(b"\n") == n
            out["tshark_fps"] = n / tshark_s
            out["ratio_vs_tshark"] = tshark_s / ours
        return out


def tshark_read_fps(path: str, n: int) -> float | None:
    """How fast tshark reads (and numbers) the frames of `path`: the peer of replay."""
    if not shutil.which("tshark"):
        return None
    t0 = time.perf_counter()
    proc = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.number"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    took = time.perf_counter() - t0
    assert proc.stdout.count(b"\n") == n
    return n / took


def replay_rate(m: int, rules: bool = True) -> dict[str, float]:
    from nettrace.capture.replay import ReplaySummary, replay
    from nettrace.topology import builder, spec
    with tempfile.TemporaryDirectory(prefix="nettrace-bench-") as tmp:
        path = os.path.join(tmp, "pings.pcap")
        write_pcap(path, ((1_767_225_600 * 10**9 + i, icmp_frame(i + 1)) for i in range(m)))
        lab = builder.up(spec.load("bridge", name="benchcap"))
        try:
            summary = ReplaySummary(path, lab.name, "c1")
            from nettrace.trace import Tracer
            with Tracer(lab, nftrace=rules) as tracer:
                t0 = time.perf_counter()
                complete = sum(1 for r in replay(lab, path, "c1", tracer=tracer, timeout=2.0,
                                                 summary_out=summary)
                               if r.path.reply is not None and r.path.verdict.kind == "delivered")
                took = time.perf_counter() - t0
        finally:
            builder.down(lab.name, quiet=True)
        tshark = tshark_read_fps(path, m)
    return {"frames": m, "seconds": took, "replay_trace_fps": m / took,
            "delivered": summary.delivered, "dropped": summary.dropped_total,
            "lost": summary.lost, "events_lost": summary.events_lost, "complete": complete,
            "tshark_fps": tshark}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames in the read benchmark")
    ap.add_argument("--replay", type=int, default=1000, help="frames in the replay benchmark")
    args = ap.parse_args()
    r = read_rates(args.frames)
    print(f"read {r['frames']:,} frames ({r['mbytes']:.0f} MB pcap):")
    print(f"  nettrace reader  {r['nettrace_fps']:>12,.0f} frames/s")
    print(f"  scapy RawPcapReader {r['scapy_fps']:>9,.0f} frames/s")
    if "tshark_fps" in r:
        print(f"  tshark -T fields {r['tshark_fps']:>12,.0f} frames/s")
        say(f"  nettrace / tshark: {r['ratio_vs_tshark']:.1f}x")
    if os.geteuid() != 0:
        print("replay: skipped (needs root)")
        return 0
    try:
        from nettrace.trace import Tracer  # noqa: F401
    except ImportError:
        print("replay: skipped (nettrace.trace.Tracer is not available)")
        return 0
    for rules in (True, False):
        p = replay_rate(args.replay, rules)
        what = "with rule attribution" if rules else "--no-rules"
        peer = (f"; peer: tshark reads the same capture at {p['tshark_fps']:,.0f} frames/s"
                if p["tshark_fps"] else "")
        missed = p["replay_trace_fps"] < 1000 or p["complete"] < p["frames"] or p["events_lost"]
        say(f"replay and trace {p['frames']} frames on the bridge lab ({what}): "
            f"{p['seconds']:.2f} s, {p['replay_trace_fps']:,.0f} frames/s; {p['complete']} "
            f"paths complete (delivered and answered), {p['events_lost']} events lost, "
            f"{p['lost']} frames lost{peer}; target 1,000 frames/s, every path complete, 0 "
            f"events lost{' (missed)' if missed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
