"""Kernel numbers to words: drop reasons from BTF, code addresses via bcc's symbol cache.

Drop reason names come from the running kernel's `enum skb_drop_reason` (it drifts
between kernels), parsed once per BTF and cached as JSON beside the header tree.
Addresses are symbolized by bcc's C symbol cache over /proc/kallsyms (Python parsing
of kallsyms costs ~0.3 s; bcc's cache a few ms after bcc is loaded).
"""

from __future__ import annotations

import functools
import json
import os
import re


@functools.lru_cache(maxsize=1)
def drop_reasons() -> dict[int, str]:
    """enum skb_drop_reason of the running kernel."""
    from nettrace.trace.bcc_headers import full_vmlinux
    header = full_vmlinux()
    cache = os.path.join(os.path.dirname(header), "drop_reasons.json")
    try:
        with open(cache) as f:
            return {int(k): v for k, v in json.load(f).items()}
    except (OSError, ValueError):
        pass
    with open(header) as f:
        text = f.read()
    m = re.search(r"^enum skb_drop_reason \{\n(.*?)^\};", text, re.M | re.S)
    reasons = {} if not m else {
        int(v): k.removeprefix("SKB_DROP_REASON_")
        for k, v in re.findall(r"^\t(\w+) = (\d+),", m.group(1), re.M)}
    tmp = f"{cache}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(reasons, f)
    os.replace(tmp, cache)
    return reasons


def drop_reason(code: int) -> str:
    return drop_reasons().get(code, f"reason {code}")


@functools.lru_cache(maxsize=4096)
def symbolize(addr: int) -> str | None:
    """`nft_do_chain+0x3e8` for a kernel text address (None when unknown)."""
    if not addr:
        return None
    from bcc import BPF
    name = BPF.ksym(addr, show_offset=True)
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return None if text.startswith("[unknown]") else text


def warm() -> None:
    """Load both tables now, so the first path does not pay for them."""
    drop_reasons()
    symbolize(_any_kernel_text())


def _any_kernel_text() -> int:
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, _ = line.split(maxsplit=2)
            if kind in "tT" and int(addr, 16):
                return int(addr, 16)
    return 0
