"""Tracer figures (issue 3). Prints numbers; it is not a test.

1. Time to first trace: `nettrace path LAB c1 c2` as one command on a lab that is up
   (process start, bcc compile, attach, inject, trace, detach). Target < 1.5 s.
2. Further paths with a long-lived Tracer (as in the TUI). Target < 0.1 s each.
3. Observer effect: iperf3 TCP throughput c3 -> c4 with the tracer attached and watching
   an unrelated flow, as a ratio to no tracer, alternated in the same run. Target >= 0.95.
4. Sustained watched-event rate with zero loss: a UDP stream c3 -> c4 whose source port
   is watched, so every hop of every packet is an event. Target >= 300,000 events/s.

Run as root: .venv/bin/python bench/bench_trace.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntb")   # never touch labs of a user
os.environ.setdefault("NETTRACE_STATE_DIR", "/run/nettrace-bench")

from nettrace.topology import builder, netns, spec  # noqa: E402

LAB = "benchtr"
NETTRACE = os.path.join(os.path.dirname(sys.executable), "nettrace")
IPERF_S = 2
OBSERVER_PAIRS = 5


def lab_up():
    text = "containers:\n" + "".join(f"  - name: c{i}\n    networks: [bridge]\n" for i in range(1, 5))
    return builder.up(spec.parse(text, default_name=LAB))


def first_trace(runs: int = 3) -> None:
    times, opens = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        proc = subprocess.run([NETTRACE, "path", LAB, "c1", "c2", "--json"], capture_output=True,
                              text=True)
        times.append(time.monotonic() - t0)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[0])["verdict"]["kind"] == "delivered"
    load = os.getloadavg()[0]
    print(f"time to first trace (nettrace path, one command): median {statistics.median(times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times)}; load average {load:.1f}, 2 vCPU) "
          f"target < 1.5 s")


def further_paths(tr, n: int = 30) -> None:
    tr.path("c1", "c2")
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        (p,) = tr.path("c1", "c2")
        times.append(time.monotonic() - t0)
        assert p.verdict.kind == "delivered" and p.reply is not None
    times.sort()
    print(f"further path, long-lived tracer: median {statistics.median(times) * 1000:.0f} ms, "
          f"p95 {times[int(n * 0.95) - 1] * 1000:.0f} ms over {n} (open took "
          f"{tr.timings['open']:.2f} s, bcc compile {tr.timings['compile']:.2f} s) target < 100 ms")


def iperf(lab, args: list[str]) -> dict:
    server_ns, client_ns = lab.sandboxes["c3"].netns, lab.sandboxes["c4"].netns
    server = netns.popen(server_ns, ["iperf3", "-s", "-1", "-J"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.2)
    try:
        out = netns.run(client_ns, ["iperf3", "-c", lab.sandboxes["c3"].ip(), "-J", *args],
                        timeout=IPERF_S + 20).stdout
    finally:
        server.wait(timeout=10)
    return json.loads(out)


def tcp_gbps(lab) -> float:
    res = iperf(lab, ["-t", str(IPERF_S)])
    return res["end"]["sum_received"]["bits_per_second"] / 1e9


#: what the attached tracer is doing while iperf3 runs (a Tracer attaches its probes only
#: while it traces a path: these runs keep them attached, as during a path, throughout)
WATCHING = {
    "attached, nothing watched": [],
    "watching an ICMP flow c1->c2": [(1, 1, 4242), (3, 1, (4242 << 16) | 1)],
    "watching a TCP flow c1->c2 (same protocol as iperf3)": [(1, 6, 4243), (2, 6, 40001)],
}


def observer_effect_in_use(lab, tracer, every_s: float = 0.5) -> None:
    """The real use: an open Tracer (probes attached only while a path is traced) tracing
    an unrelated flow c1 -> c2 every `every_s` seconds, as the TUI would."""
    import threading
    ratios = []
    for _ in range(OBSERVER_PAIRS):
        b = tcp_gbps(lab)
        stop = threading.Event()
        traced_paths = []

        def trace_loop() -> None:
            while not stop.is_set():
                traced_paths.extend(tracer.path("c1", "c2"))
                stop.wait(every_s)

        worker = threading.Thread(target=trace_loop)
        worker.start()
        try:
            t = tcp_gbps(lab)
        finally:
            stop.set()
            worker.join()
        assert traced_paths and all(p.verdict.kind == "delivered" for p in traced_paths)
        ratios.append(t / b)
    report_ratios(f"open Tracer tracing c1->c2 every {every_s} s (probes attached only during "
                  f"each path)", ratios)


def report_ratios(what: str, ratios: list[float], base: list[float] | None = None,
                  traced: list[float] | None = None) -> None:
    speeds = (f"iperf3 TCP median {statistics.median(base):.2f} Gbit/s untraced, "
              f"{statistics.median(traced):.2f} traced; " if base and traced else "")
    print(f"observer effect, {what}: {speeds}median of {len(ratios)} paired ratios "
          f"{statistics.median(ratios):.3f} (pairs {', '.join(f'{r:.2f}' for r in ratios)}) "
          f"target >= 0.95")


def observer_effect(lab, tracer) -> None:
    """iperf3 TCP c4 -> c3: runs without probes and with probes attached, in pairs. The
    probes are attached as for a path c1 -> c2 (no netfilter probes in c3 and c4, which
    are bystanders of that path), and stay attached for the whole run."""
    bystanders = tracer._bystanders(lab.sandboxes["c1"].netns, lab.sandboxes["c2"].netns)
    for what, keys in WATCHING.items():
        ratios, base, traced = [], [], []
        for _ in range(OBSERVER_PAIRS):
            tracer.probes.detach()
            b = tcp_gbps(lab)
            tracer._attach(tracer.probes, bystanders)   # compiled once, attached per run
            if keys:
                tracer.probes.watch_keys(keys, 999)
            t = tcp_gbps(lab)
            tracer.probes.unwatch_keys(keys)
            base.append(b)
            traced.append(t)
            ratios.append(t / b)
        report_ratios(f"tracer {what}", ratios, base, traced)


def event_rate(lab, tr) -> None:
    """UDP stream with a watched source port: every hop of every packet is an event."""
    sport = 45000
    tr._attach(tr.probes)          # a Tracer attaches only while tracing: keep them for the stream
    tr.probes.watch_keys([(2, 17, sport)], 1234)
    best, lossless_upto, clean = None, None, True
    for pps in (5000, 10000, 12500, 15000, 17500, 20000, 30000):
        count = 0

        def on_event(ev) -> None:
            nonlocal count
            count += 1

        lost0 = tr.events_lost
        server_ns, client_ns = lab.sandboxes["c3"].netns, lab.sandboxes["c4"].netns
        server = netns.popen(server_ns, ["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        client = netns.popen(client_ns, ["iperf3", "-u", "-c", lab.sandboxes["c3"].ip(),
                                         "--cport", str(sport), "-l", "64",
                                         "-b", str(pps * 64 * 8), "-t", str(IPERF_S)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while client.poll() is None:
            tr.probes.poll(on_event, timeout_ms=10)
        t1 = time.monotonic()
        for _ in range(20):
            tr.probes.poll(on_event, timeout_ms=10)
        server.wait(timeout=10)
        lost = tr.events_lost - lost0
        rate = count / (t1 - t0)
        print(f"  {pps:>6} pps offered: {rate:,.0f} events/s consumed, {lost} lost "
              f"({lost / max(count + lost, 1):.2%})")
        if lost == 0:
            best = max(best or 0, rate)
            if clean:
                lossless_upto = rate
        else:
            clean = False
    tr.probes.unwatch_keys([(2, 17, sport)])
    tr.probes.detach()
    print(f"sustained watched-event rate with zero loss: best {best or 0:,.0f} events/s; every "
          f"point lossless up to {lossless_upto or 0:,.0f} events/s (target >= 300,000)")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_trace needs root")
    from nettrace.trace import Tracer
    builder.down(LAB, quiet=True)
    lab = lab_up()
    try:
        first_trace()
        with Tracer(lab) as tr:
            further_paths(tr)
            event_rate(lab, tr)
        with Tracer(lab) as tr:
            observer_effect_in_use(lab, tr)
        with Tracer(lab, nftrace=False) as tr:
            observer_effect(lab, tr)
    finally:
        builder.down(LAB, quiet=True)


if __name__ == "__main__":
    main()
