"""Tracer figures (issues 3 and 12), each with a peer measured in the same run. Prints
numbers; it is not a test. Every figure says the machine facts it was measured under.

1. Start: `nettrace path LAB c1 c2` as one command (process start, bcc compile, attach,
   inject, trace, detach), against the time bpftrace takes to attach the same seven
   tracepoints (launch to its BEGIN line), alternating. Target: nettrace < 0.5 s median.
2. Further paths from a long-lived Tracer (as in the TUI). Target < 0.1 s each.
3. Observer effect: iperf3 TCP c4 -> c3 through the bridge, as a ratio to the same run
   untraced, in pairs whose order alternates, with:
   nettrace probes attached watching nothing, watching an ICMP flow c1 -> c2, watching a
   TCP flow c1 -> c2 (same protocol and bridge as iperf3); bpftrace on the same seven
   tracepoints with the same address filter (c1 <-> c2); tcpdump capturing on c3's veth
   with that filter. Targets: >= 0.98 idle, >= 0.95 watching TCP, at least bpftrace's.
4. Event capacity: the kernel runs the tc probe on a watched packet with BPF_PROG_TEST_RUN,
   one real event per run into the real ring buffer, paced; the offered load is doubled
   until the kernel reports lost events, then one step between. The knee is the highest
   lossless rate and the first lossy one, for nettrace's reader and for bcc's own
   ring_buffer_poll (the peer). Target >= 1,000,000 events/s lossless.
5. Memory: peak RSS of `nettrace path` (one command) and of a long-lived Tracer after
   200 paths, with bpftrace's peak RSS on the same tracepoints beside them.

Run as root: .venv/bin/python bench/bench_trace.py
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntb")   # never touch labs of a user
os.environ.setdefault("NETTRACE_STATE_DIR", "/run/nettrace-bench")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import ensure_tracefs, median, p95, peak_rss_mib, say  # noqa: E402
from nettrace.topology import builder, netns, spec  # noqa: E402
from nettrace.inject.request import InjectRequest  # noqa: E402

LAB = "benchtr"
NETTRACE = os.path.join(os.path.dirname(sys.executable), "nettrace")
IPERF_S = 1                  # short runs, many pairs: a shared machine's noise comes in bursts
KNEE_S = 3                   # long enough that the 64 MiB ring cannot hide a reader too slow
PAIRS = 9
TRACEPOINTS = ["net:net_dev_queue", "net:net_dev_start_xmit", "net:net_dev_xmit", "net:netif_rx",
               "net:netif_receive_skb", "skb:kfree_skb", "skb:consume_skb"]


def lab_up():
    text = "containers:\n" + "".join(f"  - name: c{i}\n    networks: [bridge]\n" for i in range(1, 5))
    return builder.up(spec.parse(text, default_name=LAB))


# -- peers --------------------------------------------------------------------------------
def bpftrace_script(a: str, b: str) -> str:
    """The same tracepoints nettrace attaches, the same address filter (packets between A
    and B), counting per probe: the work bpftrace does for every packet is ours minus the
    fingerprint match."""
    ua, ub = (struct.unpack("<I", socket.inet_aton(ip))[0] for ip in (a, b))
    probes = ",".join(f"tracepoint:{tp}" for tp in TRACEPOINTS)
    return (f"BEGIN {{ printf(\"ready\\n\"); }}\n{probes}\n{{\n"
            f"  $skb = (struct sk_buff *)args->skbaddr;\n"
            f"  $ip = (struct iphdr *)($skb->head + $skb->network_header);\n"
            f"  if (($ip->saddr == {ua} && $ip->daddr == {ub}) ||"
            f" ($ip->saddr == {ub} && $ip->daddr == {ua})) {{ @hits[probe] = count(); }}\n}}\n")


class Bpftrace:
    """bpftrace running the peer script; `ready` is the time from launch to its BEGIN
    line (BEGIN runs once every probe is attached). A loaded machine sometimes makes one
    start fail: up to 3 tries, the last error said."""

    def __init__(self, a: str, b: str) -> None:
        import tempfile
        why = ""
        for _ in range(3):
            t0 = time.monotonic()
            self.err = tempfile.TemporaryFile(mode="w+")
            self.proc = subprocess.Popen(["bpftrace", "-B", "line", "-e", bpftrace_script(a, b)],
                                         stdout=subprocess.PIPE, stderr=self.err, text=True)
            deadline = t0 + 30
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.proc.stdout], [], [],
                                            max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.strip() == "ready":
                    self.ready = time.monotonic() - t0
                    return
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.err.seek(0)
            why = " ".join(ln for ln in self.err.read().splitlines() if "RLIMIT" not in ln)
            self.err.close()
        raise RuntimeError(f"bpftrace did not attach: {why[-300:]}")

    def rss_mib(self) -> float:
        return peak_rss_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        if not self.err.closed:
            self.err.close()


class Tcpdump:
    """tcpdump capturing on c3's veth with the address filter, writing nowhere."""

    def __init__(self, ns: str, a: str, b: str) -> None:
        self.proc = netns.popen(ns, ["tcpdump", "-i", "eth0", "-n", "-w", "/dev/null",
                                     f"host {a} and host {b}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()             # "listening on eth0, ..."
        if "listening" not in line:
            self.stop()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stderr.close()


# -- 1, 2: start ------------------------------------------------------------------------------
def start_times(lab, runs: int = 5) -> None:
    c1, c2 = lab.sandboxes["c1"].ip(), lab.sandboxes["c2"].ip()
    ours, peer = [], []
    for i in range(runs):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            if which == 0:
                t0 = time.monotonic()
                proc = subprocess.run([NETTRACE, "path", LAB, "c1", "c2", "--json"],
                                      capture_output=True, text=True)
                ours.append(time.monotonic() - t0)
                assert proc.returncode == 0, proc.stderr
                assert json.loads(proc.stdout.splitlines()[0])["verdict"]["kind"] == "delivered"
            elif shutil_which("bpftrace") and tracefs_ready():
                bt = Bpftrace(c1, c2)
                peer.append(bt.ready)
                bt.stop()
    say(f"start: `nettrace path` one command median {median(ours):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in ours)}); bpftrace attaching the same 7 "
        f"tracepoints median {median(peer):.2f} s; target < 0.5 s"
        f"{' (missed)' if median(ours) >= 0.5 else ''}")


def further_paths(tr, n: int = 30) -> None:
    tr.path(InjectRequest("c1", "c2"))
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        (p,) = tr.path(InjectRequest("c1", "c2"))
        times.append(time.monotonic() - t0)
        assert p.verdict.kind == "delivered" and p.reply is not None
    say(f"further path, long-lived tracer: median {median(times) * 1000:.0f} ms, p95 "
        f"{p95(times) * 1000:.0f} ms over {n} (open took {tr.timings['open']:.2f} s, bcc "
        f"compile {tr.timings['compile']:.2f} s) target < 100 ms")


# -- 3: observer effect ----------------------------------------------------------------------
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
        server.stdout.close()
    return json.loads(out)


def tcp_gbps(lab) -> float:
    res = iperf(lab, ["-t", str(IPERF_S)])
    return res["end"]["sum_received"]["bits_per_second"] / 1e9


def paired(lab, start, stop) -> tuple[list[float], list[float], list[float]]:
    """PAIRS pairs of iperf3 runs, untraced and traced, the order alternating."""
    base, traced, ratios = [], [], []
    for i in range(PAIRS):
        got = {}
        for with_tracer in ((False, True) if i % 2 == 0 else (True, False)):
            if with_tracer:
                handle = start()
                try:
                    got[True] = tcp_gbps(lab)
                finally:
                    stop(handle)
            else:
                got[False] = tcp_gbps(lab)
        base.append(got[False])
        traced.append(got[True])
        ratios.append(got[True] / got[False])
    return base, traced, ratios


def report(what: str, base, traced, ratios, target: float | None) -> float:
    r = median(ratios)
    verdict = "" if target is None else f"; target >= {target}{' (missed)' if r < target else ''}"
    say(f"observer effect, {what}: iperf3 TCP median {median(base):.2f} Gbit/s untraced, "
        f"{median(traced):.2f} traced; median of {len(ratios)} paired ratios {r:.3f} "
        f"(pairs {', '.join(f'{x:.2f}' for x in ratios)}){verdict}")
    return r


def observer_effect(lab, tracer) -> None:
    """Probes attached as for a path c1 -> c2 (no netfilter probes in c3 and c4, which are
    bystanders of that path), kept attached for the whole iperf3 run."""
    c1, c2 = lab.sandboxes["c1"].ip(), lab.sandboxes["c2"].ip()
    bystanders = tracer._bystanders(lab.sandboxes["c1"].netns, lab.sandboxes["c2"].netns)
    fps = {"icmp": tracer.fingerprints.new("icmp", c1, c2),
           "tcp": tracer.fingerprints.new("tcp", c1, c2, 80)}
    results = {}

    def nettrace(fp):
        def start():
            tracer._attach(tracer.probes, bystanders)
            if fp is not None:
                tracer.probes.watch_keys(fp.keys(), fp.trace_id)
            return fp

        def stop(fp_):
            if fp_ is not None:
                tracer.probes.unwatch_keys(fp_.keys())
            tracer.probes.detach()
        return start, stop

    for what, fp, target in (("nettrace probes attached, nothing watched", None, 0.98),
                             ("nettrace watching an ICMP flow c1->c2", fps["icmp"], None),
                             ("nettrace watching a TCP flow c1->c2 (iperf3's protocol)",
                              fps["tcp"], 0.95)):
        results[what] = report(what, *paired(lab, *nettrace(fp)), target)
    tracefs = ensure_tracefs()
    if shutil_which("bpftrace") and tracefs:
        print(f"  ({tracefs})")
        results["bpftrace"] = report("peer: bpftrace on the same 7 tracepoints, address "
                                     "filter c1<->c2",
                                     *paired(lab, lambda: Bpftrace(c1, c2), Bpftrace.stop), None)
    else:
        print("  peer bpftrace: not measured (bpftrace or tracefs missing)")
    results["tcpdump"] = report("peer: tcpdump on c3's veth, filter host c1 and host c2",
                                *paired(lab, lambda: Tcpdump(lab.sandboxes["c3"].netns, c1, c2),
                                        Tcpdump.stop), None)
    if "bpftrace" in results:
        for what, r in results.items():
            if what.startswith("nettrace"):
                cmp = "at least as good as" if r >= results["bpftrace"] else "worse than"
                print(f"  {what}: {r:.3f}, {cmp} bpftrace's {results['bpftrace']:.3f}")


# -- 4: event capacity -----------------------------------------------------------------------
class _TestRun(ct.Structure):                   # bpf_attr.test (BPF_PROG_TEST_RUN)
    _fields_ = [("prog_fd", ct.c_uint32), ("retval", ct.c_uint32), ("data_size_in", ct.c_uint32),
                ("data_size_out", ct.c_uint32), ("data_in", ct.c_uint64),
                ("data_out", ct.c_uint64), ("repeat", ct.c_uint32), ("duration", ct.c_uint32),
                ("ctx_size_in", ct.c_uint32), ("ctx_size_out", ct.c_uint32),
                ("ctx_in", ct.c_uint64), ("ctx_out", ct.c_uint64), ("flags", ct.c_uint32),
                ("cpu", ct.c_uint32), ("batch_size", ct.c_uint32), ("_pad", ct.c_uint8 * 64)]


BPF_PROG_TEST_RUN = 10
KNEE_SPORT = 45000


class EventGenerator:
    """Offered load for the knee: the kernel runs nettrace's own tc program on a watched
    UDP packet with BPF_PROG_TEST_RUN (`repeat` runs per call, in a lab namespace), so each
    run emits one real event into the real ring buffer, paced to `rate` events/s. A packet
    stream cannot do this on 2 cores: iperf3 stopped at ~0.5 M events/s, long before the
    reader did."""

    def __init__(self, probes, ns: str, src: str, dst: str) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        frame = bytes(Ether() / IP(src=src, dst=dst, id=1) / UDP(sport=KNEE_SPORT, dport=5201)
                      / (b"x" * 32))
        self._buf = ct.create_string_buffer(frame, len(frame))
        self.fd, self.ns, self.produced = probes.prog_fds["tc_hop"], ns, 0

    def run(self, repeat: int) -> None:
        from nettrace.trace import links
        links._bpf(BPF_PROG_TEST_RUN, _TestRun(prog_fd=self.fd, data_size_in=len(self._buf),
                                               data_in=ct.addressof(self._buf), repeat=repeat),
                   "BPF_PROG_TEST_RUN")
        self.produced += repeat

    def offer(self, rate: float, seconds: float) -> None:
        """In this thread (the syscall runs without the GIL: the reader keeps its core)."""
        with netns.entered(self.ns):
            t0 = time.monotonic()
            while (now := time.monotonic() - t0) < seconds:
                due = int(now * rate) - self.produced
                if due > 0:
                    self.run(min(due, 50_000))
                else:
                    time.sleep(0.0005)


def knee_step(probes, reader, gen: EventGenerator, rate: float) -> tuple[float, int, int]:
    """One offered rate for KNEE_S seconds: (events/s produced, read, lost)."""
    import threading
    got = [0]
    lost0 = probes.events_lost
    gen.produced = 0
    thread = threading.Thread(target=gen.offer, args=(rate, KNEE_S))
    t0 = time.monotonic()
    thread.start()
    while thread.is_alive():
        got[0] += reader(10)
    took = time.monotonic() - t0
    while (n := reader(50)):
        got[0] += n
    return gen.produced / took, got[0], probes.events_lost - lost0


def find_knee(name: str, probes, reader, gen) -> tuple[float | None, float | None, list[str]]:
    """Rates doubled from 125,000 events/s until loss (at most 8 M), then one step between
    the last lossless and the first lossy rate."""
    lossless = lossy = None
    lines: list[str] = []

    def step(rate: float) -> None:
        nonlocal lossless, lossy
        produced, read, lost = knee_step(probes, reader, gen, rate)
        lines.append(f"  {name}: {rate:>11,.0f} events/s offered, {produced:>11,.0f} produced, "
                     f"{read:,} read, {lost:,} lost ({lost / max(read + lost, 1):.2%})")
        if lost:
            lossy = produced if lossy is None else min(lossy, produced)
        else:
            lossless = max(lossless or 0, produced)

    rate = 125_000
    while rate <= 8_000_000 and lossy is None:
        step(rate)
        rate *= 2
    if lossless and lossy:
        step((lossless * lossy) ** 0.5)
    return lossless, lossy, lines


def event_knee(lab) -> None:
    """nettrace's event path (ring buffer, batch reader, Event per record) against bcc's
    own ring_buffer_poll (one ctypes callback per record) on the same kind of build and the
    same generator."""
    from nettrace.trace.names import Names
    from nettrace.trace.probes import Probes
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    results = {}
    for name in ("nettrace", "bcc ring_buffer_poll"):
        probes = Probes(tc=True)
        probes.compile()
        try:
            probes.configure(live=False, netns_filter=True)
            probes.watch_namespaces(Names.from_lab(lab).places)
            probes.watch_keys([(2, 17, KNEE_SPORT)], 1234)
            count = [0]
            if name == "nettrace":
                def reader(timeout_ms: int) -> int:
                    return probes.poll(lambda ev: None, timeout_ms=timeout_ms)
            else:
                def on_record(ctx, data, size) -> int:
                    count[0] += 1
                    return 0
                probes.bpf[b"events"].open_ring_buffer(on_record)

                def reader(timeout_ms: int) -> int:
                    before = count[0]
                    probes.bpf.ring_buffer_poll(timeout_ms)
                    return count[0] - before
            gen = EventGenerator(probes, c1.netns, c1.ip(), c2.ip())
            lossless, lossy, lines = find_knee(name, probes, reader, gen)
        finally:
            probes.close()
        print("\n".join(lines))
        results[name] = (lossless, lossy)
    for name, (lossless, lossy) in results.items():
        knee = (f"highest lossless {lossless or 0:,.0f} events/s, first lossy "
                + (f"{lossy:,.0f} events/s" if lossy else "none up to 8 M events/s offered"))
        target = (f"; target >= 1,000,000 events/s lossless"
                  f"{' (missed)' if (lossless or 0) < 1e6 else ' (met)'}") if name == "nettrace" \
            else " (peer)"
        say(f"event capacity knee, {name}: {knee}; loss counted in the kernel and reported"
            f"{target}")


# -- 5: memory ---------------------------------------------------------------------------------
def memory(lab) -> None:
    proc = subprocess.Popen([NETTRACE, "path", LAB, "c1", "c2", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    one_shot = usage.ru_maxrss / 1024
    code = ("import resource, sys; from nettrace.topology.model import load_lab; "
            "from nettrace.trace import Tracer; lab = load_lab(sys.argv[1]);\n"
            "from nettrace.inject.request import InjectRequest\n"
            "with Tracer(lab) as tr:\n"
            "    for _ in range(200): tr.path(InjectRequest('c1', 'c2'))\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, LAB], capture_output=True, text=True)
    long_lived = int(out.stdout.strip().splitlines()[-1]) / 1024 if out.returncode == 0 else None
    peer = ""
    if shutil_which("bpftrace") and ensure_tracefs():
        bt = Bpftrace(lab.sandboxes["c1"].ip(), lab.sandboxes["c2"].ip())
        time.sleep(0.5)
        peer = f"; peer bpftrace on the same tracepoints {bt.rss_mib():.0f} MiB"
        bt.stop()
    lived = f"{long_lived:.0f} MiB" if long_lived else f"not measured ({out.stderr.strip()[-200:]})"
    say(f"peak RSS: `nettrace path` one command {one_shot:.0f} MiB; long-lived Tracer after "
        f"200 paths {lived}{peer}")


def tracefs_ready() -> bool:
    return os.path.exists("/sys/kernel/tracing/events")


def shutil_which(cmd: str) -> str | None:
    import shutil
    return shutil.which(cmd)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_trace needs root")
    from nettrace.trace import Tracer
    builder.down(LAB, quiet=True)
    tracefs = ensure_tracefs()       # bpftrace, the peer of three figures, needs it
    print(f"  ({tracefs or 'tracefs missing: bpftrace figures will not be measured'})")
    lab = lab_up()
    try:
        start_times(lab)
        memory(lab)
        with Tracer(lab) as tr:
            further_paths(tr)
        event_knee(lab)
        with Tracer(lab, nftrace=False) as tr:
            observer_effect(lab, tr)
    finally:
        builder.down(LAB, quiet=True)


if __name__ == "__main__":
    main()
