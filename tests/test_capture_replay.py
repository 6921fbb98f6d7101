"""Replay and record on real labs: the `nettrace` command, the kernel, eBPF, tshark.

Frames are written with nettrace's pcap writer from the live lab's addresses (or foreign
ones, rewritten on replay). Bad input must name the file and the frame, keep what was
traced before it, and leave no BPF program, namespace or lab behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from conftest import NETTRACE, needs_root, require_tool, run_cli
from nettrace.capture.pcapng import write_pcap

pytestmark = [needs_root, pytest.mark.slow]
TSHARK = shutil.which("tshark")


def ping_frame(src_ip: str, dst_ip: str, seq: int, src_mac: str = "02:42:ac:11:00:02",
               dst_mac: str = "02:42:ac:11:00:03") -> bytes:
    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=dst_ip, id=0x700 + seq)
                 / ICMP(id=0x77, seq=seq) / b"replay-test")


def pcap(tmp_path, name: str, frames: list[bytes]) -> str:
    path = str(tmp_path / name)
    write_pcap(path, ((1_767_225_600 * 10**9 + i * 1000, f) for i, f in enumerate(frames)))
    return path


def tshark_rows(path: str, *fields: str) -> list[list[str]]:
    argv = [TSHARK, "-r", path, "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [ln.split("\t") for ln in proc.stdout.splitlines()]


def _tracer_program_names() -> set[str]:
    """The BPF programs the tracer loads: the functions of its C file (names cut to 15)."""
    import re
    src = os.path.join(os.path.dirname(os.path.dirname(__file__)), "nettrace", "trace", "bpf",
                       "hops.c")
    names = {m[:15] for m in re.findall(r"^int (\w+)\(", open(src).read(), re.M)}
    assert names, f"no BPF program found in {src}"
    return names


TRACER_PROGS = _tracer_program_names()


def orphan_tracer_programs(wait: float = 3.0) -> set[int]:
    """nettrace BPF programs that no process holds (by a program or link fd): attached
    to the kernel with nobody to detach them. Programs of other live tracers (tests
    running beside this one) are held by their process and do not count."""
    deadline = time.monotonic() + wait
    while True:
        out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
        ours = {p["id"] for p in json.loads(out.stdout or "[]") if p.get("name") in TRACER_PROGS}
        orphans = ours - _held_prog_ids()
        if not orphans or time.monotonic() > deadline:     # freeing after exit is deferred
            return orphans
        time.sleep(0.2)


def _held_prog_ids() -> set[int]:
    held = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            held.add(int(line.split()[1]))
        except OSError:
            continue
    return held


@pytest.fixture(scope="module")
def bridge():
    """The bridge lab under a name of this module's own, down at the end."""
    from nettrace.topology import builder, spec
    lab = builder.up(spec.load("bridge", name="cap-bridge"))
    yield lab
    builder.down(lab.name, quiet=True)


def test_replay_json_summary_and_pcapng_checked_by_tshark(tmp_path, bridge):
    cap = pcap(tmp_path, "pings.pcap", [ping_frame("172.17.0.2", "172.17.0.3", i)
                                        for i in (1, 2, 3)])
    out = str(tmp_path / "replayed.pcapng")
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--json", "-o", out)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    frames, summary = lines[:-1], lines[-1]["summary"]
    assert [f["frame"] for f in frames] == [1, 2, 3]
    assert all(f["path"]["verdict"]["kind"] == "delivered" for f in frames)
    assert all(f["layer"] == "l3" for f in frames)
    assert summary["sent"] == 3 and summary["delivered"] == 3
    assert summary["dropped"] == 0 and summary["lost"] == 0 and summary["error"] is None
    hops = sum(len(f["path"]["hops"]) + len((f["path"]["reply"] or {}).get("hops", []))
               for f in frames)
    require_tool("tshark")          # a missing tshark is a skip (a failure in CI), not a pass
    rows = tshark_rows(out, "frame.interface_name", "ip.src", "ip.dst", "icmp.type",
                       "frame.comment")
    assert len(rows) == hops            # a packet per hop, request and reply
    names = {r[0] for r in rows}
    assert {"c1/eth0", "c2/eth0", "host/docker0"} <= names
    assert all(r[4].startswith("nettrace hop ") for r in rows)
    requests = [r for r in rows if r[3] == "8"]
    replies = [r for r in rows if r[3] == "0"]
    assert requests and replies
    assert all(r[1:3] == ["172.17.0.2", "172.17.0.3"] for r in requests)
    assert all(r[1:3] == ["172.17.0.3", "172.17.0.2"] for r in replies)
    assert any(" reply: " in r[4] for r in replies)


