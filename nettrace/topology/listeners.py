"""Listening sockets for containers' `listen:` entries ("tcp/80", "udp/53").

A lab's containers run no programs, so without a socket every TCP SYN is answered with
a RST and every UDP datagram with an ICMP port unreachable. A `listen:` entry makes
delivery real: one small process per lab opens each socket inside its container's
namespace (a socket stays in the namespace it was created in), accepts and closes TCP
connections (the kernel completes the handshake by itself) and echoes UDP datagrams
back, so a UDP flow has a reply to trace. Started by `builder.up` after the lab is
saved, stopped by PID on `lab down` (pid file `<lab>.listen.pid` in the state dir), and
it exits by itself when the lab's state file disappears.

Usage (internal): python -m nettrace.topology.listeners LAB
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

from nettrace.topology import netns
from nettrace.topology.model import Lab, load_lab


def parse(entry: str) -> tuple[str, int]:
    """("tcp", 80) from "tcp/80" (validated by the lab spec)."""
    proto, _, port = entry.partition("/")
    return proto, int(port)


def open_sockets(lab: Lab) -> tuple[list[socket.socket], list[socket.socket]]:
    """(tcp, udp) listening sockets for every `listen:` entry of the lab."""
    tcp: list[socket.socket] = []
    udp: list[socket.socket] = []
    for sb in lab.sandboxes.values():
        for entry in sb.listen:
            proto, port = parse(entry)
            # a container with an IPv6 address listens on both families, as a server bound
            # to [::] does (IPv4 peers arrive as v4-mapped addresses)
            dual = any(ep.ipv6 for ep in sb.endpoints)
            with netns.entered(sb.netns):
                s = socket.socket(socket.AF_INET6 if dual else socket.AF_INET,
                                  socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if dual:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                s.bind(("::" if dual else "0.0.0.0", port))
            except OSError as exc:
                raise OSError(exc.errno, f"{sb.name} {entry}: {exc.strerror}") from None
            if proto == "tcp":
                s.listen(64)
                tcp.append(s)
            else:
                udp.append(s)
    return tcp, udp


def serve(lab_name: str) -> None:
    lab = load_lab(lab_name)
    try:
        tcp, udp = open_sockets(lab)
    except OSError as exc:
        print(f"error {exc.strerror}", flush=True)
        return
    print("ready", flush=True)
    state = lab.state_path()
    last_check = time.monotonic()
    while True:
        ready, _, _ = select.select(tcp + udp, [], [], 2.0)
        for sock in ready:
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    data, peer = sock.recvfrom(65535)
                    sock.sendto(data, peer)          # echo: the flow gets a reply
            except OSError:
                pass
        if time.monotonic() - last_check > 2.0:      # lab gone without us being told: exit
            last_check = time.monotonic()
            if not os.path.exists(state):
                return


def start(lab: Lab) -> int | None:
    """Start the lab's listener process if a container has `listen:` entries; its PID."""
    if not any(sb.listen for sb in lab.sandboxes.values()):
        return None
    from nettrace.topology.state import start_daemon
    return start_daemon(lab.name, "nettrace.topology.listeners", "listen", "the listeners")


if __name__ == "__main__":
    serve(sys.argv[1])
