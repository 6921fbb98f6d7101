"""Discovery of a live Docker engine, and `nettrace path --docker` time to first trace.

A private engine (nettrace.docker.engine, in its own namespace) gets 1, then 10, then 50
running containers on a user-defined bridge; for each count, discovery (Docker API +
netlink in every sandbox) is timed over several runs. Then `nettrace path --docker SRC DST`
is run as a user would (a fresh process: imports, discovery, BPF load, injection, first
path printed) and its wall time is reported. Everything is removed at the end.

Run as root: .venv/bin/python bench/bench_docker.py [--counts 1,10,50] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntdb")   # never touch a user's labs or engines
os.environ.setdefault("NETTRACE_STATE_DIR", "/run/nettrace-ntdb")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import facts  # noqa: E402

from nettrace.docker import engine as docker_engine  # noqa: E402
from nettrace.docker.discover import discover  # noqa: E402
from nettrace.inject.request import InjectRequest  # noqa: E402

NETTRACE = os.path.join(os.path.dirname(sys.executable), "nettrace")


def grow(eng, have: int, want: int) -> None:
    """Start containers b<have+1>..b<want> on network `bench` (a few at a time)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: eng.run(f"b{i}", [("bench", None)]), range(have + 1, want + 1)))


def time_discovery(eng, expected: int, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        lab = discover(eng.url)
        times.append(time.perf_counter() - t0)
        found = sum(1 for name in lab.sandboxes if name.startswith("b"))
        assert found == expected, (found, expected)
        assert all(ep.host_ifname for sb in lab.sandboxes.values() for ep in sb.endpoints)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,10,50")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_docker: needs root (skipped)")
        return 0
    try:
        docker_engine.check_installed()
    except Exception as exc:
        print(f"bench_docker: skipped: {exc}")
        return 0
    counts = [int(c) for c in args.counts.split(",")]
    t0 = time.perf_counter()
    eng = docker_engine.start(f"bench{os.getpid()}")
    started = time.perf_counter() - t0
    try:
        eng.import_busybox()
        eng.client().networks.create("bench", driver="bridge")
        print(f"engine start (containerd + dockerd answering): {started:.2f} s")
        have = 0
        print(f"{'containers':>10}  {'discovery median':>16}  {'min':>7}  {'max':>7}  "
              f"{'per container':>13}")
        for n in counts:
            t0 = time.perf_counter()
            grow(eng, have, n)
            created = time.perf_counter() - t0
            have = n
            times = time_discovery(eng, n, args.runs)
            med = statistics.median(times)
            print(f"{n:>10}  {med * 1000:>13.1f} ms  {min(times) * 1000:>4.1f} ms  "
                  f"{max(times) * 1000:>4.1f} ms  {med / n * 1000:>10.2f} ms"
                  f"   (containers started in {created:.1f} s)")
        took, why = time_first_trace_on(eng)
        if took is None:
            print(f"nettrace path --docker, time to first trace: not measured: {why}")
        else:
            print(f"nettrace path --docker HOST b1 b2 (fresh process, {have} containers): "
                  f"time to first trace, median {took:.2f} s; target < 1.0 s"
                  f"{' (missed)' if took >= 1.0 else ''} {facts()}")
    finally:
        t0 = time.perf_counter()
        report = eng.stop()
        print(f"engine stop ({report.containers} containers): {time.perf_counter() - t0:.2f} s")
    return 0


def time_first_trace_on(eng, runs: int = 5) -> tuple[float | None, str]:
    """Median wall time of `nettrace path --docker HOST b1 b2` in a fresh process, until it
    exits (imports, discovery, BPF compile and attach, injection, the path and its reply
    printed), against `docker -H HOST network inspect bench` (the Docker CLI asking the same
    engine about the same network), in alternating order."""
    try:
        from nettrace.trace import Tracer  # noqa: F401
    except ImportError as exc:
        return None, f"the tracer is not importable ({exc})"
    ours, peer = [], []
    for i in range(runs):
        for which in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
            cmd = [NETTRACE, "path", "--docker", eng.url, "b1", "b2"] if which == "ours" else \
                ["docker", "-H", eng.url, "network", "inspect", "bench"]
            if which == "peer" and not shutil.which("docker"):
                continue
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            (ours if which == "ours" else peer).append(time.perf_counter() - t0)
            if proc.returncode != 0:
                return None, f"{cmd[0]} exited {proc.returncode}: {proc.stderr.strip()[:300]}"
    print(f"  fresh processes: nettrace path --docker {', '.join(f'{t:.2f}' for t in ours)} s; "
          f"docker network inspect {', '.join(f'{t:.2f}' for t in peer) or 'not measured'} s")
    if peer:
        print(f"  peer: `docker -H HOST network inspect bench` median "
              f"{statistics.median(peer):.2f} s {facts()}")
    # where the time goes, in this (warm) process
    t0 = time.perf_counter()
    lab = discover(eng.url)
    t1 = time.perf_counter()
    with Tracer(lab) as tr:
        t2 = time.perf_counter()
        path = tr.path(InjectRequest("b1", "b2"))[0]
        t3 = time.perf_counter()
    print(f"  in-process: discovery {t1 - t0:.2f} s, Tracer open {t2 - t1:.2f} s "
          f"(bcc compile {tr.timings.get('compile', 0):.2f} s, attach "
          f"{tr.timings.get('attach', 0):.2f} s), path {1000 * (t3 - t2):.0f} ms "
          f"({len(path.hops)} hops, {path.verdict.kind})")
    return statistics.median(ours), ""


if __name__ == "__main__":
    sys.exit(main())