def _sll(l3: bytes) -> bytes:
    return struct.pack("!HHH8sH", 4, 1, 6, bytes.fromhex("02420a0a0a05") + b"\0\0", 0x0800) + l3


def _sll2(l3: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4, 6,
                       bytes.fromhex("02420a0a0a05") + b"\0\0") + l3


@pytest.mark.parametrize("kind", ["pcapng-raw-ip", "pcap-sll", "pcap-sll2"])
def test_replay_reads_every_link_type(tmp_path, bridge, kind):
    """Captures taken on `any` (cooked) or on a tunnel (raw IP) replay like Ethernet ones."""
    l3 = [ping_frame("172.17.0.2", "172.17.0.3", i)[14:] for i in (1, 2)]
    path = str(tmp_path / kind)
    if kind == "pcapng-raw-ip":
        from scapy.utils import wrpcapng
        wrpcapng(path, [IP(b) for b in l3])
    else:
        wrap, linktype = (_sll, 113) if kind == "pcap-sll" else (_sll2, 276)
        write_pcap(path, ((i, wrap(b)) for i, b in enumerate(l3)), linktype=linktype)
    proc = run_cli("replay", bridge.name, path, "--from", "c1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert (summary["sent"], summary["delivered"]) == (2, 2)


def test_replay_rewrites_a_foreign_capture(tmp_path, bridge):
    frames = [ping_frame("10.1.2.5", "10.1.2.9", 1, "52:54:00:00:00:05", "52:54:00:00:00:09")]
    cap = pcap(tmp_path, "foreign.pcap", frames)
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--rewrite", "auto",
                   "--rewrite", "10.1.2.9=c2", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert "172.17.0.2 > 172.17.0.3" in first["packet"]
    assert first["path"]["verdict"]["kind"] == "delivered"
    assert first["path"]["verdict"]["where"].startswith("c2")
    # a rewrite naming nothing in the lab is refused before anything is sent
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--rewrite", "10.1.2.9=c9")
    assert proc.returncode == 2
    assert "--rewrite 10.1.2.9=c9: no container, client or host named 'c9'" in proc.stderr


def test_progress_bar_only_on_a_terminal(bridge):
    """Under `script` (a pseudo-terminal) the bar is drawn on stderr; piped, it is not."""
    cap = os.path.join(os.path.dirname(os.path.dirname(__file__)), "captures", "bridge-ping.pcap")
    cmd = f"{NETTRACE} replay {bridge.name} {cap} --from c1 -q"
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                         timeout=120)
    assert tty.returncode == 0, tty.stdout
    assert f"replaying {cap}" in tty.stdout and "100%" in tty.stdout
    assert "sent      2" in tty.stdout
    piped = run_cli("replay", bridge.name, cap, "--from", "c1", "-q")
    assert piped.returncode == 0 and "replaying" not in piped.stdout + piped.stderr
    assert "frames/s once the tracer was up" in piped.stdout


