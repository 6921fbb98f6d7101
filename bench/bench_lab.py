"""Lab up/down time for 2, 10, 50 and 100 containers on one bridge (docker0).

Peer, measured in the same run: the same objects (namespaces, bridge, veth pairs, addresses,
routes) built with `ip -batch` (one batch for the namespaces and links, one per namespace
for its addresses and routes), removed with one `ip -batch` of `netns del`. Several samples
per size, the order alternating. `down` is measured until the kernel has released the
namespaces, not until the command returns: before each down, every namespace gets a veth
to a witness namespace (not timed); a namespace is released when the kernel has destroyed
its devices, which removes the witness's peer.
Targets (issue 2): 10 containers up in < 0.3 s, 100 in < 2 s, down as fast.

Run as root: .venv/bin/python bench/bench_lab.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntb")   # never touch labs of a user
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import median, say  # noqa: E402
from nettrace.topology import builder, netns, spec  # noqa: E402

SIZES = (2, 10, 50, 100)
SAMPLES = 3
WITNESS = "ntb.witness"


def lab_spec(n: int):
    text = "containers:\n" + "".join(f"  - name: c{i}\n" for i in range(n))
    return spec.parse(text, default_name=f"bench{n}")


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
    subprocess.run(cmd, input="\n".join(lines) + "\n", text=True, check=True,
                   capture_output=True)


def witness(namespaces: list[str]) -> None:
    """One veth from each namespace to the witness namespace (not timed)."""
    ip_batch([f"link add w{i} netns {WITNESS} type veth peer name wit{i} netns {ns}"
              for i, ns in enumerate(namespaces)])


def released(t0: float, timeout: float = 30.0) -> float:
    """Seconds from t0 until the witness has no veth left (every namespace destroyed)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        out = subprocess.run(["ip", "-n", WITNESS, "-o", "link", "show", "type", "veth"],
                             capture_output=True, text=True).stdout
        if not out.strip():
            return time.perf_counter() - t0
        time.sleep(0.002)
    return float("nan")


def nettrace_up_down(n: int) -> tuple[float, float, float]:
    s = lab_spec(n)
    t0 = time.perf_counter()
    lab = builder.up(s)
    up = time.perf_counter() - t0
    witness(sorted({lab.hosts[h].netns for h in lab.hosts} |
                   {sb.netns for sb in lab.sandboxes.values()}))
    t1 = time.perf_counter()
    builder.down(lab.name)
    down = time.perf_counter() - t1
    return up, down, released(t1)


def ip_batch_up_down(n: int) -> tuple[float, float, float]:
    host = f"ntb.ipbase{n}.host"
    ctrs = [f"{host}.c{i}" for i in range(n)]
    t0 = time.perf_counter()
    ip_batch([f"netns add {ns}" for ns in [host] + ctrs]
             + [f"link add docker0 netns {host} type bridge"]
             + [f"link add veth{i:07x} netns {host} type veth peer name eth0 netns {ctr}"
                for i, ctr in enumerate(ctrs)])
    ip_batch(["addr add 172.17.0.1/16 dev docker0", "link set docker0 up", "link set lo up"]
             + [f"link set veth{i:07x} master docker0 up" for i in range(n)], host)
    for i, ctr in enumerate(ctrs):
        ip = f"172.17.{(i + 2) // 256}.{(i + 2) % 256}"
        ip_batch([f"addr add {ip}/16 dev eth0", "link set eth0 up", "link set lo up",
                  "route add default via 172.17.0.1"], ctr)
    up = time.perf_counter() - t0
    witness([host] + ctrs)
    t1 = time.perf_counter()
    ip_batch([f"netns del {ns}" for ns in [host] + ctrs])
    down = time.perf_counter() - t1
    return up, down, released(t1)


def main() -> int:
    if os.geteuid() != 0:
        print("bench_lab: needs root", file=sys.stderr)
        return 2
    subprocess.run(["ip", "netns", "del", WITNESS], capture_output=True)
    subprocess.run(["ip", "netns", "add", WITNESS], check=True)
    try:
        nettrace_up_down(2)                    # warm-up: imports, feature probes
        print(f"lab up/down on one bridge, median of {SAMPLES} samples per size, order "
              f"alternating (seconds; released = until the kernel destroyed the namespaces)")
        print(f"{'containers':>10} {'nettrace up':>12} {'down':>7} {'released':>9} "
              f"{'ip -batch up':>13} {'down':>7} {'released':>9} {'up ratio':>9} {'target up':>10}")
        for n in SIZES:
            ours, peer = [], []
            for i in range(SAMPLES):
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    (ours if which == 0 else peer).append(
                        nettrace_up_down(n) if which == 0 else ip_batch_up_down(n))
            o = [median([x[k] for x in ours]) for k in range(3)]
            p = [median([x[k] for x in peer]) for k in range(3)]
            target = {10: "< 0.3", 100: "< 2.0"}.get(n, "")
            say(f"{n:>10} {o[0]:>12.3f} {o[1]:>7.3f} {o[2]:>9.3f} {p[0]:>13.3f} {p[1]:>7.3f} "
                f"{p[2]:>9.3f} {p[0] / o[0]:>8.1f}x {target:>10}")
    finally:
        subprocess.run(["ip", "netns", "del", WITNESS], capture_output=True)
    leftovers = [ns for ns in netns.list_all() if ns.startswith("ntb.")]
    assert not leftovers, leftovers
    return 0


if __name__ == "__main__":
    sys.exit(main())
