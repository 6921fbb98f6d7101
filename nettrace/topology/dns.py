"""Docker's embedded DNS server (127.0.0.11) for containers on user-defined networks.

Docker runs a resolver inside each such container's namespace on 127.0.0.11:<random port>,
reached through the DNAT rules in `firewall.render_sandbox_dns`. nettrace runs one small
process per lab that opens a UDP and a TCP socket inside every such namespace (a socket
stays in the namespace it was created in) and answers A queries for the names of
containers sharing a user-defined network (`c2` and `c2.<network>`); anything else gets
REFUSED, as an engine without upstream servers would fail. Started by `builder.up`,
stopped by PID on `lab down`.

Usage (internal): python -m nettrace.topology.dns LAB
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

from nettrace.topology import netns
from nettrace.topology.firewall import DNS_IP, dns_ports
from nettrace.topology.model import Lab, load_lab
from nettrace.topology.sandbox_files import uses_embedded_dns

NOERROR, NXDOMAIN, REFUSED = 0, 3, 5
TYPE_A, CLASS_IN = 1, 1


def names_for(lab: Lab, sandbox_name: str) -> dict[str, str]:
    """What a container can resolve: peers on its user-defined networks."""
    me = lab.sandbox(sandbox_name)
    table: dict[str, str] = {}
    mine = {ep.network for ep in me.endpoints if ep.network not in ("bridge", "docker_gwbridge")}
    for sb in lab.sandboxes.values():
        for ep in sb.endpoints:
            if ep.network in mine:
                table.setdefault(sb.name.lower(), ep.ipv4)
                table[f"{sb.name}.{ep.network}".lower()] = ep.ipv4
    return table


def parse_query(data: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, qname, qtype, end of question) of a DNS query; ValueError if malformed."""
    if len(data) < 12:
        raise ValueError("short header")
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if qd != 1:
        raise ValueError("one question expected")
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            raise ValueError("truncated name")
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0 or pos + n > len(data):
            raise ValueError("bad label")
        labels.append(data[pos:pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(data):
        raise ValueError("truncated question")
    qtype, _qclass = struct.unpack("!HH", data[pos:pos + 4])
    return qid, flags, ".".join(labels).lower().rstrip("."), qtype, pos + 4


def answer(data: bytes, table: dict[str, str]) -> bytes | None:
    try:
        qid, flags, qname, qtype, end = parse_query(data)
    except ValueError:
        return None                                   # garbage is dropped, never fatal
    rd = flags & 0x0100
    ip = table.get(qname)
    if ip is None:
        rcode, answers = REFUSED, b""
    elif qtype != TYPE_A:
        rcode, answers = NOERROR, b""
    else:
        rcode = NOERROR
        answers = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, 600, 4) + \
            socket.inet_aton(ip)
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1,
                         1 if answers else 0, 0, 0)
    return header + data[12:end] + answers


def serve(lab_name: str) -> None:
    lab = load_lab(lab_name)
    udp: dict[socket.socket, dict] = {}
    tcp: dict[socket.socket, dict] = {}
    for sb in lab.sandboxes.values():
        if not uses_embedded_dns(sb):
            continue
        uport, tport = dns_ports(sb)
        table = names_for(lab, sb.name)
        with netns.entered(sb.netns):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((DNS_IP, uport))
            t = socket.socket()
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((DNS_IP, tport))
            t.listen(8)
        udp[u], tcp[t] = table, table
    print("ready", flush=True)
    state = lab.state_path()
    last_check = time.monotonic()
    while True:
        ready, _, _ = select.select(list(udp) + list(tcp), [], [], 2.0)
        for sock in ready:
            if sock in udp:
                data, peer = sock.recvfrom(4096)
                reply = answer(data, udp[sock])
                if reply:
                    sock.sendto(reply, peer)
            else:
                conn, _ = sock.accept()
                conn.settimeout(1.0)
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    reply = answer(conn.recv(size), tcp[sock])
                    if reply:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass
                conn.close()
        if time.monotonic() - last_check > 2.0:      # lab gone without us being told: exit
            last_check = time.monotonic()
            if not os.path.exists(state):
                return


def start(lab: Lab) -> int | None:
    """Start the lab's DNS process if a container needs it; returns its PID."""
    if not any(uses_embedded_dns(sb) for sb in lab.sandboxes.values()):
        return None
    from nettrace.topology.state import start_daemon
    return start_daemon(lab.name, "nettrace.topology.dns", "dns", "the embedded DNS server")


if __name__ == "__main__":
    serve(sys.argv[1])
