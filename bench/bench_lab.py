"""Lab up/down time for 2, 10, 50 and 100 containers on one bridge (docker0).

Baseline, measured in the same run: the same topology built the common scripted way, one
`ip` command per object (netns add, veth add, master/up, addr, up, route), and removed with
`ip netns del`. Targets (issue 2): 10 containers up in < 0.3 s, 100 in < 2 s, down as fast.
Reference, not measured here: Docker 20.10 on this kind of machine took 0.13 s for
`docker network create` and 2.6 s for 10 `docker run`.

Run as root: .venv/bin/python bench/bench_lab.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("NETTRACE_NS_PREFIX", "ntb")   # never touch labs of a user

from nettrace.topology import builder, netns, spec  # noqa: E402

SIZES = (2, 10, 50, 100)


def lab_spec(n: int):
    text = "containers:\n" + "".join(f"  - name: c{i}\n" for i in range(n))
    return spec.parse(text, default_name=f"bench{n}")


def nettrace_up_down(n: int) -> tuple[float, float]:
    s = lab_spec(n)
    t0 = time.perf_counter()
    lab = builder.up(s)
    t1 = time.perf_counter()
    builder.down(lab.name)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def ip_script_up_down(n: int) -> tuple[float, float]:
    host = f"ntb.ipbase{n}.host"
    cmds = [["ip", "netns", "add", host],
            ["ip", "-n", host, "link", "add", "docker0", "type", "bridge"],
            ["ip", "-n", host, "addr", "add", "172.17.0.1/16", "dev", "docker0"],
            ["ip", "-n", host, "link", "set", "docker0", "up"]]
    for i in range(n):
        ctr, ip = f"{host}.c{i}", f"172.17.{(i + 2) // 256}.{(i + 2) % 256}"
        cmds += [["ip", "netns", "add", ctr],
                 ["ip", "-n", host, "link", "add", f"veth{i:07x}", "type", "veth", "peer", "name",
                  "eth0", "netns", ctr],
                 ["ip", "-n", host, "link", "set", f"veth{i:07x}", "master", "docker0", "up"],
                 ["ip", "-n", ctr, "addr", "add", f"{ip}/16", "dev", "eth0"],
                 ["ip", "-n", ctr, "link", "set", "eth0", "up"],
                 ["ip", "-n", ctr, "route", "add", "default", "via", "172.17.0.1"]]
    t0 = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=True, capture_output=True)
    t1 = time.perf_counter()
    for ns in [host] + [f"{host}.c{i}" for i in range(n)]:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> int:
    if os.geteuid() != 0:
        print("bench_lab: needs root", file=sys.stderr)
        return 2
    nettrace_up_down(2)                        # warm-up: imports, feature probes
    print("lab up/down on one bridge (seconds; ratio = ip-script / nettrace, higher is better)")
    print(f"{'containers':>10} {'nettrace up':>12} {'down':>8} {'ip-script up':>13} {'down':>8} "
          f"{'up ratio':>9} {'target up':>10}")
    for n in SIZES:
        up, down = nettrace_up_down(n)
        base_up, base_down = ip_script_up_down(n)
        target = {10: "< 0.3", 100: "< 2.0"}.get(n, "")
        print(f"{n:>10} {up:>12.3f} {down:>8.3f} {base_up:>13.3f} {base_down:>8.3f} "
              f"{base_up / up:>8.1f}x {target:>10}")
    leftovers = [ns for ns in netns.list_all() if ns.startswith("ntb.")]
    assert not leftovers, leftovers
    return 0


if __name__ == "__main__":
    sys.exit(main())
