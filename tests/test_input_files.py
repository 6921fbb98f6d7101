"""Hostile and mistaken input files (issue 11, lists 4-6): each is refused by the real
`nettrace` command with exit 2, a message naming the file (and line/field), no traceback,
and nothing created in the kernel. Lab files, golden files, saved paths and captures."""

from __future__ import annotations

import os
import time

import pytest

from conftest import our_namespaces, run_cli

BOMB = ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"     # "billion laughs": 9^8
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
        + "containers: []\n")

# name: (file bytes, expected words in stderr, line or None)
LAB_FILES = {
    "utf16": ("containers: [{name: c1}]\n".encode("utf-16"), "is UTF-16 text; a lab file must "
              "be UTF-8", None),
    "latin1": ("containers: []\nname: caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte "
               "0xe9", 2),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "is binary (it contains "
               "NUL bytes)", None),
    "deep nesting": (("a: " + "[" * 5000 + "]" * 5000 + "\ncontainers: []\n").encode(),
                     "nested more than 64 levels deep", 1),
    "alias bomb": (BOMB.encode(), "more than 100,000 values once aliases are expanded", None),
    "recursive alias": (b"a: &a [*a]\ncontainers: []\n", "nested more than 64 levels", 1),
    "bad int tag": (b"name: !!int x\ncontainers: []\n", "bad value 'x' for tag int", 1),
    "custom tag": (b"name: !foo x\ncontainers: []\n", "YAML tag !foo is not allowed", 1),
    "python tag": (b"name: !!python/object:os.system x\ncontainers: []\n",
                   "YAML tag !!python/object:os.system is not allowed", 1),
    "binary tag": (b"containers: !!binary aGVsbG8=\n", "YAML tag !!binary is not allowed", 1),
    "duplicate key": (b"name: a\ncontainers: []\nname: b\n", "duplicate key 'name' (first on "
                      "line 1)", 3),
    "duplicate nested key": (b"containers:\n  - name: c1\n    name: c2\n",
                             "duplicate key 'name' (first on line 2)", 3),
    "merge key": (b"d: &d {name: c1}\ncontainers:\n  - <<: *d\n", "merge keys (<<) are not "
                  "supported", 3),
    "too large": (b"containers: []\n" + b"# padding\n" * 110_000,
                  "a lab file may be at most 1,048,576 bytes (1 MiB)", None),
}


def _refused(proc, words: str, file: str, line: int | None = None) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert words in proc.stderr, proc.stderr
    where = f"{file}:{line}:" if line else f"{file}:"
    assert where in proc.stderr, proc.stderr


@pytest.mark.parametrize("case", list(LAB_FILES))
def test_bad_lab_file_is_refused_before_the_kernel(tmp_path, case):
    data, words, line = LAB_FILES[case]
    path = tmp_path / f"in-{case.replace(' ', '-')}.yaml"
    path.write_bytes(data)
    before = our_namespaces()
    start = time.monotonic()
    proc = run_cli("lab", "up", str(path), timeout=30)
    took = time.monotonic() - start
    _refused(proc, words, str(path), line)
    assert took < 15, f"refusing {case} took {took:.1f} s"
    assert our_namespaces() == before


def test_lab_file_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "lab.yaml"
    os.mkfifo(fifo)
    before = our_namespaces()
    proc = run_cli("lab", "up", str(fifo), timeout=20)        # a read would block forever
    _refused(proc, "is a FIFO (named pipe), not a lab file", str(fifo))
    assert our_namespaces() == before


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_lab_file_device_is_refused_without_reading(device):
    before = our_namespaces()
    proc = run_cli("lab", "up", device, timeout=20)           # /dev/zero grew memory forever
    _refused(proc, "is a character device, not a lab file", device)
    assert our_namespaces() == before


def test_lab_file_directory_and_missing(tmp_path):
    proc = run_cli("lab", "up", str(tmp_path) + "/")
    _refused(proc, "is a directory, not a lab file", str(tmp_path) + "/")
    proc = run_cli("lab", "up", str(tmp_path / "nope.yaml"))
    _refused(proc, "no such file", str(tmp_path / "nope.yaml"))


def test_utf8_bom_is_accepted_and_limits_leave_normal_files_alone(tmp_path):
    from nettrace.topology import spec
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfcontainers:\n  - name: c1\n")
    assert [c.name for c in spec.load(str(path)).containers] == ["c1"]
    anchors = tmp_path / "anchors.yaml"            # a few aliases are fine: the limit is on size
    anchors.write_text("x: &nets [bridge]\ncontainers:\n  - {name: c1, networks: *nets}\n"
                       "  - {name: c2, networks: *nets}\n")
    with pytest.raises(Exception, match="unknown field"):     # x is not a lab key, aliases work
        spec.load(str(anchors))
    for name in spec.embedded_labs():
        assert spec.load(name).name == name


# -- golden files, saved paths, captures --------------------------------------------------------

def test_golden_file_limits(tmp_path):
    from nettrace.capture.golden import load_golden
    from nettrace.errors import SpecError
    fifo = tmp_path / "f.paths.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="is a FIFO"):
        load_golden(str(fifo))
    for text, words in [(b"\xff\xfec\x00", "UTF-16"),
                        (b"capture: a.pcap\nlab: bridge\nfrom: c1\nfrom: c2\n", "duplicate key"),
                        (b"capture: !!binary YQ==\nlab: bridge\nfrom: c1\n", "!!binary"),
                        (b"capture: a.pcap\nlab: bridge\nfrom: c1\ntimeout: .nan\n", "timeout"),
                        (b"capture: a.pcap\nlab: bridge\nfrom: c1\ntimeout: .inf\n", "timeout"),
                        (BOMB.encode(), "aliases are expanded")]:
        p = tmp_path / "g.paths.yaml"
        p.write_bytes(text)
        with pytest.raises(SpecError, match=words.replace("!", "\\!")) as err:
            load_golden(str(p))
        assert str(p) in str(err.value)


def test_check_refuses_a_device_as_golden_file():
    proc = run_cli("check", "/dev/zero", timeout=20)
    _refused(proc, "is a character device, not a golden file", "/dev/zero")


def test_capture_reader_refuses_fifo_and_device(tmp_path):
    from nettrace.capture.reader import CaptureError, CaptureReader
    fifo = tmp_path / "c.pcap"
    os.mkfifo(fifo)
    for path, words in [(str(fifo), "is a FIFO"), ("/dev/zero", "is a character device")]:
        with pytest.raises(CaptureError, match=words) as err:
            CaptureReader(path)
        assert err.value.file == path


def test_saved_paths_file_limits(tmp_path):
    from nettrace.cli.tui import load_paths
    from nettrace.errors import NettraceError
    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    with pytest.raises(NettraceError, match="is a FIFO"):
        load_paths(str(fifo))
    with pytest.raises(NettraceError, match="is a character device"):
        load_paths("/dev/zero")
    binary = tmp_path / "b.json"
    binary.write_bytes(b"[\x00\x01]")
    with pytest.raises(NettraceError, match=f"{binary}: is binary"):
        load_paths(str(binary))
