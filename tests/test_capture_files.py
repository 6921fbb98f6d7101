"""Capture files: the readers against tshark, bad files, and the pcapng writer read back by tshark.

No kernel objects here: these tests build files byte by byte (or with scapy) and compare what
nettrace reads with what Debian's tshark reads from the same file.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcapng

from conftest import needs_tool
from nettrace.capture.frames import link_payload, parse_rewrites, apply_rewrite, to_packet
from nettrace.capture.golden import (FrameSignature, PathSignature, compare, load_golden,
                                     side_by_side)
from nettrace.capture.pcapng import PcapngWriter, is_l3
from nettrace.capture.reader import CaptureError, CaptureReader, read_frames
from nettrace.errors import NettraceError, SpecError
from nettrace.trace.model import Hop, NfRule, Path, Verdict

TSHARK = shutil.which("tshark")
needs_tshark = needs_tool("tshark")

ICMP_FRAME = bytes(Ether(src="02:42:ac:11:00:02", dst="02:42:ac:11:00:03")
                   / IP(src="172.17.0.2", dst="172.17.0.3", id=7) / ICMP(id=1, seq=1))
ICMP_L3 = ICMP_FRAME[14:]


def tshark_fields(path: str, *fields: str) -> list[list[str]]:
    argv = [TSHARK, "-r", path, "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def pcap_bytes(frames: list[bytes], linktype: int = 1, order: str = "<",
               magic: int = 0xA1B2C3D4) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(order + "IIII", 1700000000 + i, 5, len(f), len(f)) + f
    return out


def sll(payload: bytes, proto: int, pkttype: int = 0) -> bytes:
    return struct.pack("!HHH8sH", pkttype, 1, 6, bytes.fromhex("0242ac110002") + b"\0\0",
                       proto) + payload


def sll2(payload: bytes, proto: int, pkttype: int = 0) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, pkttype, 6,
                       bytes.fromhex("0242ac110002") + b"\0\0") + payload


# -- readers ------------------------------------------------------------------------------------
@needs_tshark
@pytest.mark.parametrize("linktype,frame,layer", [
    (1, ICMP_FRAME, "l3"),
    (101, ICMP_L3, "l3"),
    (228, ICMP_L3, "l3"),
    (113, sll(ICMP_L3, 0x0800), "l3"),
    (276, sll2(ICMP_L3, 0x0800), "l3"),
    (113, sll(bytes(ARP(psrc="172.17.0.2", pdst="172.17.0.3")), 0x0806, 1), "l2"),
    (276, sll2(bytes(ARP(psrc="172.17.0.2", pdst="172.17.0.3")), 0x0806, 1), "l2"),
], ids=["ethernet", "raw", "ipv4", "sll-ip", "sll2-ip", "sll-arp", "sll2-arp"])
def test_link_types_read_like_tshark(tmp_path, linktype, frame, layer):
    path = str(tmp_path / "x.pcap")
    with open(path, "wb") as f:
        f.write(pcap_bytes([frame, frame], linktype))
    frames = list(read_frames(path))
    assert [fr.number for fr in frames] == [1, 2]
    assert frames[0].data == frame and frames[0].linktype == linktype
    payload = link_payload(frames[0], path)
    assert payload.layer == layer
    want = tshark_fields(path, "frame.number", "ip.src", "arp.src.proto_ipv4")
    assert [row[0] for row in want] == ["1", "2"]
    pkt = to_packet(payload)
    if layer == "l3":
        assert pkt.src == want[0][1] == "172.17.0.2"
    else:
        assert pkt[ARP].psrc == want[0][2] == "172.17.0.2"
        assert pkt[Ether].dst == "ff:ff:ff:ff:ff:ff"        # broadcast pkttype


@needs_tshark
@pytest.mark.parametrize("order,magic", [("<", 0xA1B2C3D4), (">", 0xA1B2C3D4),
                                         ("<", 0xA1B23C4D)])
def test_pcap_byte_orders_and_resolutions(tmp_path, order, magic):
    path = str(tmp_path / "x.pcap")
    with open(path, "wb") as f:
        f.write(pcap_bytes([ICMP_FRAME] * 3, 1, order, magic))
    frames = list(read_frames(path))
    times = [r[1] for r in tshark_fields(path, "frame.number", "frame.time_epoch")]
    assert len(frames) == 3
    for fr, t in zip(frames, times):
        sec, frac = t.split(".")
        assert fr.ts_ns == int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])


@needs_tshark
def test_pcapng_from_scapy_with_two_interfaces(tmp_path):
    path = str(tmp_path / "x.pcapng")
    pkts = [Ether(ICMP_FRAME), Ether(ICMP_FRAME)]
    wrpcapng(path, pkts)
    frames = list(read_frames(path))
    assert len(frames) == len(tshark_fields(path, "frame.number")) == 2
    assert frames[1].data == ICMP_FRAME
    # our own writer: several IDBs, nanosecond resolution, comments
    ours = str(tmp_path / "ours.pcapng")
    with PcapngWriter(ours) as w:
        a, b = w.interface("c1/eth0"), w.interface("c2/eth0")
        w.write_packet(a, 1_700_000_000_123_456_789, ICMP_FRAME, "one")
        w.write_packet(b, 1_700_000_000_123_456_790, ICMP_FRAME, "two")
    frames = list(read_frames(ours))
    assert [(f.interface, f.ts_ns) for f in frames] == [(0, 1_700_000_000_123_456_789),
                                                        (1, 1_700_000_000_123_456_790)]
    rows = tshark_fields(ours, "frame.interface_name", "frame.time_epoch", "frame.comment")
    assert rows == [["c1/eth0", "1700000000.123456789", "one"],
                    ["c2/eth0", "1700000000.123456790", "two"]]


@needs_tshark
@pytest.mark.parametrize("linktype,frame", [(1, ICMP_FRAME), (276, sll2(ICMP_L3, 0x0800)),
                                            (101, ICMP_L3)], ids=["ethernet", "sll2", "raw"])
def test_pcapng_written_by_wireshark_tools(tmp_path, linktype, frame):
    """editcap (Wireshark's writer) converts a pcap to pcapng: nettrace reads the same frames."""
    src = _write(tmp_path, "src.pcap", pcap_bytes([frame, frame[:-1], frame], linktype))
    dst = str(tmp_path / "dst.pcapng")
    subprocess.run(["editcap", "-F", "pcapng", src, dst], check=True, capture_output=True)
    a, b = list(read_frames(src)), list(read_frames(dst))
    assert [(f.number, f.ts_ns, f.linktype, f.data) for f in a] == \
        [(f.number, f.ts_ns, f.linktype, f.data) for f in b]


def _be_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(">II", btype, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))


