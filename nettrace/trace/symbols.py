"""Kernel numbers to words: drop reasons from BTF, code addresses from /proc/kallsyms.

Both are loaded only when a drop is actually seen (kallsyms has ~150k lines).
"""

from __future__ import annotations

import bisect
import functools
import re


@functools.lru_cache(maxsize=1)
def drop_reasons() -> dict[int, str]:
    """enum skb_drop_reason of the running kernel (it drifts between kernels)."""
    from nettrace.trace.bcc_headers import full_vmlinux
    with open(full_vmlinux()) as f:
        text = f.read()
    m = re.search(r"^enum skb_drop_reason \{\n(.*?)^\};", text, re.M | re.S)
    if not m:
        return {}
    return {int(v): k.removeprefix("SKB_DROP_REASON_")
            for k, v in re.findall(r"^\t(\w+) = (\d+),", m.group(1), re.M)}


def drop_reason(code: int) -> str:
    return drop_reasons().get(code, f"reason {code}")


@functools.lru_cache(maxsize=1)
def _kallsyms() -> tuple[list[int], list[str]]:
    addrs, names = [], []
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tTwW":
                addrs.append(int(addr, 16))
                names.append(name)
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def symbolize(addr: int) -> str | None:
    """`nft_do_chain+0x3e8` for a kernel text address (None when unknown)."""
    if not addr:
        return None
    addrs, names = _kallsyms()
    i = bisect.bisect_right(addrs, addr) - 1
    if i < 0 or addrs[i] == 0:
        return f"0x{addr:x}"
    return f"{names[i]}+0x{addr - addrs[i]:x}"
