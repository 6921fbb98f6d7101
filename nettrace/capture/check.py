"""Check a golden case: offline from its recorded trace bundle (default: no root, no lab,
well under a second), or live (`--live`): bring its lab up (unless it runs already),
replay, compare. Either way the paths are compared with the case's signatures (`frames:`)
and its hand-written expectations (`expect:`, which `--update` never rewrites). `--update`
replays live and rewrites the signatures and the bundle.

A fresh lab is what makes paths repeatable: neighbour caches, conntrack entries and
bridge FDBs start empty, so the first frame resolves ARP the same way on every run. A
lab that is already up is reused (faster, handy while debugging), which may differ on
such state; `check` says so when it happens.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from nettrace.capture.golden import (GOLDEN_SUFFIX, Aliases, FrameDifference, FrameSignature,
                                     GoldenCase, check_expectations, compare, frame_signature,
                                     save_golden)
from nettrace.capture.reader import CaptureError
from nettrace.errors import SpecError
from nettrace.capture.replay import FrameResult, ReplaySummary, replay
from nettrace.topology.model import Lab
from nettrace.trace.model import Path

if TYPE_CHECKING:
    from nettrace.trace.bundle import Bundle

Say = Callable[[str], None]


@dataclass
class CheckResult:
    case: GoldenCase
    actual: list[FrameSignature] = field(default_factory=list)
    differences: list[FrameDifference] = field(default_factory=list)
    summary: ReplaySummary | None = None
    reused_lab: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)    # unmet `expect:` entries
    live: bool = False

    @property
    def passed(self) -> bool:
        return not self.differences and not self.problems


def lab_ref(case: GoldenCase) -> str:
    """The lab a case names: a file next to the golden file, or an embedded lab name."""
    beside = os.path.join(os.path.dirname(os.path.abspath(case.file)), case.lab)
    return beside if os.path.exists(beside) else case.lab


@contextmanager
def case_lab(case: GoldenCase, say: Say | None = None,
             name: str | None = None) -> Iterator[tuple[Lab, bool]]:
    """(lab, reused): the case's lab (named `name`, default the spec's), brought up and
    taken down here unless already up."""
    from nettrace.topology import builder, spec
    from nettrace.topology.model import load_lab, running_labs
    lab_spec = spec.load(lab_ref(case), name=name)
    if case.engine:                # the engine profile the expectations were written for
        import dataclasses
        lab_spec.engine = dataclasses.replace(lab_spec.engine, **case.engine)
    if lab_spec.name in running_labs():
        running = load_lab(lab_spec.name)
        if say:
            say(f"using lab '{lab_spec.name}', which is already up (its neighbour and conntrack "
                f"state may make paths differ from a fresh lab)")
            if running.engine != lab_spec.engine:
                say(f"the running lab reproduces {running.engine}, the case expects "
                    f"{lab_spec.engine}")
        yield running, True
        return
    lab = builder.up(lab_spec)
    try:
        yield lab, False
    finally:
        builder.down(lab.name, quiet=True)


#: a server that only binds (and listens): the kernel completes TCP handshakes by itself
_SERVER = """
import socket, sys, time
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
if kind == socket.SOCK_STREAM:
    s.listen(16)
