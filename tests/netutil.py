"""Small traffic helpers for tests: ping and one-shot servers inside lab namespaces."""

from __future__ import annotations

import subprocess
import sys
import time

from nettrace.topology import netns

SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1); print("ready", flush=True)
    c, peer = s.accept(); c.sendall(b"hello"); c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    data, peer = s.recvfrom(100); s.sendto(b"hello", peer)
print(peer[0], flush=True)
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=3); print(s.recv(100).decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(b"hi", (host, port)); print(s.recv(100).decode())
"""


def ping(ns: str, ip: str, *, wait: int = 1) -> bool:
    return netns.run(ns, ["ping", "-c1", f"-W{wait}", ip], check=False).returncode == 0


def ping_error(ns: str, ip: str) -> str:
    proc = netns.run(ns, ["ping", "-c1", "-W1", ip], check=False)
    return proc.stdout + proc.stderr


def serve_once(ns: str, proto: str, port: int) -> subprocess.Popen:
    """A server that answers one client and prints the peer address it saw."""
    proc = netns.popen(ns, [sys.executable, "-c", SERVER, proto, str(port)],
                       stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def connect(ns: str, proto: str, host: str, port: int) -> str:
    proc = netns.run(ns, [sys.executable, "-c", CLIENT, proto, host, str(port)], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"error: {proc.stderr.strip()[-200:]}"


def peer_seen(server: subprocess.Popen, timeout: float = 5) -> str:
    try:
        out, _ = server.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        return ""
    return out.strip().splitlines()[-1] if out.strip() else ""


def wait_until(pred, timeout: float = 3.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()

RESOLVE = r"""
import socket, struct, sys
name = sys.argv[1]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(q, ("127.0.0.11", 53))
r = s.recv(512)
rcode, an = r[3] & 0xF, struct.unpack("!H", r[6:8])[0]
print(socket.inet_ntoa(r[-4:]) if an else f"rcode={rcode}")
"""


def resolve(ns: str, name: str) -> str:
    """Ask the container's resolver (127.0.0.11:53, through Docker's DNAT) for an A record."""
    proc = netns.run(ns, [sys.executable, "-c", RESOLVE, name], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"error: {proc.stderr.strip()[-120:]}"