@needs_tshark
def test_big_endian_pcapng_with_two_sections(tmp_path):
    """A big-endian section (written by hand) followed by a little-endian one."""
    shb = _be_block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack(">HH", 9, 1) + b"\x06\0\0\0" + struct.pack(">HH", 0, 0)  # microseconds
    idb = _be_block(1, struct.pack(">HHI", 1, 0, 0) + tsresol)
    ts = 1_700_000_000_000_001
    epb = _be_block(6, struct.pack(">IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(ICMP_FRAME),
                                   len(ICMP_FRAME)) + ICMP_FRAME)
    little = _pcapng_bytes(tmp_path, frames=1)
    path = _write(tmp_path, "be.pcapng", shb + idb + epb + little)
    frames = list(read_frames(path))
    assert [(f.number, f.data) for f in frames] == [(1, ICMP_FRAME), (2, ICMP_FRAME)]
    assert frames[0].ts_ns == ts * 1000
    assert [r[0] for r in tshark_fields(path, "frame.time_epoch")] == \
        ["1700000000.000001000", "1000000000.000000000"]


def _write(tmp_path, name: str, data: bytes) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _error(path: str) -> CaptureError:
    with pytest.raises(CaptureError) as exc:
        for _ in read_frames(path):
            pass
    assert path in str(exc.value)
    assert isinstance(exc.value, NettraceError)
    return exc.value


