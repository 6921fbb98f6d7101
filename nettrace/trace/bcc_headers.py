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


def ensure_bcc_headers(cache: str = CACHE_DIR) -> str:
    """Path of the generated header tree for the running kernel (built once per BTF)."""
    root = os.path.join(cache, btf_hash())
    vmlinux = os.path.join(root, "include/vmlinux.h")
    if os.path.exists(vmlinux):
        return root
    for rel, text in FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text.replace("{code}", str(_version_code())))
    tmp = f"{vmlinux}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            subprocess.run(["bpftool", "btf", "dump", "file", BTF, "format", "c"],
                           stdout=f, stderr=subprocess.PIPE, check=True)
    except FileNotFoundError:
        raise EnvironmentProblem("bpftool is not installed (apt-get install bpftool)") from None
    except subprocess.CalledProcessError as exc:
        raise EnvironmentProblem(f"bpftool btf dump failed: {exc.stderr.decode().strip()}") from None
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