def test_replay_text_summary_counts_drops_by_place(tmp_path, make_lab):
    lab = make_lab("user-bridges", name="cap-ub")
    c1 = lab.sandbox("c1").endpoints[0]
    c2, c3 = lab.sandbox("c2").ip(), lab.sandbox("c3").ip()
    cap = pcap(tmp_path, "mixed.pcap", [ping_frame(c1.ipv4, c2, 1), ping_frame(c1.ipv4, c3, 2),
                                        ping_frame(c1.ipv4, c3, 3)])
    proc = run_cli("replay", lab.name, cap, "--from", "c1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sent      3" in out and "delivered 1" in out and "dropped   2" in out
    assert "lost      0" in out
    drop_line = [ln for ln in out.splitlines() if ln.strip().startswith("2  at ")]
    # Docker 29 (default): another bridge's container address is dropped as a direct access
    assert drop_line and "NETFILTER_DROP" in drop_line[0] and "raw PREROUTING" in drop_line[0]
    assert "\x1b[" not in out and "%" not in proc.stderr        # no progress bar off a TTY
    fast = run_cli("replay", lab.name, cap, "--from", "c1", "--no-rules", "--json")
    assert fast.returncode == 0, fast.stderr
    summary = json.loads(fast.stdout.splitlines()[-1])["summary"]
    assert (summary["sent"], summary["delivered"], summary["dropped"]) == (3, 1, 2)
    assert all("NETFILTER_DROP" in d["reason"] for d in summary["dropped_by"])


def test_unroutable_frame_names_the_frame_and_keeps_earlier_ones(tmp_path, make_lab):
    lab = make_lab("internal", name="cap-int")
    c1, c2 = lab.sandbox("c1").ip(), lab.sandbox("c2").ip()
    client = lab.clients["client"].address
    cap = pcap(tmp_path, "escape.pcap", [ping_frame(c1, c2, 1), ping_frame(c1, client, 2),
                                         ping_frame(c1, c2, 3)])
    out = str(tmp_path / "partial.pcapng")
    proc = run_cli("replay", lab.name, cap, "--from", "c1", "--json", "-o", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{cap}: frame 2: {client} cannot be routed from c1 (no route" in proc.stderr
    assert f"--rewrite {client}=<container>" in proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [ln.get("frame") for ln in lines[:-1]] == [1]
    assert lines[-1]["summary"]["sent"] == 1 and "frame 2" in lines[-1]["summary"]["error"]
    require_tool("tshark")          # a missing tshark is a skip (a failure in CI), not a pass
    rows = tshark_rows(out, "frame.interface_name", "ip.dst")
    assert rows and all(r[1] in (c2, c1) for r in rows)     # frame 1 only, kept
    assert not orphan_tracer_programs(), "BPF programs left attached with no owner"


def test_frame_the_tracer_cannot_follow_is_named(tmp_path, bridge):
    """An IPv6 frame on an IPv4-only lab: at layer 3 c1 has no route for it; a frame of a
    protocol the tracer cannot follow (neither IP nor ARP), at layer 2. Either way the error
    names frame 2, after frame 1 was traced."""
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw
    v6 = bytes(Ether(src="02:42:ac:11:00:02", dst="02:42:ac:11:00:03")
               / IPv6(src="fd00::2", dst="fd00::3") / ICMP())
    cap = pcap(tmp_path, "v6.pcap", [ping_frame("172.17.0.2", "172.17.0.3", 1), v6])
    proc = run_cli("replay", bridge.name, cap, "--from", "c1")
    assert proc.returncode == 2
    assert f"{cap}: frame 2: fd00::3 cannot be routed from c1" in proc.stderr
    assert "sent      1" in proc.stderr and "delivered 1" in proc.stderr
    other = bytes(Ether(src="02:42:ac:11:00:02", dst="02:42:ac:11:00:03", type=0x88B5)
                  / Raw(b"local experimental ethertype"))
    cap = pcap(tmp_path, "other.pcap", [ping_frame("172.17.0.2", "172.17.0.3", 1), other])
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--layer", "l2")
    assert proc.returncode == 2
    assert f"{cap}: frame 2: cannot be traced: " in proc.stderr, proc.stderr
    assert "sent      1" in proc.stderr


def test_bad_files_fail_before_tracing(tmp_path, bridge):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n")
    proc = run_cli("replay", bridge.name, str(text), "--from", "c1")
    assert proc.returncode == 2
    assert f"nettrace: {text}: is not a pcap or pcapng file" in proc.stderr
    assert proc.stdout == ""
    good = pcap(tmp_path, "two.pcap", [ping_frame("172.17.0.2", "172.17.0.3", i) for i in (1, 2)])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(open(good, "rb").read()[:-10])
    proc = run_cli("replay", bridge.name, str(cut), "--from", "c1")
    assert proc.returncode == 2
    assert f"{cut}: frame 2: truncated" in proc.stderr
    assert "     1  " in proc.stdout and "delivered" in proc.stdout       # frame 1 was traced
    assert "sent      1" in proc.stderr
    proc = run_cli("replay", bridge.name, good, "--from", "nobody")
    assert proc.returncode == 2 and "no container, client or host named 'nobody'" in proc.stderr


def test_record_writes_paths_until_count(tmp_path, bridge):
    from nettrace.topology import netns
    out = str(tmp_path / "rec.pcapng")
    proc = _start_record(bridge.name, "icmp", "-o", out, "--count", "1", "--duration", "60")
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:   # until it has one path
            netns.run(bridge.sandbox("c1").netns, ["ping", "-c1", "-W1",
                                                   bridge.sandbox("c2").ip()], check=False)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "wrote 1 paths" in err
    require_tool("tshark")          # a missing tshark is a skip (a failure in CI), not a pass
    info = subprocess.run(["capinfos", "-I", out], capture_output=True, text=True).stdout
    rows = tshark_rows(out, "frame.interface_name", "icmp.type", "frame.comment")
    assert rows and all(r[2].startswith("nettrace hop ") for r in rows)
    assert {"c1/eth0"} <= {r[0] for r in rows}
    assert "Number of interfaces in file: " + str(len(bridge.interfaces)) in info


def test_record_refuses_a_bad_expression_before_anything(tmp_path, bridge):
    out = tmp_path / "never.pcapng"
    proc = run_cli("record", bridge.name, "bogus words", "-o", str(out))
    assert proc.returncode == 2
    assert "expression 'bogus words': unknown word 'bogus'" in proc.stderr
    assert "recording" not in proc.stderr and not out.exists()


def test_record_stops_on_ctrl_c_with_a_valid_file(tmp_path, bridge):
    out = str(tmp_path / "empty.pcapng")
    proc = _start_record(bridge.name, "-o", out)
    try:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "interrupted: wrote 0 paths" in err
    assert not orphan_tracer_programs(), "BPF programs left attached with no owner"
    require_tool("tshark")          # a missing tshark is a skip (a failure in CI), not a pass
    assert tshark_rows(out, "frame.number") == []


def _start_record(*args: str) -> subprocess.Popen:
    """`nettrace record ARGS`, returned once it says it is recording (its probes are up)."""
    proc = subprocess.Popen([NETTRACE, "record", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    line = ""
    while "recording" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"record exited {proc.returncode} before recording: "
                                 f"{proc.stderr.read()}")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """End a record process this test started, whatever state it is in."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_replay_save_writes_a_bundle_that_shows_the_same_paths(tmp_path, bridge):
    """`replay --save` writes a trace bundle like `path --save`: `show --json` rebuilds,
    without root, exactly the paths the replay printed, frame for frame (`show` adds the
    diagnosis, which replay does not print)."""
    cap = pcap(tmp_path, "pings.pcap", [ping_frame("172.17.0.2", "172.17.0.3", i)
                                        for i in (1, 2)])
    file = str(tmp_path / "replay.bundle.json.gz")
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--json", "--save", file)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote a bundle of 2 traces to {file}" in proc.stderr
    replayed = [json.loads(ln)["path"] for ln in proc.stdout.splitlines()[:-1]]
    assert len(replayed) == 2 and {p["verdict"]["kind"] for p in replayed} == {"delivered"}
    shown = run_cli("show", file, "--json", check=True)
    offline = [json.loads(ln) for ln in shown.stdout.splitlines()]
    assert all(p.pop("diagnosis")["cause"] == "ok" for p in offline)
    assert all(p.pop("diagnosis", None) is None for p in replayed)
    assert offline == replayed
    from nettrace.trace import bundle
    saved = bundle.load(file)
    assert saved.meta["replay"] == {"capture": cap, "from": "c1", "rewrite": [],
                                    "layer": "auto"}
    assert saved.the_lab().name == bridge.name


def test_replay_save_keeps_what_was_traced_before_a_bad_frame(tmp_path, bridge):
    """A frame that cannot be sent stops the replay (exit 2, named); the bundle still holds
    the frames traced before it. A bad --save target is refused before anything runs."""
    from scapy.layers.inet6 import IPv6
    v6 = bytes(Ether(src="02:42:ac:11:00:02", dst="02:42:ac:11:00:03")
               / IPv6(src="fd00::2", dst="fd00::3") / ICMP())
    cap = pcap(tmp_path, "v6.pcap", [ping_frame("172.17.0.2", "172.17.0.3", 1), v6])
    file = str(tmp_path / "partial.bundle.json")
    proc = run_cli("replay", bridge.name, cap, "--from", "c1", "--save", file)
    assert proc.returncode == 2 and "frame 2" in proc.stderr, proc.stdout + proc.stderr
    from nettrace.trace import bundle
    (path,) = bundle.load(file).paths()
    assert path.verdict.kind == "delivered"
    bad = run_cli("replay", bridge.name, cap, "--from", "c1", "--save",
                  "/nonexistent-nt/b.json")
    assert bad.returncode == 2 and "/nonexistent-nt does not exist" in bad.stderr
    assert "frames" not in bad.stdout