def test_bad_pcap_files_name_file_and_frame(tmp_path):
    good = pcap_bytes([ICMP_FRAME] * 3)
    one = 16 + len(ICMP_FRAME)
    err = _error(_write(tmp_path, "cut.pcap", good[:-5]))
    assert err.frame == 3 and "truncated" in str(err) and "frame 3" in str(err)
    err = _error(_write(tmp_path, "cuthdr.pcap", good[:24 + one + 7]))
    assert err.frame == 2 and "record header" in str(err)
    err = _error(_write(tmp_path, "hdr.pcap", good[:10]))
    assert "file header" in str(err) and err.frame is None
    corrupt = bytearray(good)
    struct.pack_into("<I", corrupt, 24 + one + 8, 0x7FFFFFFF)
    err = _error(_write(tmp_path, "corrupt.pcap", bytes(corrupt)))
    assert err.frame == 2 and "corrupt" in str(err)
    err = _error(_write(tmp_path, "text.pcap", b"hello, this is not a capture\n"))
    assert "not a pcap or pcapng file" in str(err)
    err = _error(_write(tmp_path, "empty.pcap", b""))
    assert "empty" in str(err)
    err = _error(_write(tmp_path, "user0.pcap", pcap_bytes([ICMP_FRAME], linktype=147)))
    assert "link type 147 is not supported" in str(err)
    err = _error(str(tmp_path / "missing.pcap"))
    assert "no such file" in str(err)
    err = _error(str(tmp_path))
    assert "directory" in str(err)


def _pcapng_bytes(tmp_path, linktype: int = 1, frames: int = 3) -> bytes:
    path = str(tmp_path / "src.pcapng")
    with PcapngWriter(path) as w:
        iid = w.interface("c1/eth0")
        for i in range(frames):
            w.write_packet(iid, 10**18 + i, ICMP_FRAME)
    data = open(path, "rb").read()
    if linktype != 1:                       # patch the IDB's link type
        shb_len = struct.unpack("<I", data[4:8])[0]
        data = data[:shb_len + 8] + struct.pack("<H", linktype) + data[shb_len + 10:]
    return data


def test_bad_pcapng_files_name_file_and_frame(tmp_path):
    good = _pcapng_bytes(tmp_path)
    assert len(list(read_frames(_write(tmp_path, "ok.pcapng", good)))) == 3
    err = _error(_write(tmp_path, "cut.pcapng", good[:-9]))
    assert err.frame == 3 and "truncated frame data" in str(err)
    err = _error(_write(tmp_path, "lt.pcapng", _pcapng_bytes(tmp_path, linktype=147)))
    assert err.frame == 1 and "link type 147" in str(err)
    corrupt = bytearray(good)
    corrupt[-4:] = struct.pack("<I", 12345)          # trailing length of the last block
    err = _error(_write(tmp_path, "trail.pcapng", bytes(corrupt)))
    assert "corrupt block" in str(err) and "after frame 2" in str(err)
    # a packet that names an interface the file never described
    shb_len = struct.unpack("<I", good[4:8])[0]
    idb_len = struct.unpack("<I", good[shb_len + 4:shb_len + 8])[0]
    no_idb = good[:shb_len] + good[shb_len + idb_len:]
    err = _error(_write(tmp_path, "noidb.pcapng", no_idb))
    assert err.frame == 1 and "interface 0" in str(err)


