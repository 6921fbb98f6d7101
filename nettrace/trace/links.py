"""BPF links bcc cannot make: netfilter hooks, tcx, raw tracepoints with a cookie.

All three go through the raw bpf(2) syscall. A link lives as long as its fd: closing
the fd detaches it, so a crash never leaves a probe behind. Netfilter and tcx links
bind to the namespace of the creating thread, which we switch with
`nettrace.topology.netns.entered` (per thread, never the process).
"""

from __future__ import annotations

import ctypes as ct
import os
import socket

from nettrace.topology import netns
from nettrace.trace.model import NF_HOOKS

_libc = ct.CDLL(None, use_errno=True)
SYS_BPF = 321                                  # x86_64
BPF_RAW_TRACEPOINT_OPEN, BPF_LINK_CREATE = 17, 28
BPF_NETFILTER, BPF_TCX_INGRESS, BPF_TCX_EGRESS = 45, 46, 47
NF_PRIO_FIRST, NF_PRIO_LAST = -2**31 + 1, 2**31 - 2   # INT_MIN / INT_MAX give ERANGE
PF_INET, PF_INET6 = 2, 10


class _NfLinkAttr(ct.Structure):                # bpf_attr.link_create, netfilter member
    _fields_ = [("prog_fd", ct.c_uint32), ("target_fd", ct.c_uint32),
                ("attach_type", ct.c_uint32), ("flags", ct.c_uint32),
                ("pf", ct.c_uint32), ("hooknum", ct.c_uint32),
                ("priority", ct.c_int32), ("nf_flags", ct.c_uint32), ("_pad", ct.c_uint8 * 128)]


class _TcxLinkAttr(ct.Structure):               # bpf_attr.link_create, tcx member
    _fields_ = [("prog_fd", ct.c_uint32), ("target_ifindex", ct.c_uint32),
                ("attach_type", ct.c_uint32), ("flags", ct.c_uint32),
                ("relative_fd", ct.c_uint32), ("_r", ct.c_uint32),
                ("expected_revision", ct.c_uint64), ("_pad", ct.c_uint8 * 96)]


class _RawTpAttr(ct.Structure):                 # bpf_attr.raw_tracepoint (cookie: 6.10+)
    _fields_ = [("name", ct.c_uint64), ("prog_fd", ct.c_uint32), ("_r", ct.c_uint32),
                ("cookie", ct.c_uint64), ("_pad", ct.c_uint8 * 104)]


def _bpf(cmd: int, attr: ct.Structure, what: str) -> int:
    fd = _libc.syscall(SYS_BPF, cmd, ct.byref(attr), ct.sizeof(attr))
    if fd < 0:
        err = ct.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return fd


def raw_tracepoint(prog_fd: int, name: str, cookie: int) -> int:
    """Attach a raw tracepoint program; the program reads `cookie` with
    bpf_get_attach_cookie, so one program can serve several tracepoints."""
    buf = ct.create_string_buffer(name.encode())
    return _bpf(BPF_RAW_TRACEPOINT_OPEN,
                _RawTpAttr(name=ct.addressof(buf), prog_fd=prog_fd, cookie=cookie),
                f"attach raw tracepoint {name}")


def netfilter(prog_fd: int, ns: str | None, pf: int, hook: int, priority: int) -> int:
    with netns.entered(ns):
        return _bpf(BPF_LINK_CREATE,
                    _NfLinkAttr(prog_fd=prog_fd, attach_type=BPF_NETFILTER, pf=pf, hooknum=hook,
                                priority=priority),
                    f"netfilter link pf={pf} hook={NF_HOOKS[hook]} in {ns or 'root namespace'}")


def tcx(prog_fd: int, ns: str | None, ifindex: int, ingress: bool) -> int:
    with netns.entered(ns):                     # ifindex is resolved in the thread's netns
        return _bpf(BPF_LINK_CREATE,
                    _TcxLinkAttr(prog_fd=prog_fd, target_ifindex=ifindex,
                                 attach_type=BPF_TCX_INGRESS if ingress else BPF_TCX_EGRESS),
                    f"tcx link ifindex {ifindex} in {ns or 'the current namespace'}")


def interfaces(ns: str | None) -> dict[int, str]:
    """ifindex -> name of every interface in namespace `ns`."""
    with netns.entered(ns):
        return dict(socket.if_nameindex())


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
