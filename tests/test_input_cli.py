"""Bad arguments and bad lab contents from issue 11 (lists 5 and 6), through the real
`nettrace` command: exit 2, a message naming the argument or file:line:field, no traceback,
and nothing created (no namespace; for tracing commands, refused before "tracing")."""

from __future__ import annotations

import os

import pytest

from conftest import needs_root, our_namespaces, run_cli, run_cli_unprivileged


def refused(proc, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


# -- lab file contents: refused by `lab up` before the kernel is touched -----------------------

def _containers(n: int) -> str:
    return "containers:\n" + "".join(f"  - name: c{i}\n" for i in range(n))


LAB_CONTENTS = {
    "publish not a list": ("containers:\n  - name: c1\n    publish: 8080\n",
                           ":3: containers[0].publish: must be a list of published ports"),
    "subnet /32": ("networks:\n  - name: n\n    subnet: 10.9.0.0/32\ncontainers:\n"
                   "  - name: c1\n    networks: [n]\n",
                   ":3: networks[0].subnet: 10.9.0.0/32 is too small"),
    "subnet /31": ("networks:\n  - name: n\n    subnet: 10.9.0.0/31\ncontainers: []\n",
                   ":3: networks[0].subnet: 10.9.0.0/31 is too small"),
    "subnet x/32": ("networks:\n  - name: n\n    subnet: x/32\ncontainers: []\n",
                    ":3: networks[0].subnet: bad CIDR 'x/32'"),
    "bridge_name lo": ("networks:\n  - name: n\n    bridge_name: lo\ncontainers:\n"
                       "  - name: c1\n    networks: [n]\n",
                       ":3: networks[0].bridge_name: 'lo' is an interface the Docker host "
                       "already has"),
    "bridge_name docker0": ("networks:\n  - name: n\n    bridge_name: docker0\ncontainers: []\n",
                            ":3: networks[0].bridge_name: 'docker0' is an interface"),
    "same bridge_name twice": ("networks:\n  - name: a\n    bridge_name: br-same\n"
                               "  - name: b\n    bridge_name: br-same\ncontainers: []\n",
                               ":4: networks.b.bridge_name: bridge 'br-same' is already the "
                               "bridge of network 'a'"),
    "10,000 containers": (_containers(10_000), ":1: containers: 10,000 containers; a lab may "
                          "have at most 1,000"),
    "same host port twice": ("containers:\n  - name: c1\n    publish: ['8080:80']\n"
                             "  - name: c2\n    publish: ['8080:81/tcp']\n",
                             ":4: containers.c2.publish[0]: host port 8080/tcp is already "
                             "published by 'c1'"),
    "gateway is the network address": ("networks:\n  - name: n\n    subnet: 10.5.0.0/24\n"
                                       "    gateway: 10.5.0.0\ncontainers: []\n",
                                       ":4: networks[0].gateway: 10.5.0.0 is the network "
                                       "address of 10.5.0.0/24"),
    "gateway is the broadcast address": ("networks:\n  - name: n\n    subnet: 10.5.0.0/24\n"
                                         "    gateway: 10.5.0.255\ncontainers: []\n",
                                         "10.5.0.255 is the broadcast address"),
    "container ip is the broadcast address": (
        "networks:\n  - name: n\n    subnet: 10.5.0.0/24\ncontainers:\n  - name: c1\n"
        "    networks: [{name: n, ip: 10.5.0.255}]\n",
        ":6: containers[0].networks[0].ip: 10.5.0.255 is the broadcast address of 10.5.0.0/24"),
    "container ip is the gateway": (
        "networks:\n  - name: n\n    subnet: 10.5.0.0/24\n    gateway: 10.5.0.1\ncontainers:\n"
        "  - name: c1\n    networks: [{name: n, ip: 10.5.0.1}]\n",
        "10.5.0.1 is the gateway's address"),
    "same fixed ip twice": (
        "networks:\n  - name: n\n    subnet: 10.5.0.0/24\ncontainers:\n"
        "  - name: c1\n    networks: [{name: n, ip: 10.5.0.7}]\n"
        "  - name: c2\n    networks: [{name: n, ip: 10.5.0.7}]\n",
        "10.5.0.7 is already the address of 'c1'"),
    "subnet too small for its containers": (
        "networks:\n  - name: n\n    subnet: 10.5.0.0/30\ncontainers:\n"
        "  - {name: c1, networks: [n]}\n  - {name: c2, networks: [n]}\n",
        "2 containers joined, but 10.5.0.0/30 has room for 1"),
    "mtu 1500.5": ("networks:\n  - name: n\n    mtu: 1500.5\ncontainers: []\n",
                   ":3: networks[0].mtu: must be a whole number of bytes, not 1500.5"),
    "mtu .inf": ("networks:\n  - name: n\n    mtu: .inf\ncontainers: []\n",
                 ":3: networks[0].mtu: must be a whole number"),
    "no containers key": ("name: x\nnetworks: []\n",
                          ":1: containers: missing: a lab file lists its containers"),
}


@pytest.mark.parametrize("case", list(LAB_CONTENTS))
def test_bad_lab_contents_are_refused_before_the_kernel(tmp_path, case):
    text, words = LAB_CONTENTS[case]
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    before = our_namespaces()
    proc = run_cli("lab", "up", str(path), timeout=60)
    refused(proc, f"{path}{words}" if words.startswith(":") else f"{path}:", words)
    assert our_namespaces() == before


def test_empty_name_is_refused_not_replaced():
    before = our_namespaces()
    proc = run_cli("lab", "up", "bridge", "--name", "")
    refused(proc, "--name: invalid name ''")
    assert our_namespaces() == before


def test_state_dir_and_prefix_must_be_usable(tmp_path):
    not_dir = tmp_path / "state"
    not_dir.write_text("")
    for path, words in [(not_dir, f"NETTRACE_STATE_DIR={not_dir}: is not a directory"),
                        (not_dir / "sub", f"NETTRACE_STATE_DIR={not_dir}/sub: {not_dir} is not "
                                          f"a directory")]:
        before = our_namespaces()
        for args in (("lab", "ls"), ("lab", "up", "bridge", "--name", "sd")):
            refused(run_cli(*args, env={"NETTRACE_STATE_DIR": str(path)}), words)
        assert our_namespaces() == before
    refused(run_cli("lab", "ls", env={"NETTRACE_NS_PREFIX": "a.b"}), "NETTRACE_NS_PREFIX='a.b'")


@pytest.mark.parametrize("args", [("lab", "show", "bridge"),
                                  ("lab", "exec", "bridge", "c1", "--", "true")])
def test_non_root_show_and_exec_say_root_is_needed(args):
    proc = run_cli_unprivileged(*args)
    refused(proc, "needs root", "run it with sudo")


# -- arguments of tracing commands: refused before anything is traced ---------------------------

@pytest.fixture(scope="module")
def bridge_lab(labs):
    return labs("bridge", as_name="inp-bridge")


PATH_ARGS = {
    "timeout nan": (["c1", "c2", "--timeout", "nan"], "Invalid value for '--timeout': 'nan'"),
    "timeout inf": (["c1", "c2", "--timeout", "inf"], "Invalid value for '--timeout': 'inf'"),
    "dport with icmp": (["c1", "c2", "--dport", "80"], "icmp has no ports: --dport 80 needs "
                        "--proto tcp or udp"),
    "dport with arp": (["c1", "c2", "--proto", "arp", "--dport", "53"], "arp has no ports"),
    "port in DST with icmp": (["c1", "c2:80", "--proto", "icmp"], "icmp has no ports"),
    "same node": (["c1", "c1"], "SRC 'c1' and DST 'c1' are the same node"),
    "count 0": (["c1", "c2", "--count", "0"], "--count must be 1-1000 (not 0)"),
    "size 20": (["c1", "c2", "--size", "20"], "--size must be 28-65535 bytes (not 20)"),
    "proto sctp": (["c1", "c2", "--proto", "sctp"], "--proto must be icmp, udp, tcp, arp or nd"),
    "dport against DST port": (["c1", "c2:80", "--dport", "81"], "--dport 81 contradicts"),
    "count not a number": (["c1", "c2", "--count", "x"], "Invalid value for '--count'"),
    "own address": (["c1", "172.17.0.2"], "are the same node"),
    "unspecified": (["c1", "0.0.0.0"], "DST '0.0.0.0' is the unspecified address"),
    "loopback": (["c1", "127.0.0.1"], "DST '127.0.0.1' is a loopback address"),
    "broadcast": (["c1", "255.255.255.255"], "is the broadcast address"),
    "pcapng missing dir": (["c1", "c2", "--pcapng", "/nonexistent-nt/x.pcapng"],
                           "the directory /nonexistent-nt does not exist"),
    "pcapng /dev/full": (["c1", "c2", "--pcapng", "/dev/full"], "/dev/full: not a regular file"),
}


@needs_root
@pytest.mark.parametrize("case", list(PATH_ARGS))
def test_bad_path_arguments_are_refused_before_tracing(bridge_lab, case):
    args, words = PATH_ARGS[case]
    before = our_namespaces()
    proc = run_cli("path", bridge_lab.name, *args)
    refused(proc, words)
    assert "compiling" not in proc.stderr and "│" not in proc.stdout     # nothing traced
    assert our_namespaces() == before
    assert not os.path.exists("/nonexistent-nt")


@needs_root
@pytest.mark.parametrize("expr", ["and", "icmp and", "icmp and and tcp", "and icmp"])
def test_dangling_and_in_trace_expression_is_refused_before_tracing(bridge_lab, expr):
    proc = run_cli("trace", bridge_lab.name, *expr.split(), timeout=30)
    refused(proc, f"expression {expr!r}: 'and' must join two primitives")
    assert "tracing" not in proc.stderr


@needs_root
@pytest.mark.parametrize("args, words", [
    (["--from", "c1", "--timeout", "0"], "Invalid value for '--timeout': '0'"),
    (["--from", "c1", "--timeout", "-1"], "Invalid value for '--timeout': '-1'"),
    (["--from", "c1", "--timeout", "nan"], "Invalid value for '--timeout': 'nan'"),
    (["--from", "c1", "-o", "/nonexistent-nt/r.pcapng"], "/nonexistent-nt does not exist"),
    (["--from", "c1", "-o", "/dev/full"], "/dev/full: not a regular file"),
])
def test_bad_replay_arguments_are_refused_before_replaying(bridge_lab, args, words):
    from conftest import ROOT
    capture = os.path.join(ROOT, "captures", "bridge-ping.pcap")
    proc = run_cli("replay", bridge_lab.name, capture, *args)
    refused(proc, words)
    assert "frames" not in proc.stdout


@needs_root
@pytest.mark.parametrize("args, words", [
    (["-o", "/nonexistent-nt/r.pcapng"], "/nonexistent-nt does not exist"),
    (["-o", "/dev/full"], "/dev/full: not a regular file"),
    (["icmp and", "-o", "OUT"], "must join two primitives"),
    (["-o", "OUT", "-d", "nan"], "Invalid value for '-d' / '--duration'"),
    (["-o", "OUT", "--save", "/nonexistent-nt/b.json"], "/nonexistent-nt does not exist"),
])
def test_bad_record_arguments_are_refused_before_recording(bridge_lab, tmp_path, args, words):
    out = tmp_path / "never-written.pcapng"
    proc = run_cli("record", bridge_lab.name, *[str(out) if a == "OUT" else a for a in args],
                   timeout=30)
    refused(proc, words)
    assert "recording" not in proc.stderr
    assert not out.exists()


def test_seconds_type_and_expression_units():
    """The pure parts, without a lab: what the checks above rely on."""
    import click

    from nettrace.cli.common import Seconds
    from nettrace.errors import NettraceError
    from nettrace.trace import expr
    sec = Seconds(0.05, 60)
    assert sec.convert("2.5", None, None) == 2.5
    for bad in ("nan", "-nan", "inf", "-1", "0", "61", "x", "1e999"):
        with pytest.raises(click.BadParameter):
            sec.convert(bad, None, None)
    assert expr.parse("icmp and host 10.0.0.1").proto == 1
    for bad in ("and", "icmp and", "icmp and and tcp", "and icmp"):
        with pytest.raises(NettraceError, match="'and' must join two primitives"):
            expr.parse(bad)
