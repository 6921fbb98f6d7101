"""Rule-level netfilter attribution with `nft monitor trace` (text: nft 1.0.6 has no JSON).

While a Tracer is open, each namespace holding firewall rules gets a table
`inet nettrace_trace_<pid>` with two chains hooked before everything else (prerouting
and output, priority -350). For each watched packet they get rules that set
`meta nftrace 1` on it and its answer; an `nft monitor trace` process in the namespace
then prints every rule the packet met, with its verdict. The table is removed on close
(also on Ctrl-C and exceptions), and stale tables of dead tracers are removed at start.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time

from nettrace.inject.fingerprint import Fingerprint
from nettrace.topology import netns
from nettrace.trace.assemble import TraceLine

TABLE_PREFIX = "nettrace_trace_"
_LINE = re.compile(r"^trace id (\w+) (\w+) (\S+) (\S+) (.*)$")


def _table(pid: int | None = None) -> str:
    return f"{TABLE_PREFIX}{pid or os.getpid()}"


class NfTrace:
    """Monitors and marking rules in `namespaces`; `watch()` per packet, `close()` at the end."""

    def __init__(self, namespaces: list[str]) -> None:
        self.namespaces = list(namespaces)
        self.table = _table()
        self.lines: list[TraceLine] = []
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._shells: dict[str, subprocess.Popen] = {}
        self.error: str | None = None

    def start(self) -> None:
        script = (f"add table inet {self.table}\n"
                  f"add chain inet {self.table} pre {{ type filter hook prerouting priority -350; }}\n"
                  f"add chain inet {self.table} out {{ type filter hook output priority -350; }}\n")
        for ns in self.namespaces:
            _remove_stale_tables(ns)
            try:
                netns.run(ns, ["nft", "-f", "-"], input=script)
            except Exception as exc:            # no nft, or nf_tables refused: degrade
                self.error = f"nft trace unavailable in {ns}: {exc}"
                continue
            proc = netns.popen(ns, ["nft", "-a", "monitor", "trace"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, bufsize=1)
            self._procs.append(proc)
            # one interactive nft per namespace for the per-packet rules: a process per
            # rule change would cost each path ~20 ms of CPU per namespace
            self._shells[ns] = netns.popen(ns, ["nft", "-i"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           bufsize=0)
            t = threading.Thread(target=self._read, args=(ns, proc), daemon=True,
                                 name=f"nft-monitor-{ns}")
            t.start()
            self._threads.append(t)
        time.sleep(0.05)         # let the monitors subscribe before the first packet

    def _read(self, ns: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            m = _LINE.match(line.strip())
            if not m or m.group(3).startswith(TABLE_PREFIX):
                continue
            tl = TraceLine(ns, m.group(1), m.group(2), m.group(3), m.group(4), m.group(5),
                           time.monotonic())
            with self._lock:
                self.lines.append(tl)

    # -- per packet -----------------------------------------------------------------------
    @staticmethod
    def rules_for(fp: Fingerprint) -> list[str]:
        """nft rule bodies that mark the packet and its answer."""
        if fp.family == 6 and fp.flow_label is not None:     # the inet table sees both
            rules = [f"ip6 flowlabel {fp.flow_label}"]
            if fp.proto == "icmp" and fp.icmp_id is not None:
                rules.append(f"icmpv6 type echo-reply icmpv6 id {fp.icmp_id}")
        elif fp.proto == "arp" or fp.ip_id is None:
            return []                                        # ARP, neighbour discovery
        else:
            rules = [f"ip id {fp.ip_id}"]
            if fp.proto == "icmp" and fp.icmp_id is not None:
                rules.append(f"icmp type echo-reply icmp id {fp.icmp_id}")
        if fp.proto in ("tcp", "udp") and fp.sport:
            rules.append(f"meta l4proto {fp.proto} th dport {fp.sport}")
        return rules

    def watch(self, fp: Fingerprint) -> None:
        rules = self.rules_for(fp)
        if not rules or not self._procs:
            return
        script = "".join(f"add rule inet {self.table} {chain} {r} meta nftrace set 1\n"
                         for chain in ("pre", "out") for r in rules)
        for ns in self._shells:
            self._send(ns, script)
        for ns in self._shells:           # the rules must be in before the packet leaves
            self._sync(ns)

    def unwatch(self) -> None:
        script = f"flush chain inet {self.table} pre\nflush chain inet {self.table} out\n"
        for ns in self._shells:           # no wait: the next sync orders after it
            self._send(ns, script)

    def _send(self, ns: str, script: str) -> None:
        shell = self._shells[ns]
        try:
            shell.stdin.write(script.encode())
        except (BrokenPipeError, OSError):
            self.error = f"nft -i in {ns} exited"

    def _sync(self, ns: str, timeout: float = 2.0) -> None:
        """Wait until the shell has run everything sent so far (it answers a listing)."""
        fd = self._shells[ns].stdout.fileno()
        self._send(ns, f"list chain inet {self.table} out\n")
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:   # raw reads: a buffered reader hides lines from select
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(fd, 65536)
            seen = (seen + chunk)[-64:]
            if not chunk or seen.endswith(b"\n}\n"):
                return
        self.error = f"nft -i in {ns} did not answer"

    def take(self, since: float) -> list[TraceLine]:
        """Trace lines received after `since` (time.monotonic())."""
        with self._lock:
            out = [tl for tl in self.lines if tl.ts >= since]
            self.lines = [tl for tl in self.lines if tl.ts >= since - 5]
        return out

    def close(self) -> None:
        for shell in self._shells.values():
            try:
                shell.stdin.close()
            except OSError:
                pass
        self._procs += list(self._shells.values())
        self._shells.clear()
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        for ns in self.namespaces:
            if netns.exists(ns):
                netns.run(ns, ["nft", "delete", "table", "inet", self.table], check=False)


def _remove_stale_tables(ns: str) -> None:
    """Tables of tracers whose process is gone (killed with -9)."""
    out = netns.run(ns, ["nft", "list", "tables"], check=False).stdout or ""
    for name in re.findall(rf"table inet ({TABLE_PREFIX}(\d+))", out):
        table, pid = name
        if not os.path.exists(f"/proc/{pid}"):
            netns.run(ns, ["nft", "delete", "table", "inet", table], check=False)
