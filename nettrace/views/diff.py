"""`nettrace diff A B`: where two recordings of a path part ways.

Both sides are reduced to the stable one-line hop text of golden signatures (owner,
device alias, kernel point, hook, verdict, rule, drop reason, header changes: no times,
skb addresses, namespace names or hashed device names), so a lab and a live engine, two
engine profiles, or a lab before and after a change compare hop by hop. The first hop
whose text differs is the divergence; both sides are shown from there on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nettrace.trace.model import Path
from nettrace.views.names import Aliases
from nettrace.views.paths import hop_signature, verdict_signature

if TYPE_CHECKING:
    from nettrace.topology.model import Lab


@dataclass
class Divergence:
    """The first difference of path `index` (its request or its reply)."""

    index: int                      # which path of the bundles (0-based)
    leg: str                        # request | reply
    hop: int                        # first differing hop (0-based; == len when one side ends)
    title: str                      # "c1 -> c2 (icmp)"
    a: list[str] = field(default_factory=list)     # A's hops from `hop` on, then its verdict
    b: list[str] = field(default_factory=list)

    def lines(self, width: int = 72) -> list[str]:
        head = f"path {self.index + 1} {self.title}: the {self.leg} diverges at hop {self.hop + 1}"
        out = [head]
        for side, rows in (("A", self.a), ("B", self.b)):
            out.append(f"  {side}:")
            out += [f"    {r if len(r) <= width else r[:width - 1] + '…'}" for r in rows]
        return out

    def to_dict(self) -> dict:
        return {"path": self.index + 1, "leg": self.leg, "hop": self.hop + 1,
                "title": self.title, "a": self.a, "b": self.b}


def _leg(path: Path | None, lab, alias: Aliases) -> list[str]:
    if path is None:
        return ["(no path)"]
    return [f"{i + 1} {hop_signature(h, lab, alias)}" for i, h in enumerate(path.hops)] + \
        [f"verdict: {verdict_signature(path, alias, lab)}"]


def _first(a: list[str], b: list[str]) -> int | None:
    strip = lambda row: row.split(" ", 1)[1] if row[:1].isdigit() else row   # noqa: E731
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or strip(a[i]) != strip(b[i]):
            return i
    return None


def diverge(paths_a: list[Path], paths_b: list[Path], lab_a: "Lab | None" = None,
            lab_b: "Lab | None" = None) -> list[Divergence]:
    """The first divergence of every pair of paths (paired by position), and one for a
    path present on one side only."""
    alias_a, alias_b = Aliases(lab_a), Aliases(lab_b)
    out: list[Divergence] = []
    for i in range(max(len(paths_a), len(paths_b))):
        pa = paths_a[i] if i < len(paths_a) else None
        pb = paths_b[i] if i < len(paths_b) else None
        ref = pa or pb
        title = f"{ref.src} -> {ref.dst} ({ref.proto})"
        for leg in ("request", "reply"):
            la = _leg(pa if leg == "request" else (pa.reply if pa else None), lab_a, alias_a)
            lb = _leg(pb if leg == "request" else (pb.reply if pb else None), lab_b, alias_b)
            n = _first(la, lb)
            if n is not None:
                out.append(Divergence(i, leg, n, title, la[n:], lb[n:]))
                break
    return out
