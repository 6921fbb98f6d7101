"""Golden-case checking: offline from recorded bundles against live replay, same run.

For every case in captures/: the offline check (`nettrace check CASE`: load the bundle,
assemble its events, compare signatures and hand-written expectations; no root, no lab)
timed in-process, best of 5, and the whole corpus as one `nettrace check captures/*`
command (a fresh Python, imports included). The peer, measured in the same run: the live
check of the same cases (`--live`: bring the lab up, replay, trace with eBPF, take it down),
which needs root; without root the peer is skipped and said so.

Targets (issue 10): well under a second a case, the whole corpus under 5 s.

Run: .venv/bin/python bench/bench_check.py [--live-cases N]   (root for the peer)
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntkb")   # never touch labs of a user
os.environ.setdefault("NETTRACE_STATE_DIR", "/run/nettrace-ntkb")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = sorted(glob.glob(os.path.join(ROOT, "captures", "*.paths.yaml")))
NETTRACE = os.path.join(os.path.dirname(sys.executable), "nettrace")


def offline_case(file: str, repeat: int = 5) -> tuple[float, bool]:
    from nettrace.capture.check import run_case
    from nettrace.capture.golden import load_golden
    best, ok = float("inf"), True
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run_case(load_golden(file))
        best = min(best, time.perf_counter() - t0)
        ok = ok and result.passed
    return best, ok


def live_case(file: str) -> tuple[float, bool]:
    from nettrace.capture.check import run_case
    from nettrace.capture.golden import load_golden
    t0 = time.perf_counter()
    result = run_case(load_golden(file), live=True, lab_name="bench-check")
    return time.perf_counter() - t0, result.passed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--live-cases", type=int, default=len(CASES),
                    help="how many cases the live peer replays (default: all)")
    args = ap.parse_args()
    print(f"{'case':<24} {'offline':>10} {'live (peer)':>12} {'speed-up':>9}")
    live_ok = os.geteuid() == 0
    failed = 0
    for n, file in enumerate(CASES):
        name = os.path.basename(file)[:-len(".paths.yaml")]
        off, ok = offline_case(file)
        failed += not ok
        if live_ok and n < args.live_cases:
            live, lok = live_case(file)
            print(f"{name:<24} {off * 1000:>8.1f}ms {live:>10.2f} s {live / off:>8.0f}x"
                  + ("" if lok else "  (live check failed)"))
        else:
            print(f"{name:<24} {off * 1000:>8.1f}ms {'-':>12} {'-':>9}")
    t0 = time.perf_counter()
    proc = subprocess.run([NETTRACE, "check", *CASES], capture_output=True, text=True)
    whole = time.perf_counter() - t0
    print(f"whole corpus, one `nettrace check` command ({len(CASES)} cases, fresh process): "
          f"{whole:.2f} s (target < 5 s), exit {proc.returncode}")
    if not live_ok:
        print("live peer skipped: it needs root (labs and eBPF)")
    return 1 if failed or proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
