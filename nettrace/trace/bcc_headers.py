"""Kernel headers for bcc on kernels that ship BTF but no headers.

bcc 0.26 compiles against a kernel source tree ($BCC_KERNEL_SOURCE). Machines like
ours have /sys/kernel/btf/vmlinux but no /lib/modules/$(uname -r)/build, so we build a
tiny fake tree whose <linux/types.h> pulls in a vmlinux.h dumped from BTF. It is keyed
by the BTF hash, so a kernel update gets a new tree, and offsets are exact.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess

from nettrace.errors import EnvironmentProblem

BTF = "/sys/kernel/btf/vmlinux"
CACHE_DIR = "/var/cache/nettrace/bcc"
_INCLUDE_TYPES = "#include <linux/types.h>\n"
FILES = {
    "include/linux/kconfig.h":
        "#define CONFIG_BPF_SYSCALL 1\n#define CONFIG_BPF_EVENTS 1\n"
        "/* -included before bcc's own uapi bpf.h: turn that copy into a no-op */\n"
        "#define _UAPI__LINUX_BPF_H__ 1\n",
    "include/linux/version.h":
        "#define LINUX_VERSION_CODE {code}\n"
        "#define KERNEL_VERSION(a,b,c) (((a)<<16)+((b)<<8)+((c)>255?255:(c)))\n",
    "include/linux/types.h":
        "#ifndef __NETTRACE_VMLINUX\n#define __NETTRACE_VMLINUX\n"
        "#define BPF_NO_PRESERVE_ACCESS_INDEX\n"
        "#include \"vmlinux.h\"\n#include \"nettrace_defs.h\"\n#endif\n",
    "include/uapi/linux/bpf.h": _INCLUDE_TYPES,
    "include/uapi/linux/if_packet.h": _INCLUDE_TYPES,
    "include/uapi/linux/if_ether.h": _INCLUDE_TYPES,
    "include/uapi/linux/ptrace.h": _INCLUDE_TYPES,
    "include/linux/bpf_common.h": "",
    "include/linux/log2.h": "",
    "arch/x86/include/asm/page.h": "#define PAGE_SHIFT 12\n#define PAGE_SIZE (1UL << PAGE_SHIFT)\n",
    "include/nettrace_defs.h":
        "#define NULL ((void *)0)\n"
        "#define ETH_P_IP 0x0800\n#define ETH_P_IPV6 0x86DD\n#define ETH_P_ARP 0x0806\n"
        "#define ETH_HLEN 14\n#define NF_DROP 0\n#define NF_ACCEPT 1\n"
        "#define offsetof(T, M) __builtin_offsetof(T, M)\n"
        "#ifndef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n"
        "#endif\n"
        "#define htons(x) ((__u16)__builtin_bswap16((__u16)(x)))\n#define ntohs(x) htons(x)\n"
        "#define htonl(x) ((__u32)__builtin_bswap32((__u32)(x)))\n#define ntohl(x) htonl(x)\n"
        "/* never define bpf_htons & co: bcc's helpers.h defines them as functions */\n",
}


def _version_code() -> int:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", platform.release())
    if not m:
        raise EnvironmentProblem(f"cannot parse kernel release {platform.release()!r}")
    a, b, c = (int(x) for x in m.groups())
    return (a << 16) + (b << 8) + min(c, 255)


def kernel_headers_present() -> bool:
    return os.path.exists(f"/lib/modules/{platform.release()}/build/include/linux/kconfig.h")


def btf_hash() -> str:
    try:
        with open(BTF, "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()[:16]
    except FileNotFoundError:
        raise EnvironmentProblem(
            f"this kernel has neither headers (/lib/modules/{platform.release()}/build) nor BTF "
            f"({BTF}); bcc cannot compile the probes") from None


BPF_DIR = os.path.join(os.path.dirname(__file__), "bpf")
LIBBCC = "/usr/lib/x86_64-linux-gnu/libbcc.so.0"


def _probe_sources() -> list[str]:
    return sorted(os.path.join(BPF_DIR, f) for f in os.listdir(BPF_DIR) if f.endswith((".c", ".h")))


def _sources_hash() -> str:
    h = hashlib.sha1()
    for path in _probe_sources():
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def full_vmlinux(cache: str = CACHE_DIR) -> str:
    """Path of `bpftool btf dump ... format c` for the running kernel (dumped once)."""
    path = os.path.join(cache, btf_hash(), "vmlinux_full.h")
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            subprocess.run(["bpftool", "btf", "dump", "file", BTF, "format", "c"],
                           stdout=f, stderr=subprocess.PIPE, check=True)
    except FileNotFoundError:
        raise EnvironmentProblem("bpftool is not installed (apt-get install bpftool)") from None
    except subprocess.CalledProcessError as exc:
        raise EnvironmentProblem(f"bpftool btf dump failed: {exc.stderr.decode().strip()}") from None
    os.rename(tmp, path)
    return path


def _used_words() -> set[str]:
    """Identifiers bcc's built-in helpers.h and our probe C may use (a superset is fine)."""
    words: set[str] = set()
    if os.path.exists(LIBBCC):
        with open(LIBBCC, "rb") as f:
            words |= {w.decode() for w in re.findall(rb"[A-Za-z_]\w{2,}", f.read())}
    for path in _probe_sources():
        with open(path) as f:
            words |= set(re.findall(r"[A-Za-z_]\w+", f.read()))
    return words


