"""Recorded labs and paths for snapshots, the benchmark and `nettrace tui --sample`.

The labs in `samples/*.json` are what `nettrace lab up` built for the embedded labs
(namespace prefix `ntu`); the paths are trace bundles recorded on those labs
(`samples/*.bundle.json.gz`), assembled offline, so screens are shown and tested on real
kernel events with neither root nor eBPF.
"""

from __future__ import annotations

import copy
import functools
import json
import os

from nettrace.topology.model import Lab
from nettrace.trace.model import Path

SAMPLES = os.path.join(os.path.dirname(__file__), "samples")


def sample_lab(name: str) -> Lab:
    with open(os.path.join(SAMPLES, f"{name}.json")) as f:
        return Lab.from_dict(json.load(f))


@functools.lru_cache(maxsize=None)
def _bundle_paths(name: str) -> tuple[Path, ...]:
    from nettrace.trace import bundle
    return tuple(bundle.load(os.path.join(SAMPLES, f"{name}.bundle.json.gz")).paths())


def _recorded(name: str) -> list[Path]:
    """The paths of a trace bundle recorded from a real lab (`nettrace path ... --save`),
    fresh copies (callers may change them)."""
    return copy.deepcopy(list(_bundle_paths(name)))


def _shifted(path: Path, t0: int | None) -> Path:
    """`path` with its kernel times moved so its first hop is at `t0`."""
    if t0 is None or not path.hops:
        return path
    delta = t0 - path.hops[0].ts_ns
    for part in (path, path.reply) if path.reply else (path,):
        for hop in part.hops:
            hop.ts_ns += delta
    return path


def bridge_ping(lab: Lab, t0: int | None = None) -> Path:
    """c1 -> c2 on docker0, delivered, with its reply: `nettrace path bridge c1 c2 --save`
    on the embedded bridge lab (namespace prefix `ntu`, as samples/bridge.json)."""
    return _shifted(_recorded("bridge-ping")[0], t0)


def isolation_drop(lab: Lab, t0: int | None = None) -> Path:
    """c1 (front) -> c3 (back) on user-defined bridges, dropped by DOCKER-ISOLATION-STAGE-2:
    `nettrace path user-bridges c1 c3 --save` (prefix `ntu`, as samples/user-bridges.json)."""
    return _shifted(_recorded("isolation-drop")[0], t0)


def many_paths(lab: Lab, hops: int) -> list[Path]:
    """At least `hops` recorded hops: bridge pings, each with its reply (24 hops a pair)."""
    paths, total, i = [], 0, 0
    while total < hops:
        p = bridge_ping(lab, t0=1_000_000_000 + i * 1_000_000)
        paths.append(p)
        total += len(p.hops) + len(p.reply.hops)
        i += 1
    return paths
