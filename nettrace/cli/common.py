"""Pieces shared by CLI commands: finding the lab a command works on, checking arguments
(durations, output files, the environment) before anything is traced, and signals.

Signals (one mechanism for every command, installed by `main()`): SIGINT, SIGTERM and
SIGHUP all raise `Interrupted` (a KeyboardInterrupt) in the main thread, so every command
unwinds through the same `finally`/`with` blocks that already clean up on Ctrl-C: a
half-built lab is taken down, probes are detached, the nft trace table and child
processes are removed. The command then exits 128 + the signal number (130, 143, 129).
Once cleanup has started, further signals are reported and ignored, so a second Ctrl-C
or a SIGTERM after SIGHUP (a closing terminal) cannot cut the cleanup short.

Loops that stream until stopped (`nettrace trace`, `record`) ask for a cooperative stop
instead (`stop_on_signal()`): the first signal only ends the loop, which then flushes
what it holds and cleans up; a second signal raises as above.
"""

from __future__ import annotations

import functools
import math
import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator

import click

from nettrace.topology.model import Lab, load_lab

#: the signals every command handles
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal asked nettrace to stop (raised in the main thread by the handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _SignalState:
    stopping: list[int] | None = None     # set while a cooperative loop runs
    raised: int | None = None             # the signal that started the cleanup


def _on_signal(signum: int, frame) -> None:
    state = _SignalState
    if state.raised is not None:          # cleanup under way: never interrupt it
        _note(f"{signal.Signals(signum).name} ignored: still cleaning up")
        return
    if state.stopping is not None and not state.stopping:
        state.stopping.append(signum)     # the loop ends at its next check
        return
    state.raised = signum
    raise Interrupted(signum)


def _note(msg: str) -> None:
    try:
        os.write(2, f"nettrace: {msg}\n".encode())
    except OSError:                       # no terminal any more (SIGHUP)
        pass


def install_signal_handlers() -> None:
    """Route SIGINT, SIGTERM and SIGHUP through `Interrupted` (main thread only)."""
    _buffered_stdio()
    for sig in HANDLED:
        signal.signal(sig, _on_signal)


def _buffered_stdio() -> None:
    """Under PYTHONUNBUFFERED (python -u) stdout and stderr write straight to the file
    descriptor, and when a signal interrupts a write to a full pipe part-way, the text layer
    drops the rest of the line (the kernel wrote only part of it). A buffered layer retries
    partial writes; click.echo flushes after every message, so output is not delayed."""
    import io
    import sys
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(stream, "buffer", None)
        if isinstance(raw, io.FileIO):
            setattr(sys, name, io.TextIOWrapper(
                io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors,
                line_buffering=True))


def interrupted_exit_code(exc: KeyboardInterrupt) -> int:
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


@contextmanager
def stop_on_signal() -> Iterator[Callable[[], int | None]]:
    """Yield `stopped()`: the first signal makes it return the signal number instead of
    raising; the caller's loop ends, flushes and cleans up. A second signal raises."""
    state = _SignalState
    saved = state.stopping
    state.stopping = []
    try:
        yield lambda: state.stopping[0] if state.stopping else None
    finally:
        state.stopping = saved


def docker_option(f):
    """`--docker` (a flag) and `--docker-host URL`: work on a live Docker engine instead of a lab.

    The function receives one `docker` argument: None (a lab), "" (the engine of DOCKER_HOST or
    the local socket) or the engine URL(s).
    """
    @functools.wraps(f)
    def wrapper(*args, docker_flag: bool, docker_host: str | None, **kwargs):
        docker = (docker_host or "") if (docker_flag or docker_host) else None
        return f(*args, docker=docker, **kwargs)
    wrapper = click.option(
        "--docker-host", "--engine-url", "docker_host", default=None,
        metavar="URL[,URL...]",
        help="The Docker engine for --docker (default: DOCKER_HOST, else the local socket); "
             "several engines of one swarm, comma-separated, form one lab.")(wrapper)
    return click.option(
        "--docker", "docker_flag", is_flag=True,
        help="Use a live Docker engine instead of a lab (see --docker-host).")(wrapper)


def looks_like_engine(token: str) -> bool:
    """An engine address as `--docker` used to take it: unix:///..., tcp://..., /path.sock."""
    return all("://" in t or t.startswith("/") for t in token.split(",") if t) and bool(token)


def legacy_docker_args(args: list[str]) -> list[str]:
    """The old `--docker URL` form, kept where unambiguous: `--docker` followed by something
    that can only be an engine address becomes `--docker --docker-host URL`."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg.startswith("--docker=") and looks_like_engine(arg.split("=", 1)[1]):
            out += ["--docker", "--docker-host", arg.split("=", 1)[1]]
        elif arg == "--docker" and i + 1 < len(args) and looks_like_engine(args[i + 1]):
            out += ["--docker", "--docker-host", args[i + 1]]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def get_lab(name: str | None, docker: str | None = None) -> Lab:
    """The running lab `name`, or the CNM view of a live Docker engine when --docker is given."""
    if docker is not None:
        from nettrace.docker.discover import discover
        return discover(docker or None)
    if not name:
        raise click.UsageError("name a lab (see: nettrace lab ls) or pass --docker")
    return load_lab(name)


class Seconds(click.ParamType):
    """A finite number of seconds within [low, high]: 'nan', 'inf', 0 and negatives are usage
    errors (exit 2), not a trace that reports every frame lost."""

    name = "seconds"

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g} seconds",
                      param, ctx)
        return number


def check_output_file(path: str, option: str) -> None:
    """Refuse, before any tracing, an output file that cannot be written: a missing or
    read-only directory, a directory, or an existing non-regular file such as /dev/full."""
    import os
    import stat
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"{path}: the directory {parent} does not exist",
                                 param_hint=option)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.access(parent, os.W_OK):
            raise click.BadParameter(f"{path}: the directory {parent} is not writable",
                                     param_hint=option) from None
        return
    if not stat.S_ISREG(st.st_mode):
        raise click.BadParameter(f"{path}: not a regular file (a pcapng is written to a new or "
                                 f"regular file)", param_hint=option)
    if not os.access(path, os.W_OK):
        raise click.BadParameter(f"{path}: not writable", param_hint=option)


@contextmanager
def writing(path: str, option: str) -> Iterator[None]:
    """Turn an I/O error while writing `path` (disk full) into a clear error naming it."""
    from nettrace.errors import NettraceError
    try:
        yield
    except OSError as exc:
        raise NettraceError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None


def check_env_vars() -> None:
    """NETTRACE_STATE_DIR and NETTRACE_NS_PREFIX, checked before any command runs."""
    import os
    import re
    from nettrace.errors import NettraceError
    from nettrace.topology.model import NS_PREFIX, STATE_DIR
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$", NS_PREFIX):
        raise NettraceError(f"NETTRACE_NS_PREFIX={NS_PREFIX!r}: use 1-32 letters, digits, '-' "
                            f"and '_' (it starts every namespace name)")
    path = os.path.abspath(STATE_DIR)
    while True:                       # the directory itself, or its first existing ancestor
        if os.path.isdir(path):
            return
        if os.path.lexists(path):
            what = "" if path == os.path.abspath(STATE_DIR) else f"{path} "
            raise NettraceError(f"NETTRACE_STATE_DIR={STATE_DIR}: {what}is not a directory")
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