print("ready", flush=True)
time.sleep(3600)
"""


@contextmanager
def listeners(lab: Lab, specs: list[str], file: str = "<case>") -> Iterator[None]:
    """Servers for `listen:` entries ("web tcp/80"), stopped (by PID) when the case ends."""
    import subprocess
    import sys
    from nettrace.trace.endpoints import node_address
    from nettrace.topology import netns
    procs: list[subprocess.Popen] = []
    try:
        for spec in specs:
            node, _, proto_port = spec.partition(" ")
            proto, _, port = proto_port.partition("/")
            ns = node_address(lab, node).netns
            proc = netns.popen(ns, [sys.executable, "-c", _SERVER, proto, port],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            if proc.stdout.readline().strip() != "ready":
                raise SpecError(f"the server for '{spec}' did not start: "
                                f"{proc.stderr.read().strip()}", file=file, field="listen")
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def replay_case(case: GoldenCase, lab: Lab, tracer=None,
                on_frame: Callable[[FrameResult], None] | None = None, record: bool = False
                ) -> tuple[list[FrameSignature], ReplaySummary, "Bundle | None"]:
    """Replay the case's capture into `lab`; a frame that cannot be sent ends the list.
    `record`: also return a trace bundle of every trace, its `meta.frames` mapping each
    frame to its trace id (or to the error that stopped the replay)."""
    alias = Aliases(lab)
    summary = ReplaySummary(case.capture, lab.name, case.source)
    out: list[FrameSignature] = []
    own = tracer is None and record
    if own:
        from nettrace.trace import Tracer
        tracer = Tracer(lab).__enter__()
        tracer.records = []
    frames_meta: list[dict] = []
    try:
        frames = replay(lab, case.capture, case.source, rewrite=case.rewrite, layer=case.layer,
                        timeout=case.timeout, tracer=tracer, summary_out=summary)
        try:
            for result in frames:
                out.append(frame_signature(result.number, result.packet, result.path, lab, alias))
                frames_meta.append({"frame": result.number, "packet": result.packet,
                                    "trace_id": result.path.fingerprint.get("trace_id")})
                if on_frame:
                    on_frame(result)
        except CaptureError as exc:
            if exc.frame is None:
                raise                              # the file itself is bad: not a path difference
            out.append(FrameSignature(exc.frame, error=exc.reason))
            frames_meta.append({"frame": exc.frame, "error": exc.reason})
    finally:
        if own:
            tracer.__exit__(None, None, None)
    if not own:
        return out, summary, None
    from nettrace.trace.bundle import Bundle
    recorded = Bundle.of_lab(lab, tracer.names)
    recorded.traces = tracer.records
    recorded.meta = {"golden": case.name, "frames": frames_meta}
    return out, summary, recorded


def frame_results(recorded: "Bundle") -> dict[int, tuple[Path | None, str | None]]:
    """frame -> (path assembled from the bundle, or the error that stopped the replay)."""
    by_id = {rec.request.trace_id: rec for rec in recorded.traces}
    out: dict[int, tuple[Path | None, str | None]] = {}
    for meta in recorded.meta.get("frames", []):
        if meta.get("error"):
            out[meta["frame"]] = (None, meta["error"])
        else:
            rec = by_id.get(meta.get("trace_id"))
            out[meta["frame"]] = (rec.path(recorded.names) if rec else None,
                                  None if rec else "no trace recorded for this frame")
    return out


def offline_results(case: GoldenCase):
    """(lab model, frame signatures, frame -> (path, error)) from the case's bundle."""
    from nettrace.trace import bundle
    if not case.bundle:
        raise SpecError("no recorded bundle: check it --live, or record one with --update",
                        file=case.file, field="bundle")
    saved = bundle.load(case.bundle)
    lab = saved.the_lab()
    alias = Aliases(lab)
    results = frame_results(saved)
    sigs: list[FrameSignature] = []
    packets = {m["frame"]: m.get("packet", "") for m in saved.meta.get("frames", [])}
    for n, (path, error) in results.items():
        sigs.append(FrameSignature(n, error=error) if path is None
                    else frame_signature(n, packets[n], path, lab, alias))
    return lab, sigs, results


def run_case(case: GoldenCase, *, update: bool = False, say: Say | None = None,
             lab_name: str | None = None, live: bool = False) -> CheckResult:
    """Check `case`: offline from its bundle (default), or replayed in its lab (`live`, and
    always with `update`, which rewrites its signatures and bundle, never its `expect:`).

    `lab_name` brings the lab up under another name (tests do, so as not to meet a lab
    someone else has up under the embedded name)."""
    start = time.perf_counter()
    if not (live or update):
        lab, actual, results = offline_results(case)
        result = CheckResult(case, actual, compare(case.frames, actual), seconds=0.0)
        result.problems = check_expectations(case.expect, results, lab)
        result.seconds = time.perf_counter() - start
        return result
    if not os.path.exists(case.capture):
        raise CaptureError(case.capture, f"no such file (named by {case.file}: capture)")
    with case_lab(case, say, lab_name) as (lab, reused), listeners(lab, case.listen, case.file):
        actual, summary, recorded = replay_case(case, lab, record=True)
        problems = check_expectations(case.expect, frame_results(recorded), lab)
    result = CheckResult(case, actual, [], summary, reused, time.perf_counter() - start,
                         problems, live=True)
    if update:
        from nettrace.trace import bundle
        case.frames = actual
        case.bundle = case.bundle or case.file[:-len(GOLDEN_SUFFIX)] + ".bundle.json.gz"
        bundle.save(recorded, case.bundle)
        save_golden(case)
    else:
        result.differences = compare(case.frames, actual)
    return result
