"""Messages that carry library results from worker threads back to the UI thread.

Workers only call the library and `post_message`; widgets change only in handlers,
on the UI thread. One message per kind of result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from nettrace.topology.model import Lab
from nettrace.trace.model import Path


@dataclass
class PathTraced(Message):
    """The tracer finished one path (injected, or seen live)."""

    path: Path
    select: bool = True            # make it the selected packet (injections: yes)


@dataclass
class TracerProgress(Message):
    """A startup step of the tracer (compiling, attaching) for the progress indicator."""

    text: str


@dataclass
class TracerReady(Message):
    """Probes are attached; `probes` is Tracer.probe_status()."""

    probes: list[Any] = field(default_factory=list)


@dataclass
class TracerUnavailable(Message):
    """Tracing cannot run here (not root, no bcc, no BTF, ...): the reason, in words."""

    reason: str


@dataclass
class TracerStopped(Message):
    """The tracer thread left its `with Tracer(...)` block: probes are detached."""


@dataclass
class InjectFailed(Message):
    """An injection was refused or failed; the tracer keeps running."""

    reason: str


@dataclass
class LabProgress(Message):
    """A step of bringing a lab up or down."""

    text: str


@dataclass
class LabChanged(Message):
    """A lab was opened (or brought up): show it."""

    lab: Lab
    brought_up: bool = False       # by this TUI: offered for teardown on quit


@dataclass
class LabDown(Message):
    """A lab was taken down."""

    name: str


@dataclass
class LabFailed(Message):
    """Bringing a lab up or down failed."""

    name: str
    reason: str
