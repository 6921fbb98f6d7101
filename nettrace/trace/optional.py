"""Optional probes (kprobes, fentry on bridge/netfilter/VXLAN functions): can this kernel
attach them? Detected once per kernel (BTF hash) and cached; never required.

kprobes need the `kprobe` perf PMU. fentry is tried for real: a two-instruction
BPF_PROG_TYPE_TRACING program is loaded against the function's BTF id; the kernel's
answer (and errno) is the reason we report.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import re
import subprocess

from nettrace.trace.links import SYS_BPF, _libc

FUNCTIONS = ("br_handle_frame", "br_forward", "nf_hook_slow", "ip_forward", "vxlan_rcv")
BPF_PROG_LOAD, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY = 5, 26, 24
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"


class _ProgLoadAttr(ct.Structure):      # bpf_attr for BPF_PROG_LOAD, up to attach_btf_id
    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32),
                ("prog_flags", ct.c_uint32), ("prog_name", ct.c_char * 16),
                ("prog_ifindex", ct.c_uint32), ("expected_attach_type", ct.c_uint32),
                ("prog_btf_fd", ct.c_uint32), ("func_info_rec_size", ct.c_uint32),
                ("func_info", ct.c_uint64), ("func_info_cnt", ct.c_uint32),
                ("line_info_rec_size", ct.c_uint32), ("line_info", ct.c_uint64),
                ("line_info_cnt", ct.c_uint32), ("attach_btf_id", ct.c_uint32),
                ("_pad", ct.c_uint8 * 64)]


def _btf_ids(names: tuple[str, ...]) -> dict[str, int]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"],
                         capture_output=True, text=True).stdout
    wanted = set(names)
    return {m.group(2): int(m.group(1))
            for m in re.finditer(r"^\[(\d+)\] FUNC '(\w+)'", out, re.M) if m.group(2) in wanted}


def _try_fentry(btf_id: int) -> str | None:
    """None when an fentry program loads for this function, else the kernel's refusal."""
    insns = (ct.c_uint8 * 16)(0xB7, 0, 0, 0, 0, 0, 0, 0,     # r0 = 0
                              0x95, 0, 0, 0, 0, 0, 0, 0)     # exit
    lic = ct.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=2, insns=ct.addressof(insns),
                         license=ct.addressof(lic), prog_name=b"nt_fentry_probe",
                         expected_attach_type=BPF_TRACE_FENTRY, attach_btf_id=btf_id)
    fd = _libc.syscall(SYS_BPF, BPF_PROG_LOAD, ct.byref(attr), ct.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return None
    err = ct.get_errno()
    return f"fentry refused by the kernel (BPF_PROG_LOAD: {os.strerror(err)})"


def detect(cache_dir: str) -> dict[str, str | None]:
    """function -> None (an optional probe could attach) or why not. Cached per kernel."""
    path = os.path.join(cache_dir, "optional-probes.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    kprobes = os.path.exists(KPROBE_PMU)
    ids = _btf_ids(FUNCTIONS)
    result: dict[str, str | None] = {}
    for fn in FUNCTIONS:
        why = None if kprobes else "no kprobes on this kernel (no kprobe PMU: CONFIG_KPROBES=n)"
        if why and fn in ids:
            fentry = _try_fentry(ids[fn])
            why = None if fentry is None else f"{why}; {fentry}"
        elif why:
            why += "; no BTF for it, so no fentry either"
        result[fn] = why
    os.makedirs(cache_dir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)
    return result
