"""One Tracer per open lab, owned by one worker thread for its whole life.

The `with Tracer(lab)` block compiles and attaches probes (slow), serves injections and
live watches from a queue, and on stop leaves the block, which detaches every probe and
removes temporary rules. Keeping it in one thread means attach and detach happen in the
same place, and quitting only has to set `stop` and wait for `finished`.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from textual.message import Message

from nettrace.errors import NettraceError
from nettrace.inject.request import InjectRequest
from nettrace.topology.model import Lab
from tui.messages import (InjectFailed, PathTraced, TracerProgress, TracerReady, TracerStopped,
                          TracerUnavailable)

Post = Callable[[Message], object]


@dataclass(frozen=True)
class LiveRequest:
    """Watch matching traffic (`Tracer.live`) until another request or stop arrives."""

    expr: str


@dataclass(frozen=True)
class StopLive:
    """End a live watch without stopping the tracer."""


def tracing_blocker() -> str | None:
    """Why tracing cannot start in this process, checked before anything is imported."""
    if os.geteuid() != 0:
        return "tracing needs root (eBPF, network namespaces): run sudo nettrace tui"
    return None


class TracerSession:
    """Runs `with Tracer(lab)` in the calling (worker) thread until `stop()`."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.requests: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.tracer = None              # the live Tracer while attached
        self.busy: str | None = None    # what the tracer is doing now, for the status line

    # -- called from the UI thread -----------------------------------------------------
    def submit(self, request: InjectRequest | LiveRequest | StopLive) -> None:
        self.requests.put(request)

    def stop(self) -> None:
        self.stop_event.set()

    def close(self, timeout: float = 15.0) -> bool:
        """Stop and wait until probes are detached; False if the thread did not finish."""
        self.stop()
        return self.finished.wait(timeout)

    @property
    def events_lost(self) -> int:
        tracer = self.tracer
        return int(getattr(tracer, "events_lost", 0) or 0) if tracer is not None else 0

    # -- the worker thread -------------------------------------------------------------
    def run(self, post: Post, cancelled: Callable[[], bool] = lambda: False) -> None:
        stopping = lambda: self.stop_event.is_set() or cancelled()  # noqa: E731
        try:
            blocker = tracing_blocker()
            if blocker:
                post(TracerUnavailable(blocker))
                return
            try:
                from nettrace.trace import Tracer
            except ImportError as exc:
                post(TracerUnavailable(f"the tracing engine is not available: {exc}"))
                return
            try:
                with Tracer(self.lab, progress=lambda text: post(TracerProgress(str(text)))) as tr:
                    self.tracer = tr
                    post(TracerReady(list(tr.probe_status())))
                    self._serve(tr, post, stopping)
            except NettraceError as exc:
                post(TracerUnavailable(str(exc)))
            except Exception as exc:   # a tracer bug must not take the topology view down
                post(TracerUnavailable(f"tracer failed: {type(exc).__name__}: {exc}"))
        finally:
            self.tracer = None
            self.finished.set()
            post(TracerStopped())

    def _serve(self, tr, post: Post, stopping: Callable[[], bool]) -> None:
        live: LiveRequest | None = None
        while not stopping():
            try:
                request = self.requests.get(timeout=0.1)
            except queue.Empty:
                request = live            # resume the live watch, if any
                if request is None:
                    continue
            if isinstance(request, StopLive):
                live = None
            elif isinstance(request, LiveRequest):
                live = request
                self.busy = f"watching {request.expr or 'all lab traffic'}"
                try:
                    for path in tr.live(request.expr or None, stop=lambda: stopping() or not self.requests.empty()):
                        post(PathTraced(path, select=False))
                except NettraceError as exc:
                    live = None
                    post(InjectFailed(f"live watch: {exc}"))
                self.busy = None
            elif isinstance(request, InjectRequest):
                self.busy = f"injecting {request.describe()}"
                try:
                    for path in tr.path(request):
                        post(PathTraced(path, select=True))
                except NettraceError as exc:
                    post(InjectFailed(str(exc)))
                except Exception as exc:
                    post(InjectFailed(f"{type(exc).__name__}: {exc}"))
                finally:
                    self.busy = None