def test_million_frames_memory_is_flat(tmp_path):
    path = str(tmp_path / "big.pcap")
    n = 1_000_000
    with open(path, "wb") as f:
        f.write(pcap_bytes([]))
        rec = struct.pack("<IIII", 1, 2, len(ICMP_FRAME), len(ICMP_FRAME)) + ICMP_FRAME
        for _ in range(n // 10_000):
            f.write(rec * 10_000)
    assert os.path.getsize(path) > 50_000_000
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                     # reset the peak RSS (VmHWM)
    before = _status_kib("VmRSS")
    count = 0
    with CaptureReader(path) as cap:
        for frame in cap:
            count += 1
    grew = _status_kib("VmHWM") - before
    assert count == n and frame.number == n and cap.position == cap.size
    # the file is 76 MB and a list of 1M frames would be ~200 MB: streaming stays far below
    assert grew < 16_000, f"reading {n} frames grew the peak RSS by {grew} KiB"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


# -- the pcapng writer, read back by tshark ---------------------------------------------------
def _path() -> Path:
    rule = NfRule("ip", "filter", "DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP", verdict="drop")
    hops = [
        Hop(ts_ns=1_000, point="tp:net_dev_queue", sandbox="c1", device="eth0", frame=ICMP_FRAME),
        Hop(ts_ns=2_000, point="tp:netif_receive_skb", host="host", device="veth1234567"),
        Hop(ts_ns=3_000, point="nf:FORWARD", host="host", hook="FORWARD", in_dev="docker0",
            out_dev="br-0123456789ab", verdict="drop", rule=rule, frame=ICMP_L3),
        Hop(ts_ns=4_000, point="drop", host="host", device="docker0",
            drop_reason="NETFILTER_DROP", location="nft_do_chain+0x3e8"),
    ]
    return Path(lab="bridge", src="c1", dst="c3", proto="icmp", hops=hops,
                verdict=Verdict("dropped", "host:docker0", "NETFILTER_DROP", rule, 2))


@needs_tshark
def test_pcapng_writer_one_interface_per_device_comment_per_hop(tmp_path):
    out = str(tmp_path / "paths.pcapng")
    path = _path()
    path.reply = None
    with PcapngWriter(out) as w:
        assert w.write_path(path) == 4
        w.write_path(Path(lab="bridge", src="c1", dst="c2", proto="icmp",
                          hops=[Hop(ts_ns=5, point="tp:net_dev_queue", sandbox="c1",
                                    device="eth0")]))
        assert w.skipped_hops == 1                        # a path without any bytes
    rows = tshark_fields(out, "frame.interface_id", "frame.interface_name", "ip.src", "ip.dst",
                         "icmp.type", "frame.comment", "frame.packet_flags_direction")
    assert len(rows) == 4
    assert [r[6] for r in rows] == ["0x00000002", "0x00000001", "", ""]   # out, in, unknown
    assert [r[1] for r in rows] == ["c1/eth0", "host/veth1234567", "host/docker0", "host/docker0"]
    assert [r[0] for r in rows] == ["0", "1", "2", "2"]     # one IDB per device, reused
    assert all(r[2:5] == ["172.17.0.2", "172.17.0.3", "8"] for r in rows)
    rows = [r[:6] for r in rows]
    comments = [r[5] for r in rows]
    assert comments[0].startswith("nettrace hop 1/4 request: tp:net_dev_queue")
    assert "last bytes seen on this path" in comments[1]
    assert "hook=FORWARD" in comments[2] and "verdict=drop" in comments[2]
    assert "rule=ip filter DOCKER-ISOLATION-STAGE-2: -o docker0 -j DROP |" in comments[2]
    assert "Ethernet header zeroed" in comments[2]
    assert "drop_reason=NETFILTER_DROP" in comments[3] and "at=nft_do_chain+0x3e8" in comments[3]
    assert "dropped at host:docker0 (NETFILTER_DROP)" in comments[3]
    # the interface table as tshark reports it
    info = subprocess.run(["capinfos", "-T", "-m", out], capture_output=True, text=True)
    assert info.returncode == 0


def test_is_l3_tells_ip_from_ethernet():
    assert is_l3(ICMP_L3)
    assert not is_l3(ICMP_FRAME)
    arp = bytes(Ether() / ARP())
    assert not is_l3(arp)
    # an Ethernet frame whose first bytes happen to look like an IPv4 version nibble
    assert not is_l3(bytes.fromhex("45aabbccddee") + ICMP_FRAME[6:])


# -- rewriting (no lab needed: a tiny Lab object) ------------------------------------------------
def _lab():
    from nettrace.topology.model import Endpoint, Lab, Sandbox
    lab = Lab(name="t")
    for name, ip, mac in (("c1", "172.17.0.2", "02:42:ac:11:00:02"),
                          ("c2", "172.17.0.3", "02:42:ac:11:00:03")):
        lab.sandboxes[name] = Sandbox(name, "host", f"ntc.t.{name}", [
            Endpoint(f"{name}-bridge", name, "bridge", "eth0", mac, ip, 16, 1500)])
    return lab


def test_rewrite_maps_ips_and_learns_macs():
    from nettrace.trace.endpoints import node_address
    lab = _lab()
    src = node_address(lab, "c1")
    rw = parse_rewrites(["auto", "10.0.0.9=c2"], lab, src)
    pkt = Ether(src="aa:aa:aa:aa:aa:01", dst="aa:aa:aa:aa:aa:09") / \
        IP(src="10.0.0.5", dst="10.0.0.9") / UDP(sport=1, dport=53)
    out = apply_rewrite(Ether(bytes(pkt)), rw)
    assert (out[IP].src, out[IP].dst) == ("172.17.0.2", "172.17.0.3")
    assert (out[Ether].src, out[Ether].dst) == ("02:42:ac:11:00:02", "02:42:ac:11:00:03")
    # checksums were recomputed: scapy's rebuilt packet has the same valid checksum
    assert IP(bytes(out[IP])).chksum == IP(bytes(IP(src="172.17.0.2", dst="172.17.0.3") /
                                                   UDP(sport=1, dport=53))).chksum
    arp = apply_rewrite(Ether(bytes(Ether(src="aa:aa:aa:aa:aa:01", dst="ff:ff:ff:ff:ff:ff")
                                     / ARP(hwsrc="aa:aa:aa:aa:aa:01", psrc="10.0.0.5",
                                           pdst="10.0.0.9"))), rw)
    assert (arp[ARP].psrc, arp[ARP].pdst, arp[ARP].hwsrc) == ("172.17.0.2", "172.17.0.3",
                                                               "02:42:ac:11:00:02")
    assert arp[Ether].dst == "ff:ff:ff:ff:ff:ff"


@pytest.mark.parametrize("spec,message", [
    ("10.0.0.9", "expected OLD=NEW"),
    ("nothing=c2", "neither an IP nor a MAC"),
    ("10.0.0.9=nosuch", "no container, client or host named 'nosuch'"),
    ("10.0.0.9=aa:bb:cc:dd:ee:ff", "cannot map a ipv4 address to a mac address"),
    ("10.0.0.9=c2@other", "no endpoint on network 'other'"),
])
def test_rewrite_errors_name_the_argument(spec, message):
    from nettrace.trace.endpoints import node_address
    lab = _lab()
    with pytest.raises(NettraceError) as exc:
        parse_rewrites([spec], lab, node_address(lab, "c1"))
    assert f"--rewrite {spec}" in str(exc.value) and message in str(exc.value)


# -- golden files ------------------------------------------------------------------------------
def test_golden_compare_and_side_by_side():
    exp = [FrameSignature(1, "", PathSignature("delivered at c2:eth0", ["c1:eth0 tp:a",
                                                                        "c2:eth0 tp:b"]))]
    same = [FrameSignature(1, "other text is informative", PathSignature(
        "delivered at c2:eth0", ["c1:eth0 tp:a", "c2:eth0 tp:b"]))]
    assert compare(exp, same) == []
    act = [FrameSignature(1, "", PathSignature("dropped at host:docker0", ["c1:eth0 tp:a"])),
           FrameSignature(2, "", PathSignature("lost", []))]
    diffs = compare(exp, act)
    assert [d.frame for d in diffs] == [1, 2]
    text = "\n".join(side_by_side(diffs[0], width=30))
    assert "expected" in text and "actual" in text
    assert "! verdict: delivered at c2:eth0" in text and "verdict: dropped at host:docker0" in text
    assert "  c1:eth0 tp:a" in text and "! " in text
    assert diffs[1].expected == ["(frame not in the golden file)"]


def test_golden_file_errors_name_file_and_field(tmp_path):
    def bad(text: str) -> str:
        p = tmp_path / "x.paths.yaml"
        p.write_text(text)
        with pytest.raises(SpecError) as exc:
            load_golden(str(p))
        assert str(p) in str(exc.value)
        return str(exc.value)
    assert "lab" in bad("capture: a.pcap\nfrom: c1\n")
    assert "layer" in bad("capture: a.pcap\nlab: bridge\nfrom: c1\nlayer: l7\n")
    assert "frames[0]" in bad("capture: a.pcap\nlab: bridge\nfrom: c1\nframes: [{x: 1}]\n")
    assert ":2" in bad("capture: a.pcap\nlab: b: c\n")
    assert "unknown key" in bad("capture: a.pcap\nlab: b\nfrom: c1\ncolour: red\n")
    assert "listen" in bad("capture: a.pcap\nlab: b\nfrom: c1\nlisten: [web sctp/80]\n")


def test_check_names_a_missing_capture(tmp_path):
    from nettrace.capture.check import run_case
    golden = tmp_path / "x.paths.yaml"
    golden.write_text("capture: nowhere.pcap\nlab: bridge\nfrom: c1\n")
    with pytest.raises(CaptureError) as exc:
        run_case(load_golden(str(golden)), live=True)
    assert str(tmp_path / "nowhere.pcap") in str(exc.value)
    assert f"named by {golden}: capture" in str(exc.value)
    with pytest.raises(SpecError, match="bundle: no recorded bundle"):   # offline needs one
        run_case(load_golden(str(golden)))
