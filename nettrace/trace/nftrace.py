"""Rule-level netfilter attribution with `nft monitor trace` (text: nft 1.0.6 has no JSON).

While a Tracer is open, each namespace holding firewall rules gets a table
`inet nettrace_trace_<pid>_<n>` (n counts the tracers of one process, so two Tracers in
one process never share a table) with two chains hooked before everything else (prerouting
and output, priority -350) whose rules set `meta nftrace 1` on packets whose IPv4 id, IPv6
flow label, echo id or destination port is in a named set; each watched packet adds its
values to those sets (any number of packets at once), and an `nft monitor trace` process
in the namespace then prints every rule the packet met, with its verdict.

The table is created by the tracer's interactive `nft -i` shell with `flags owner`: the
kernel deletes it when that shell's netlink socket closes. The shell and the monitor die
with nettrace (PR_SET_PDEATHSIG, see netns.popen), so even a `kill -9` leaves no table
and no process behind; close() removes them at once (also on signals and exceptions).
Tables of older versions' dead tracers (no owner flag) are removed at start.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import time
from itertools import count

from nettrace.inject.fingerprint import Fingerprint
from nettrace.topology import netns
from nettrace.trace.assemble import TraceLine

TABLE_PREFIX = "nettrace_trace_"
#: nft hook names -> the netfilter hook
NFT_HOOKS = {"prerouting": "PRE_ROUTING", "input": "LOCAL_IN", "forward": "FORWARD",
             "output": "LOCAL_OUT", "postrouting": "POST_ROUTING"}
_LINE = re.compile(r"^trace id (\w+) (\w+) (\S+) (\S+) (.*)$")


_serial = count(1)


def _table() -> str:
    """A table name of its own for each tracer: pid and a per-process counter."""
    return f"{TABLE_PREFIX}{os.getpid()}_{next(_serial)}"


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
        self._marks: dict[tuple[str, int], int] = {}     # (set, value) -> packets marked
        self._base_hooks: dict[str, set[tuple[str, str]]] = {}
        self.error: str | None = None

    def start(self) -> None:
        script = (f"add table inet {self.table} {{ flags owner; }}\n"
                  f"add chain inet {self.table} pre {{ type filter hook prerouting priority -350; }}\n"
                  f"add chain inet {self.table} out {{ type filter hook output priority -350; }}\n"
                  + _marking(self.table))
        for ns in self.namespaces:
            _remove_stale_tables(ns)
            # the monitor first: it subscribes while the table is made
            try:
                proc = netns.popen(ns, ["nft", "-a", "monitor", "trace"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, bufsize=1)
                # one interactive nft per namespace: it owns the table (gone when it exits)
                # and takes the per-packet rules (a process per rule change would cost each
                # path ~20 ms of CPU per namespace)
                shell = netns.popen(ns, ["nft", "-i"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
            except Exception as exc:            # no nft: degrade
                self.error = f"nft trace unavailable in {ns}: {exc}"
                continue
            self._procs.append(proc)
            self._shells[ns] = shell
            self._send(ns, script)
            if not self._sync(ns):              # nf_tables refused the table: degrade
                self.error = f"nft trace unavailable in {ns}: the trace table was refused"
                self._stop([self._shells.pop(ns), proc])
                self._procs.remove(proc)
                continue
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
    def elements_for(fp: Fingerprint) -> list[tuple[str, int]]:
        """(set, value) that mark the packet and its answer (the sets of `_marking`)."""
        if fp.family == 6 and fp.flow_label is not None:     # the inet table sees both
            out = [("flows", fp.flow_label)]
            if fp.proto == "icmp" and fp.icmp_id is not None:
                out.append(("echo6", fp.icmp_id))
        elif fp.proto == "arp" or fp.ip_id is None:
            return []                                        # ARP, neighbour discovery
        else:
            out = [("ids", fp.ip_id)]
            if fp.proto == "icmp" and fp.icmp_id is not None:
                out.append(("echo", fp.icmp_id))
        if fp.proto in ("tcp", "udp") and fp.sport:
            out.append((f"{fp.proto}_ports", fp.sport))
        return out

    def watch(self, *fps: Fingerprint) -> None:
        """Mark these packets (and their answers) from now on: their values join the
        marking sets, in every namespace, before this returns. Any number at once."""
        new = []
        for fp in fps:
            for elem in self.elements_for(fp):
                self._marks[elem] = self._marks.get(elem, 0) + 1
                if self._marks[elem] == 1:
                    new.append(elem)
        if not new or not self._shells:
            return
        script = _elements("add", self.table, new)
        for ns in self._shells:
            self._send(ns, script)
        for ns in self._shells:           # the marks must be in before the packets leave
            self._sync(ns)

    def unwatch(self, *fps: Fingerprint) -> None:
        """Stop marking these packets (none given: every packet)."""
        if not fps:
            gone, self._marks = list(self._marks), {}
        else:
            gone = []
            for fp in fps:
                for elem in self.elements_for(fp):
                    n = self._marks.get(elem, 0) - 1
                    if n > 0:
                        self._marks[elem] = n
                    elif elem in self._marks:
                        del self._marks[elem]
                        gone.append(elem)
        if not gone:
            return
        script = _elements("delete", self.table, gone)
        for ns in self._shells:           # no wait: the next sync orders after it
            self._send(ns, script)

    def base_hooks(self, ns: str, family: str = "ipv4") -> set[str]:
        """Netfilter hooks (PRE_ROUTING, FORWARD, ...) where `ns` has base chains that every
        packet of `family` ("ipv4"/"ipv6") runs, other than ours: a marked packet crossing
        one of them gets trace lines there. NAT chains do not count: only the first packet
        of a connection runs them."""
        if ns not in self._base_hooks:
            out = netns.run(ns, ["nft", "list", "chains"], check=False).stdout or ""
            hooks: set[tuple[str, str]] = set()
            table = ["", ""]
            for line in out.splitlines():
                words = line.replace(";", " ").split()
                if words[:1] == ["table"] and len(words) >= 3:
                    table = words[1:3]
                elif words[:1] == ["type"] and "hook" in words and words[1:2] != ["nat"] and \
                        not table[1].startswith(TABLE_PREFIX):
                    hook = NFT_HOOKS.get(words[words.index("hook") + 1])
                    fams = {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6")}
                    for fam in fams.get(table[0], ()):
                        if hook:
                            hooks.add((fam, hook))
            self._base_hooks[ns] = hooks
        return {hook for fam, hook in self._base_hooks[ns] if fam == family}

    def _send(self, ns: str, script: str) -> None:
        shell = self._shells[ns]
        try:
            shell.stdin.write(script.encode())
        except (BrokenPipeError, OSError):
            self.error = f"nft -i in {ns} exited"

    def _sync(self, ns: str, timeout: float = 2.0) -> bool:
        """Wait until the shell has run everything sent so far (it answers a listing);
        False (and `error` set) if it did not answer."""
        fd = self._shells[ns].stdout.fileno()
        self._send(ns, f"list chain inet {self.table} out\n")
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:   # raw reads: a buffered reader hides lines from select
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 65536)
            seen = (seen + chunk)[-64:]
            if not chunk:
                break
            if seen.endswith(b"\n}\n"):
                return True
        self.error = f"nft -i in {ns} did not answer"
        return False

    def drain(self) -> list[TraceLine]:
        """Every line received since the last drain (many packets in flight: the caller
        routes them by IPv4 id)."""
        with self._lock:
            out, self.lines = self.lines, []
        return out

    def take(self, since: float) -> list[TraceLine]:
        """Trace lines received after `since` (time.monotonic())."""
        with self._lock:
            out = [tl for tl in self.lines if tl.ts >= since]
            self.lines = [tl for tl in self.lines if tl.ts >= since - 5]
        return out

    def close(self) -> None:
        shells = list(self._shells.values())
        self._shells.clear()
        for shell in shells:
            try:
                shell.stdin.close()             # the shell exits: the kernel drops its table
            except OSError:
                pass
        self._stop(shells + self._procs)
        self._procs.clear()
        for ns in self.namespaces:             # a table the kernel kept (no owner support)
            if netns.exists(ns) and self.table in _tables(ns):
                netns.run(ns, ["nft", "delete", "table", "inet", self.table], check=False)

    @staticmethod
    def _stop(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stdin):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass


#: named sets of the values that mark a watched packet (IPv4 id, IPv6 flow label) or its
#: answer (echo id, our source port as destination port): adding or removing one packet
#: is one element, however many packets are in flight
_MARK_SETS = {"ids": ("ip id", "ip id @ids"),
              "flows": ("ip6 flowlabel", "ip6 flowlabel @flows"),
              "echo": ("icmp id", "icmp type echo-reply icmp id @echo"),
              "echo6": ("icmpv6 id", "icmpv6 type echo-reply icmpv6 id @echo6"),
              "tcp_ports": ("tcp dport", "tcp dport @tcp_ports"),
              "udp_ports": ("udp dport", "udp dport @udp_ports")}


def _marking(table: str) -> str:
    """The marking sets and, in both chains, one rule per set."""
    out = [f"add set inet {table} {name} {{ typeof {typeof}; }}\n"
           for name, (typeof, _match) in _MARK_SETS.items()]
    out += [f"add rule inet {table} {chain} {match} meta nftrace set 1\n"
            for chain in ("pre", "out") for _typeof, match in _MARK_SETS.values()]
    return "".join(out)


def _elements(verb: str, table: str, elems: list[tuple[str, int]]) -> str:
    by_set: dict[str, list[int]] = {}
    for name, value in elems:
        by_set.setdefault(name, []).append(value)
    return "".join(f"{verb} element inet {table} {name} {{ {', '.join(map(str, values))} }}\n"
                   for name, values in by_set.items())


def _tables(ns: str) -> list[str]:
    """Names of the inet tables in namespace `ns`."""
    out = netns.run(ns, ["nft", "list", "tables", "inet"], check=False).stdout or ""
    return re.findall(r"^table inet (\S+)$", out, re.M)


def _remove_stale_tables(ns: str) -> None:
    """Trace tables whose tracer process is gone (left by versions without the owner flag)."""
    for table in _tables(ns):
        m = re.fullmatch(rf"{TABLE_PREFIX}(\d+)(?:_\d+)?", table)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            netns.run(ns, ["nft", "delete", "table", "inet", table], check=False)
