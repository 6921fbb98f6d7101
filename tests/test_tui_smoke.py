"""Smoke tests: `nettrace tui bridge` in a real terminal (tmux), driven by keys, read back
with `tmux capture-pane`: inject c1 -> c2, see it delivered, the topology, help, Ctrl-C;
and the same command as an unprivileged user, which must still show the topology and say
why there is no tracing."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import time


from conftest import NETTRACE, needs_root, needs_tool, our_namespaces
from nettrace.topology.model import ns_name, running_labs

pytestmark = [needs_root, needs_tool("tmux")]


_SERVERS = itertools.count()


class Tmux:
    """A private tmux server (own socket) running one 80x24 window."""

    def __init__(self, command: str) -> None:
        # one server per window: a server still shutting down never meets the next test's
        self.socket = f"nettrace-tui-smoke-{os.getpid()}-{next(_SERVERS)}"
        self.tmux("new-session", "-d", "-s", "smoke", "-x", "80", "-y", "24", command)
        self.tmux("set-option", "-g", "escape-time", "0")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "smoke", key)
            time.sleep(0.15)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "smoke")

    def wait(self, *texts: str, timeout: float = 30) -> str:
        """The screen once any of `texts` is on it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if any(t in screen for t in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {texts} on screen after {timeout} s:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_nettrace_tui_bridge_in_tmux():
    lab = "bridge"
    was_up = lab in running_labs()
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}"
                   for k in ("NETTRACE_NS_PREFIX", "NETTRACE_STATE_DIR") if k in os.environ)
    term = Tmux(f"env {env} TERM=xterm-256color {NETTRACE} tui {lab}; echo EXITED $?; sleep 60")
    try:
        screen = term.wait("tracer ready", "no tracing", timeout=120)
        assert f" {lab} " in screen and "Trace [1]" in screen and "q Quit" in screen
        assert "tracer ready" in screen, f"tracing did not start:\n{screen}"
        term.keys("i")
        term.wait("Inject into lab bridge")
        term.keys("Enter")                                 # the default: c1 -> c2 icmp
        screen = term.wait("✓ delivered", "✗ dropped", "inject failed", timeout=30)
        assert "c1" in screen and "c2" in screen and "✓ delivered" in screen, screen
        assert "c1:eth0" in screen                         # the first hop of the timeline
        term.keys("2")
        screen = term.wait("docker0 bridge")
        assert re.search(r"1\W?c1:eth0", screen) and "c2:eth0" in screen, screen  # the steps
        term.keys("?")
        term.wait("nettrace TUI")
        term.keys("Escape", "C-c")                         # Ctrl-C quits like q
        if not was_up:
            term.wait("Take them down")
            term.keys("y")
        screen = term.wait("EXITED", timeout=60)
        assert "EXITED 0" in screen, screen
    finally:
        term.close()                      # SIGHUP: the TUI still detaches its probes
        left_up = not was_up and lab in running_labs()
        if left_up:
            from nettrace.topology.builder import down
            down(lab, quiet=True)
    assert not left_up, f"quitting did not take lab {lab} down"
    if not was_up:
        assert lab not in running_labs()
        assert not [ns for ns in our_namespaces() if ns.startswith(ns_name(lab) + ".")]


def test_without_ebpf_the_topology_opens_and_says_what_is_missing(labs):
    """Root without capabilities (no bpf(), no netlink admin): the TUI must still open the
    topology, say why there is no tracing, keep the screen clean of libbcc's stderr and
    quit with Ctrl-C."""
    labs("bridge")                                        # up with privileges; the TUI has none
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}"
                   for k in ("NETTRACE_NS_PREFIX", "NETTRACE_STATE_DIR") if k in os.environ)
    term = Tmux(f"setpriv --inh-caps=-all --bounding-set=-all env {env} TERM=xterm-256color "
                f"{NETTRACE} tui bridge; echo EXITED $?; sleep 60")
    try:
        screen = term.wait("no tracing", "tracer ready", "Traceback", timeout=60)
        assert "no tracing" in screen and "tracer failed" in screen, screen   # status or toast
        assert screen.splitlines()[0].startswith(" Trace [1]"), "stderr tore the screen"
        term.keys("2")
        screen = term.wait("docker0 bridge")
        assert "c1" in screen and "c2" in screen and "172.17.0.2" in screen
        term.keys("C-c")
        screen = term.wait("EXITED", timeout=30)
        assert "EXITED 0" in screen, screen
        for log in re.findall(r"/tmp/nettrace-tui-\w+\.log", screen.replace("\n", "")):
            os.unlink(log)                    # libbcc's complaints, kept off the screen
    finally:
        term.close()
