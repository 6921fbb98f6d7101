"""`nettrace tui [LAB]`: the interactive view (tui/), on a running lab, an embedded lab it
brings up, a live Docker engine, or recorded paths."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

import click

from nettrace.cli.common import docker_option
from nettrace.errors import NettraceError


def load_paths(filename: str) -> list:
    """Paths saved by `nettrace path --json`: one JSON object per line, or one JSON list."""
    from nettrace.trace.model import Path
    from nettrace.inputs import MAX_PATHS_BYTES, read_text
    text = read_text(filename, "paths file", lambda message, line=None: NettraceError(
        f"{filename}{f':{line}' if line else ''}: {message}"), max_bytes=MAX_PATHS_BYTES)
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = [(1, item) for item in json.loads(stripped)]
        except json.JSONDecodeError as exc:
            raise NettraceError(f"{filename}:{exc.lineno}: not JSON: {exc.msg}") from None
        except RecursionError:
            raise NettraceError(f"{filename}: not a nettrace paths file (JSON nested too "
                                f"deeply)") from None
    else:
        items = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise NettraceError(f"{filename}:{lineno}: not JSON: {exc.msg}") from None
                except RecursionError:
                    raise NettraceError(f"{filename}:{lineno}: not a nettrace path (JSON nested "
                                        f"too deeply)") from None
    paths = []
    for lineno, item in items:
        try:
            paths.append(Path.from_dict(item))
        except (TypeError, KeyError, AttributeError, ValueError, RecursionError) as exc:
            raise NettraceError(f"{filename}:{lineno}: not a nettrace path: {exc}") from None
    return paths


@contextmanager
def c_stderr_to_log() -> Iterator[str | None]:
    """While the TUI owns the terminal, send C-level stderr (libbcc, libc) to a log file.

    libbcc writes its warnings straight to fd 2, which is also where Textual draws the
    screen; they would tear the display. Textual gets a private copy of the terminal fd
    (it reads sys.__stderr__ when the app is built) and fd 2 goes to the log. Yields the
    log path, or None when stderr is not a terminal.
    """
    if not os.isatty(2):
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="nettrace-tui-", suffix=".log")
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="backslashreplace")
    original = sys.__stderr__
    os.dup2(fd, 2)
    os.close(fd)
    sys.__stderr__ = terminal
    try:
        yield path
    finally:
        sys.__stderr__ = original
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()


def register(cli: click.Group) -> None:
    @cli.command("tui")
    @click.argument("lab", required=False)
    @docker_option
    @click.option("--paths", "paths_file", metavar="FILE",
                  help="Also show recorded paths (the output of nettrace path --json).")
    @click.option("--no-trace", is_flag=True,
                  help="Attach no probes: topology and recorded paths only (no root needed).")
    def tui_command(lab: str | None, docker: str | None, paths_file: str | None,
                    no_trace: bool) -> None:
        """Topology, inject form and hop-by-hop paths in one screen.

        LAB is a running lab, or an embedded lab / lab file that the TUI brings up (and
        offers to take down when you quit). Without LAB, pick one inside (key l).
        Press ? inside for the keys.
        """
        from nettrace.cli.common import get_lab
        from nettrace.errors import require_root
        from nettrace.topology.model import running_labs
        paths = load_paths(paths_file) if paths_file else []
        opened, bring_up = None, None
        if docker is not None:
            opened = get_lab(None, docker)
        elif lab and lab in running_labs():
            opened = get_lab(lab)
        elif lab:
            from nettrace.topology.spec import load
            load(lab)                            # unknown lab or bad file: exit 2 here
            require_root(f"bringing lab {lab} up")
            bring_up = lab
        from tui.app import make_app
        from nettrace.cli.common import Interrupted, stop_on_signal
        with c_stderr_to_log() as log, stop_on_signal() as signalled:
            app = make_app(opened, paths=paths, trace=not no_trace, bring_up=bring_up,
                           trace_off_reason="--no-trace" if no_trace else None)
            app.stop_requested = signalled      # a signal quits the app like `q` does
            try:
                app.run()
            finally:
                stopped = app.close_session()
            signum = signalled()
        if not stopped:
            click.echo("nettrace: the tracer did not stop in time; probes go with this "
                       "process", err=True)
        if log and os.path.getsize(log):
            click.echo(f"nettrace: messages from bcc and the kernel during the session: {log}",
                       err=True)
        elif log:
            os.unlink(log)
        left = sorted(n for n in app.labs_brought_up if n in running_labs())
        if left:
            click.echo(f"labs still up: {', '.join(left)} (nettrace lab down NAME)", err=True)
        if signum is not None:
            raise Interrupted(signum)           # exit 128 + signal, after the cleanup above