def ensure_bcc_headers(cache: str = CACHE_DIR) -> str:
    """Path of the generated header tree for the running kernel and our probe sources."""
    root = os.path.join(cache, f"{btf_hash()}-{_sources_hash()}")
    vmlinux = os.path.join(root, "include/vmlinux.h")
    if os.path.exists(vmlinux):
        return root
    for rel, text in FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text.replace("{code}", str(_version_code())))
    with open(full_vmlinux(cache)) as f:
        slim = slim_vmlinux(f.read(), _used_words())
    tmp = f"{vmlinux}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(slim)
    os.rename(tmp, vmlinux)      # written last: marks the tree complete
    return root


def configure_bcc() -> str | None:
    """Point bcc at kernel headers: the real ones when installed, else the BTF tree.

    Returns the generated tree, or None when plain bcc is used. Must run before
    bcc compiles anything (bcc reads BCC_KERNEL_SOURCE at compile time).
    """
    if kernel_headers_present():
        return None
    root = ensure_bcc_headers()
    os.environ["BCC_KERNEL_SOURCE"] = root
    return root


# -- a slim vmlinux.h ---------------------------------------------------------------------
# bcc parses its headers twice per compile; the full vmlinux.h (130k lines) alone costs
# ~1.8 s, more than the whole budget of `nettrace path`. The probes need a handful of
# kernel types, so we keep only those, their by-value dependencies, and enums whose
# constants bcc's helpers or our C use; pointed-to structs become forward declarations.

#: kernel types the probe C dereferences (their by-value closure is kept)
SLIM_ROOTS = ("struct sk_buff", "struct net_device", "struct net", "struct nf_hook_state",
              "struct bpf_nf_ctx", "struct __sk_buff", "struct bpf_raw_tracepoint_args",
              "struct pt_regs", "struct bpf_perf_event_data", "struct bpf_spin_lock",
              "struct bpf_timer", "struct bpf_sock", "struct bpf_tcp_sock",
              "struct xdp_md", "struct bpf_iter_meta", "struct task_struct",
              "struct bpf_stack_build_id", "struct sock_common")
_DEF = re.compile(r"^(struct|union|enum) (\w+) \{", re.M)
_TYPEDEF_FNPTR = re.compile(r"\(\*(\w+)\)")
_TYPEDEF_FN = re.compile(r"^typedef [^(]*?(\w+)\(")
_TYPEDEF = re.compile(r"(\w+)(?:\[\d*\])*;\s*$")
_TAGGED = re.compile(r"\b(struct|union|enum) (\w+)(\s*\*)?")
_WORD = re.compile(r"\b[A-Za-z_]\w*\b")


def _blocks(text: str) -> list[str]:
    body = text.split("#endif\n\n", 1)[1].rsplit("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX", 1)[0]
    return [b for b in body.split("\n\n") if b.strip()]


def slim_vmlinux(full: str, used_words: set[str]) -> str:  # noqa: C901 (one pass, kept together)
    """The subset of a bpftool vmlinux.h needed by code that uses `used_words`."""
    defs: dict[str, tuple[int, str]] = {}     # "struct x" / typedef name -> (order, block)
    enums_by_const: dict[str, str] = {}
    for i, block in enumerate(_blocks(full)):
        if block.startswith("typedef"):
            last = block.splitlines()[-1]
            m = (_TYPEDEF_FNPTR.search(block) if block.count("\n") == 0 else None) \
                or _TYPEDEF_FN.match(block) or _TYPEDEF.search(last)
            if m:
                defs[m.group(1)] = (i, block)
        elif (m := _DEF.match(block)):
            key = f"{m.group(1)} {m.group(2)}"
            defs[key] = (i, block)
            if m.group(1) == "enum":
                for const in re.findall(r"^\t(\w+) =", block, re.M):
                    enums_by_const[const] = key
        elif block.startswith("enum {"):
            defs[f"anon{i}"] = (i, block)
            for const in re.findall(r"^\t(\w+) =", block, re.M):
                enums_by_const[const] = f"anon{i}"
        # forward declarations ("struct x;") are regenerated below
    typedefs = {k for k in defs if " " not in k and not k.startswith("anon")}
    keep: set[str] = set()
    forward: set[str] = set()
    todo = [r for r in SLIM_ROOTS if r in defs]
    todo += [enums_by_const[w] for w in used_words if w in enums_by_const]
    todo += [w for w in used_words if w in typedefs]
    while todo:
        key = todo.pop()
        if key in keep or key not in defs:
            continue
        keep.add(key)
        block = defs[key][1]
        lines = block.splitlines()[1:] if not block.startswith("typedef") else [block]
        for line in lines:
            fnptr = "(*" in line
            for kind, name, star in _TAGGED.findall(line):
                tag = f"{kind} {name}"
                if kind == "enum" or not (star or fnptr):
                    todo.append(tag)
                else:
                    forward.add(tag)
            todo += [w for w in _WORD.findall(line) if w in typedefs]
    order = sorted(keep, key=lambda k: defs[k][0])
    fwd = sorted(forward)
    return ("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n"
            + "".join(f"{f};\n" for f in fwd) + "\n"
            + "\n\n".join(defs[k][1] for k in order) + "\n\n#endif\n")
