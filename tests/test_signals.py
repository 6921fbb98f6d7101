"""Signals at several points of the real CLI (root, real kernel): nothing may remain.

Each case starts `nettrace` as a user would, waits until it is at the point under test
(half-way through `lab up`, tracing a packet in `path`, streaming in `trace`), sends
SIGINT, SIGTERM or SIGHUP (or SIGKILL, then runs `lab down`) and checks, against what the
process held while it ran: its BPF programs and links are unloaded, its nft trace tables
are gone, its child processes are gone, and (lab up) no namespace of the lab is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import NETTRACE, needs_root, our_namespaces, run_cli

pytestmark = [needs_root, pytest.mark.slow]

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
SIG_IDS = [s.name for s in SIGNALS]
_COUNTER = iter(range(1, 10_000))


def _name(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 1000}x{next(_COUNTER)}"


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([NETTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _bpf_held(pid: int) -> tuple[set[int], set[int]]:
    """(program ids, link ids) the process holds through its file descriptors."""
    progs, links = set(), set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return progs, links
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        link = re.search(r"^link_id:\s+(\d+)", text, re.M)
        prog = re.search(r"^prog_id:\s+(\d+)", text, re.M)
        if link:
            links.add(int(link.group(1)))
        elif prog:
            progs.add(int(prog.group(1)))
    return progs, links


def _bpf_ids(kind: str) -> set[int]:
    out = subprocess.run(["bpftool", kind, "show", "-j"], capture_output=True, text=True).stdout
    return {item["id"] for item in json.loads(out or "[]") if "id" in item}


def _trace_tables(namespaces: list[str], pid: int) -> list[str]:
    from nettrace.topology import netns
    found = []
    for ns in namespaces:
        try:
            out = netns.run(ns, ["nft", "list", "tables"], check=False).stdout or ""
        except Exception:                   # gone, or going (lab down runs meanwhile)
            continue
        found += re.findall(rf"nettrace_trace_{pid}\w*", out)
    return found


class Held:
    """What a running nettrace process holds: BPF programs and links, children, tables."""

    def __init__(self, proc: subprocess.Popen, namespaces: list[str]) -> None:
        self.pid = proc.pid
        self.progs, self.links = _bpf_held(proc.pid)
        self.children = {pid: _cmdline(pid) for pid in _children(proc.pid)}
        self.tables = _trace_tables(namespaces, proc.pid)
        self.namespaces = namespaces

    def assert_released(self, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while True:
            progs = self.progs & _bpf_ids("prog")
            links = self.links & _bpf_ids("link")
            kids = [p for p, cmd in self.children.items() if _cmdline(p) == cmd]
            tables = _trace_tables(self.namespaces, self.pid)
            if not (progs or links or kids or tables) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not progs, f"BPF programs still loaded: {progs}"
        assert not links, f"BPF links still attached: {links}"
        assert not kids, f"child processes survived: {[self.children[p] for p in kids]}"
        assert not tables, f"nft trace tables left: {tables}"


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_tracing(proc: subprocess.Popen, namespaces: list[str], *, nft: bool) -> Held:
    """Until the process has its probes loaded (and its nft trace table and children)."""
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"nettrace exited early ({proc.returncode}): "
                                 f"{proc.stderr.read()}")
        held = Held(proc, namespaces)
        if held.progs and held.links and (not nft or (held.tables and len(held.children) >= 2)):
            return held
        return None
    return _wait_for(ready, 30, "probes to be attached")


def _finish(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def _host_ns(lab) -> str:
    return next(iter(lab.hosts.values())).netns


# -- lab up, interrupted half-way ------------------------------------------------------------

def _big_lab(name: str, n: int = 24) -> str:
    ctrs = "\n".join(f"  - {{name: c{i}, networks: [front]}}" for i in range(n))
    return f"name: {name}\nnetworks:\n  - {{name: front, driver: bridge}}\ncontainers:\n{ctrs}\n"


def _lab_namespaces(name: str) -> list[str]:
    from nettrace.topology.model import NS_PREFIX
    return [ns for ns in our_namespaces() if ns.startswith(f"{NS_PREFIX}.{name}.")]


def _interrupt_lab_up(tmp_path, sig: int) -> str:
    """Start `lab up` of a 24-container lab; signal it once its networks exist."""
    name = _name("su")
    f = tmp_path / f"{name}.yaml"
    f.write_text(_big_lab(name))
    proc = _start("lab", "up", str(f))
    lines = []
    for line in proc.stderr:          # progress: "networks: ...", then "containers: N"
        lines.append(line)
        if "networks:" in line:
            break
    assert _lab_namespaces(name), f"no namespace yet at the networks step: {lines}"
    assert proc.poll() is None, "lab up finished before the signal"
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig, (proc.returncode, lines, rest)
        assert f"interrupted ({signal.Signals(sig).name}), cleaned up" in rest
    return name


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_lab_up_interrupted_half_way_leaves_nothing(tmp_path, sig):
    from nettrace.topology.model import STATE_DIR
    name = _interrupt_lab_up(tmp_path, sig)
    assert _lab_namespaces(name) == []
    assert not [f for f in os.listdir(STATE_DIR) if f.startswith(name + ".")] \
        if os.path.isdir(STATE_DIR) else True
    assert run_cli("lab", "down", name).returncode == 2      # nothing to take down


def test_lab_up_killed_half_way_then_lab_down_removes_it(tmp_path):
    name = _interrupt_lab_up(tmp_path, signal.SIGKILL)
    assert _lab_namespaces(name), "kill -9 cannot clean up: the namespaces should still be there"
    down = run_cli("lab", "down", name, check=True)
    assert "namespaces" in down.stdout
    assert _lab_namespaces(name) == []


# -- path, while it traces a packet ----------------------------------------------------------

def _path_to_nowhere(lab) -> subprocess.Popen:
    """A path that takes seconds: an address nobody answers (ARP gives up)."""
    return _start("path", lab.name, "c1", "172.17.0.250", "--count", "3", "--timeout", "5")


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_path_interrupted_while_tracing_cleans_up(make_lab, sig):
    lab = make_lab("bridge", name=_name("sp"))
    proc = _path_to_nowhere(lab)
    held = _wait_tracing(proc, lab.namespaces, nft=True)
    assert any("monitor trace" in c for c in held.children.values()), held.children
    time.sleep(0.3)                                  # inside tracer.path(): a packet in flight
    rc, err = _finish(proc, sig)
    assert rc == 128 + sig, err
    assert f"interrupted ({signal.Signals(sig).name}), cleaned up" in err
    assert "Traceback" not in err
    held.assert_released()


def test_path_killed_then_lab_down_leaves_no_namespace(make_lab):
    """kill -9: the children die with it (PR_SET_PDEATHSIG), the kernel drops the trace
    table with its owner, and `lab down` makes the namespaces actually go away."""
    from nettrace.topology import builder, netns
    lab = make_lab("bridge", name=_name("sk"))
    host_ns = _host_ns(lab)
    inodes = {netns.inode(ns) for ns in lab.namespaces}
    proc = _path_to_nowhere(lab)
    held = _wait_tracing(proc, lab.namespaces, nft=True)
    proc.kill()
    proc.communicate(timeout=10)
    held.assert_released()                           # without lab down: nothing of it left
    assert netns.exists(host_ns)
    builder.down(lab.name)
    assert _lab_namespaces(lab.name) == []
    in_lab = [p for p in os.listdir("/proc") if p.isdigit() and _netns_inode(p) in inodes]
    assert in_lab == [], f"processes still in the lab's namespaces: {in_lab}"


def _netns_inode(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def test_lab_down_ends_processes_living_in_the_lab(make_lab):
    """An orphan in a lab namespace (here a sleep started there, re-parented to init by a
    dying shell) would keep the namespace alive: lab down ends it, by PID, and only it."""
    from nettrace.topology import builder, netns
    lab = make_lab("bridge", name=_name("so"))
    host_ns = _host_ns(lab)
    out = netns.run(host_ns, ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"]).stdout
    orphan = int(out.strip())
    bystander = subprocess.Popen(["sleep", "300"])   # same command, root namespace
    try:
        assert _netns_inode(str(orphan)) == netns.inode(host_ns)
        report = builder.down(lab.name)
        assert report.processes >= 1
        _wait_for(lambda: _cmdline(orphan) != "sleep 300" or _zombie(orphan), 5, "the orphan to end")
        assert bystander.poll() is None, "a process outside the lab was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# -- trace, while it streams ---------------------------------------------------------------

@pytest.mark.parametrize("sig", SIGNALS + [signal.SIGKILL], ids=SIG_IDS + ["SIGKILL"])
def test_trace_stopped_by_signal_cleans_up(make_lab, sig):
    from nettrace.topology import netns
    lab = make_lab("bridge", name=_name("st"))
    proc = _start("trace", lab.name, "icmp", "--json")
    held = _wait_tracing(proc, lab.namespaces, nft=False)
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    netns.run(c1.netns, ["ping", "-c3", "-i0.05", "-W1", c2.ip()], check=False)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    held.assert_released()
    if sig == signal.SIGKILL:
        return
    assert proc.returncode == 0, err                 # the way to end `trace`: exit 0
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]["summary"]
    shown = [p for p in lines[:-1] if p["src"] == c1.ip() and p["dst"] == c2.ip()]
    assert len(shown) >= 3, out                      # the three echo requests, at least
    assert summary["packets_shown"] == len(lines) - 1
    assert summary["packets_dropped_by_nettrace"] == 0
    assert "packets shown" in err and "Traceback" not in err


# -- the other commands ----------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_record_and_replay_interrupted_clean_up(make_lab, tmp_path, sig):
    lab = make_lab("bridge", name=_name("sr"))
    out = tmp_path / "rec.pcapng"
    proc = _start("record", lab.name, "icmp", "-o", str(out))
    held = _wait_tracing(proc, lab.namespaces, nft=True)
    rc, err = _finish(proc, sig)
    assert rc == 0 and "wrote" in err and "interrupted" in err, err
    held.assert_released()
    assert out.stat().st_size > 0


def test_demo_interrupted_takes_its_lab_down(tmp_path):
    """`demo` under its own prefix and state dir: SIGTERM while tracing removes its lab."""
    env_prefix = f"ntd{os.getpid() % 10000}"
    env = {**os.environ, "NETTRACE_NS_PREFIX": env_prefix,
           "NETTRACE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([NETTRACE, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    for line in proc.stderr:
        if "attaching eBPF probes" in line:
            break
    time.sleep(0.3)
    rc, err = _finish(proc, signal.SIGTERM)
    assert rc == 143, err
    assert "taking the lab down" in err
    assert our_namespaces(env_prefix) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_replay_interrupted_cleans_up(make_lab, tmp_path, sig):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    lab = make_lab("bridge", name=_name("sy"))
    c1, c2 = lab.sandboxes["c1"], lab.sandboxes["c2"]
    capture = str(tmp_path / "many.pcap")             # long enough to be caught replaying
    wrpcap(capture, [Ether() / IP(src=c1.ip(), dst=c2.ip(), id=1000 + i) / ICMP(id=7, seq=i)
                     for i in range(1, 2001)])
    proc = _start("replay", lab.name, capture, "--from", "c1")
    held = _wait_tracing(proc, lab.namespaces, nft=True)
    rc, err = _finish(proc, sig)
    assert rc == 128 + sig, err
    assert "Traceback" not in err
    held.assert_released()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_check_live_interrupted_takes_its_case_lab_down(sig):
    """`check --live` brings the case's lab up: a signal as soon as the lab exists (its
    tracer starting) takes it down (SIGKILL cannot: then `lab down` removes it)."""
    from conftest import ROOT
    name = _name("sc")
    golden = os.path.join(ROOT, "captures", "bridge-ping.paths.yaml")
    proc = _start("check", "--live", golden, "--lab-name", name)
    namespaces = _wait_for(lambda: _lab_namespaces(name) if len(_lab_namespaces(name)) >= 3
                           else None, 60, "the case's lab")
    time.sleep(0.2)
    assert proc.poll() is None, "check finished before the signal"
    held = Held(proc, namespaces)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    held.assert_released()
    if sig == signal.SIGKILL:
        run_cli("lab", "down", name, check=True)
    else:
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err
    assert _lab_namespaces(name) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_tui_ended_by_signal_restores_the_terminal_and_cleans_up(labs, sig):
    """The TUI in a real terminal (a pty): a signal ends it like quitting does."""
    import pty
    import select
    lab = labs("bridge", as_name="sig-tui")
    pid, fd = pty.fork()
    if pid == 0:                                    # the child: nettrace tui on the pty
        os.environ["TERM"] = "xterm-256color"
        os.execv(NETTRACE, [NETTRACE, "tui", lab.name])
    output = bytearray()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    output.extend(os.read(fd, 65536))
                except OSError:
                    return

    class _P:                                       # what Held needs of a process
        def __init__(self, pid):
            self.pid = pid

        def poll(self):
            return None
    try:
        def ready():
            pump(0.2)
            held = Held(_P(pid), lab.namespaces)
            return held if held.progs and held.tables and len(held.children) >= 2 else None
        held = _wait_for(ready, 60, "the TUI's tracer")
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            pump(0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        assert status is not None and done, "the TUI did not exit"
        assert os.waitstatus_to_exitcode(status) == 128 + sig
        text = output.decode(errors="replace")
        assert f"interrupted ({signal.Signals(sig).name}), cleaned up" in text
        assert "\x1b[?1049l" in text                # the alternate screen was left
        held.assert_released()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_lab_exec_passes_the_signal_on_and_leaves_no_process(make_lab, sig):
    """`lab exec` gives its command the signal (it ends as it would, its exit code is
    nettrace's), and nothing of it stays in the container."""
    from nettrace.topology import netns
    lab = make_lab("bridge", name=_name("se"))
    c1 = lab.sandboxes["c1"]
    script = "trap 'echo got-signal; exit 7' INT TERM HUP; echo ready; while :; do sleep 0.05; done"
    proc = _start("lab", "exec", lab.name, "c1", "--", "sh", "-c", script)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert "got-signal" in out, (out, err)
    assert proc.returncode == 7, err
    assert netns.processes_in([c1.netns]) == []
