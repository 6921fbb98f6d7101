"""What every benchmark prints with its figures: the machine facts read when measured."""

from __future__ import annotations

import os
import statistics


def facts() -> str:
    """Cores and load average, read from the machine now (not constants)."""
    one, five, fifteen = os.getloadavg()
    return (f"[{os.cpu_count()} cores online, load average {one:.2f} {five:.2f} {fifteen:.2f}]")


def say(line: str) -> None:
    """A figure, with the machine facts of the moment it was measured."""
    print(f"{line} {facts()}", flush=True)


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def p95(xs) -> float:
    xs = sorted(xs)
    return xs[max(0, int(round(len(xs) * 0.95)) - 1)] if xs else float("nan")


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a running process (its peak resident set so far), MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ensure_tracefs() -> str | None:
    """bpftrace needs tracefs at /sys/kernel/tracing, which these machines do not mount
    at boot: mount it when missing and say so. None when it cannot be had."""
    if os.path.exists("/sys/kernel/tracing/events"):
        return "tracefs was already mounted at /sys/kernel/tracing"
    import subprocess
    proc = subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return "mounted tracefs at /sys/kernel/tracing for bpftrace (missing at boot)"
