"""The nettrace TUI: topology, packets, path timeline, packet detail, inject form, lab controls.

`make_app(...)` builds the app for `nettrace tui`, the tests and the benchmark. Everything
that blocks (bringing labs up or down, compiling and attaching probes, injecting, live
watching) runs in thread workers that call the library API and post messages back
(tui/messages.py); the UI thread only updates widgets.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Callable, Iterable, Sequence

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.screen import Screen
from textual.css.query import NoMatches
from textual.widgets import Input, TabbedContent, TabPane

from nettrace.errors import NettraceError
from nettrace.topology.model import Lab, running_labs
from nettrace.trace.model import Path
from tui.messages import (InjectFailed, LabChanged, LabDown, LabFailed, LabProgress, PathTraced,
                          TracerProgress, TracerReady, TracerStopped, TracerUnavailable)
from nettrace.inject.request import InjectRequest
from tui.session import LiveRequest, StopLive, TracerSession
from tui.widgets.cnm_tree import CnmTree
from tui.widgets.diagnosis import DiagnosisPanel
from tui.widgets.keybar import KeyBar
from tui.widgets.packets import PacketList
from tui.widgets.status import StatusBar
from tui.widgets.timeline import PathTimeline
from tui.widgets.topomap import TopologyMap

WIDE = 150          # columns from which the map sits beside the packets


class NettraceApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "nettrace"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("i", "inject", "Inject"),
        Binding("l", "labs", "Labs"),
        Binding("p", "probes", "Probes"),
        Binding("w", "live", "Watch", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "save", "Save pcapng", show=False),
        Binding("1", "tab('trace')", "Trace", show=False),
        Binding("2", "tab('topology')", "Topology", show=False),
        Binding("d", "detail", "Detail", show=False),
    ]

    def __init__(self, lab: Lab | None = None, *, paths: Sequence[Path] = (), trace: bool = True,
                 bring_up: str | None = None, trace_off_reason: str | None = None) -> None:
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"      # keyboard first: no sliding tab underline
        self.lab = lab
        self.paths: list[Path] = list(paths)
        self.trace_enabled = trace
        self.bring_up = bring_up
        self.session: TracerSession | None = None
        self._serial = itertools.count(1)
        self.session_serial = 0
        self.tracer_state = "off" if not trace else "idle"
        self.tracer_detail = trace_off_reason or ("recorded data" if not trace else "")
        self.probes: list = []
        self.live_expr: str | None = None
        self.labs_brought_up: set[str] = set()
        self.lab_busy: str | None = None
        self.filter_terms: list[str] = []
        self.selected: int | None = None
        self.quitting = False

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs", initial="trace"):
            with TabPane("Trace [1]", id="trace"):
                with Horizontal(id="trace-body"):
                    with Vertical(id="trace-left"):
                        yield Input(placeholder="/ filter: c1 dropped !arp ...", id="filter")
                        yield PacketList(id="packets")
                        yield DiagnosisPanel(id="diagnosis")
                        yield PathTimeline(id="timeline")
                    with ScrollableContainer(id="trace-map", can_focus=False):
                        yield TopologyMap(classes="map")
            with TabPane("Topology [2]", id="topology"):
                with Horizontal(id="topo-body"):
                    yield CnmTree(id="cnm")
                    with ScrollableContainer(id="topo-map"):
                        yield TopologyMap(classes="map")
        yield StatusBar(id="status")
        yield KeyBar()

    def on_mount(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")
        self.show_lab(self.lab)
        table = self.query_one(PacketList)
        table.fill(self.paths, self.filter_terms)
        if self.paths:
            self.select(0)
        else:
            self.query_one(PathTimeline).show(None)
            self.query_one(DiagnosisPanel).show(None)
        table.focus()
        self._warm_dissector()
        self.set_interval(0.25, self.refresh_status)
        self.set_interval(0.1, self._check_stop_request)
        self.refresh_status()
        if self.lab is not None:
            self.start_tracer()
        elif self.bring_up:
            self.lab_up(self.bring_up)
        else:
            self.call_after_refresh(self.action_labs)

    @work(thread=True, group="warm", exit_on_error=False)
    def _warm_dissector(self) -> None:
        """Import scapy behind the first screen: the first packet detail (`enter`) took
        ~300 ms more than the next ones, all of it scapy's import."""
        import scapy.layers.inet  # noqa: F401
        import scapy.layers.inet6  # noqa: F401

    #: set by `nettrace tui`: returns a signal number once SIGINT/SIGTERM/SIGHUP arrived
    stop_requested: Callable[[], object] | None = None

    def _check_stop_request(self) -> None:
        """A signal asked nettrace to stop: leave as quitting does (cli.common)."""
        if self.stop_requested is not None and self.stop_requested():
            self.exit()

    def on_unmount(self) -> None:
        """However the app ends (q, Ctrl-C, a crash), tell the tracer thread to leave its
        Tracer block: that detaches the probes, and asyncio waits for the thread to finish
        before `run()` returns (a thread worker would otherwise keep the process alive)."""
        if self.session is not None:
            self.session.stop()

    def on_resize(self, event) -> None:
        self.set_class(event.size.width >= WIDE, "-wide")

    # -- showing things -------------------------------------------------------------------
    def show_lab(self, lab: Lab | None) -> None:
        self.lab = lab
        for m in self.query(TopologyMap):
            m.set_lab(lab)
        self.query_one(CnmTree).set_lab(lab)
        self.sub_title = lab.name if lab else ""
        if self.selected is not None:
            self.show_path(self.paths[self.selected])

    def show_path(self, path: Path | None, hop: int | None = None) -> None:
        for m in self.query(TopologyMap):
            m.show(path, hop)

    def select(self, index: int) -> None:
        """Make packet `index` the selected one: timeline and maps follow."""
        self.selected = index
        try:
            table = self.query_one(PacketList)
        except NoMatches:                       # a late message while the app closes
            return
        if table.current_index() != index:
            table.select_index(index)
        path = self.paths[index]
        if path.diagnosis is None and self.lab is not None and path.direction == "request":
            from nettrace.diagnosis import attach
            attach([path], self.lab)            # recorded paths, and any traced before it
        self.query_one(DiagnosisPanel).show(path, has_lab=self.lab is not None)
        self.query_one(PathTimeline).show(path)
        self.show_path(path)

    def refresh_status(self) -> None:
        states = {
            "off": (f"tracing off: {self.tracer_detail}", "dim"),
            "idle": ("no tracer", "dim"),
            "starting": (f"starting tracer: {self.tracer_detail or 'compiling probes'}", "yellow"),
            "ready": ("tracer ready", "green"),
            "unavailable": (f"no tracing: {self.tracer_detail}", "bold red"),
            "stopped": ("tracer stopped, probes detached", "dim"),
            "stopping": ("detaching probes…", "yellow"),
        }
        text, style = states.get(self.tracer_state, (self.tracer_state, ""))
        busy_text = self.lab_busy or (self.session.busy if self.session and
                                      self.tracer_state == "ready" else None)
        if busy_text:
            text, style = busy_text, "yellow"
        live = [p for p in self.probes if getattr(p, "live", False)]
        try:
            table, status = self.query_one(PacketList), self.query_one(StatusBar)
        except NoMatches:                       # the timer fired while the app closes
            return
        status.show(
            lab=self.lab.name if self.lab else None, tracer=text, tracer_style=style,
            busy=bool(busy_text) or self.tracer_state in ("starting", "stopping"),
            probes=(len(live), len(self.probes)) if self.probes else None,
            lost=self.session.events_lost if self.session else 0,
            shown=table.row_count, total=len(self.paths))

    # -- tracer ---------------------------------------------------------------------------
    def start_tracer(self) -> None:
        if not self.trace_enabled or self.lab is None:
            return
        self.stop_tracer()
        self.session = TracerSession(self.lab)
        self.session_serial = next(self._serial)
        self.tracer_state, self.tracer_detail, self.probes = "starting", "", []
        self.run_tracer(self.session, self.session_serial)

    def stop_tracer(self) -> None:
        if self.session is not None:
            self.session.stop()
        self.session = None
        self.session_serial = 0

    @work(thread=True, group="tracer", exit_on_error=False)
    def run_tracer(self, session: TracerSession, serial: int) -> None:
        """Owns `with Tracer(lab)` for the session's whole life (see tui/session.py)."""
        def post(message) -> None:
            message.serial = serial
            self.post_message(message)
        session.run(post)

    def _current(self, message) -> bool:
        return getattr(message, "serial", None) == self.session_serial and self.session is not None

    def on_tracer_progress(self, message: TracerProgress) -> None:
        if self._current(message):
            self.tracer_detail = message.text
            self.refresh_status()

    def on_tracer_ready(self, message: TracerReady) -> None:
        if self._current(message):
            self.tracer_state, self.tracer_detail, self.probes = "ready", "", message.probes
            missing = [p for p in self.probes if not getattr(p, "live", True)]
            if missing:
                self.notify(f"{len(missing)} optional probes are not live here (p for details)",
                            severity="warning")
            self.refresh_status()

    def on_tracer_unavailable(self, message: TracerUnavailable) -> None:
        if self._current(message):
            self.tracer_state, self.tracer_detail = "unavailable", message.reason
            self.notify(message.reason, title="no tracing: topology only", severity="error",
                        timeout=8)
            self.refresh_status()

    def on_tracer_stopped(self, message: TracerStopped) -> None:
        if self._current(message) and self.tracer_state != "unavailable":
            self.tracer_state = "stopped"
            self.refresh_status()

    def on_inject_failed(self, message: InjectFailed) -> None:
        if self._current(message):
            self.notify(message.reason, title="inject failed", severity="error", timeout=8)

    def on_path_traced(self, message: PathTraced) -> None:
        if getattr(message, "serial", self.session_serial) != self.session_serial:
            return
        self.add_path(message.path, select=message.select)

    def add_path(self, path: Path, select: bool = True) -> None:
        index = len(self.paths)
        self.paths.append(path)
        table = self.query_one(PacketList)
        shown = table.add_path(index, path, self.filter_terms)
        if select:
            if not shown:                      # an injected packet is always shown
                self.filter_terms = []
                table.fill(self.paths, [])
                self.query_one("#filter", Input).value = ""
            if self.query_one(TabbedContent).active != "trace":
                self.action_tab("trace")
            self.select(index)
        elif self.selected is None:
            self.select(index)
        self.refresh_status()

    # -- labs -----------------------------------------------------------------------------
    def open_lab(self, lab: Lab) -> None:
        if self.lab is not None and self.lab.name != lab.name:
            self.paths.clear()
            self.selected = None
            self.query_one(PacketList).clear()
            self.query_one(PathTimeline).show(None)
            self.query_one(DiagnosisPanel).show(None)
        self.show_lab(lab)
        self.start_tracer()
        self.refresh_status()

    @work(thread=True, group="labs", exit_on_error=False)
    def lab_up(self, name: str) -> None:
        from nettrace.topology.builder import up
        from nettrace.topology.spec import load
        self.post_message(LabProgress(f"bringing lab {name} up…"))
        try:
            lab = up(load(name), progress=lambda text: self.post_message(LabProgress(str(text))))
        except NettraceError as exc:
            self.post_message(LabFailed(name, str(exc)))
            return
        except Exception as exc:
            self.post_message(LabFailed(name, f"{type(exc).__name__}: {exc}"))
            return
        self.labs_brought_up.add(lab.name)     # recorded here too: quitting may beat the message
        self.post_message(LabChanged(lab, brought_up=True))

    @work(thread=True, group="labs", exit_on_error=False)
    def lab_down(self, name: str) -> None:
        from nettrace.topology.builder import down
        self.post_message(LabProgress(f"taking lab {name} down…"))
        session = self.session if self.lab is not None and self.lab.name == name else None
        if session is not None:
            session.close()                    # detach probes before the namespaces go
        try:
            down(name)
        except NettraceError as exc:
            self.post_message(LabFailed(name, str(exc)))
            return
        self.post_message(LabDown(name))

    def on_lab_progress(self, message: LabProgress) -> None:
        self.lab_busy = message.text
        self.refresh_status()

    def on_lab_changed(self, message: LabChanged) -> None:
        self.lab_busy = None
        if message.brought_up:
            self.labs_brought_up.add(message.lab.name)
            self.notify(f"lab {message.lab.name} is up")
        self.open_lab(message.lab)

    def on_lab_down(self, message: LabDown) -> None:
        self.lab_busy = None
        self.labs_brought_up.discard(message.name)
        self.notify(f"lab {message.name} is down")
        if self.lab is not None and self.lab.name == message.name:
            self.stop_tracer()
            self.tracer_state, self.probes = "idle", []
            self.show_lab(None)
        self.refresh_status()

    def on_lab_failed(self, message: LabFailed) -> None:
        self.lab_busy = None
        self.notify(message.reason, title=f"lab {message.name}", severity="error", timeout=10)
        self.refresh_status()

    # -- widgets --------------------------------------------------------------------------
    @on(PacketList.Highlighted)
    def _packet_highlighted(self, event: PacketList.Highlighted) -> None:
        if event.index != self.selected:
            self.select(event.index)

    @on(PacketList.Chosen)
    def _packet_chosen(self, event: PacketList.Chosen) -> None:
        self.query_one(PathTimeline).focus()

    @on(CnmTree.NodeHighlighted, "#cnm")
    def _tree_moved(self, event: CnmTree.NodeHighlighted) -> None:
        key = event.node.data if isinstance(event.node.data, tuple) else None
        for m in self.query(TopologyMap):
            m.point_at(key)

    @on(PathTimeline.HopHighlighted)
    def _hop_highlighted(self, event: PathTimeline.HopHighlighted) -> None:
        self.show_path(event.path, event.index)

    @on(PathTimeline.HopChosen)
    def _hop_chosen(self, event: PathTimeline.HopChosen) -> None:
        from tui.screens.detail import PacketDetailScreen
        self.push_screen(PacketDetailScreen(event.path, event.index))

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_terms = event.value.lower().split()
        self.query_one(PacketList).fill(self.paths, self.filter_terms)
        self.refresh_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(PacketList).focus()

    # -- actions --------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        """Switch tab and focus its main widget (focus left in a hidden pane pulls it back)."""
        self.query_one(TabbedContent).active = tab
        self.query_one(CnmTree if tab == "topology" else PacketList).focus()

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "trace"
        self.query_one("#filter", Input).focus()

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen
        self.push_screen(HelpScreen())

    def action_detail(self) -> None:
        hop = self.query_one(PathTimeline).current_hop()
        if hop is not None:
            from tui.screens.detail import PacketDetailScreen
            self.push_screen(PacketDetailScreen(*hop))

    def action_inject(self) -> None:
        if self.lab is None:
            self.notify("open a lab first (l)", severity="warning")
            return
        from tui.screens.inject import InjectScreen

        def send(request: InjectRequest | None) -> None:
            if request is None:
                return
            if self.session is None or self.tracer_state not in ("starting", "ready"):
                self.notify(f"cannot inject: {self.tracer_detail or 'the tracer is not running'}",
                            severity="error")
                return
            self.session.submit(request)
            self.notify(f"injecting {request.describe()}")
        self.push_screen(InjectScreen(self.lab), send)

    def action_live(self) -> None:
        if self.session is None or self.tracer_state not in ("starting", "ready"):
            self.notify("live watching needs the tracer", severity="warning")
            return
        if self.live_expr is not None:
            self.session.submit(StopLive())
            self.notify(f"stopped watching {self.live_expr or 'all traffic'}")
            self.live_expr = None
            return
        from tui.screens.prompt import PromptScreen

        def start(expr: str | None) -> None:
            if expr is None or self.session is None:
                return
            self.live_expr = expr
            self.session.submit(LiveRequest(expr))
        self.push_screen(PromptScreen("Watch lab traffic matching (tcpdump syntax, empty: all):",
                                      placeholder="icmp or tcp port 80"), start)

    def action_save(self) -> None:
        shown = self.shown_paths()
        if not shown:
            self.notify("no packets to save", severity="warning")
            return
        from tui.screens.prompt import PromptScreen
        default = f"nettrace-{self.lab.name if self.lab else 'paths'}-{time.strftime('%H%M%S')}.pcapng"

        def save(name: str | None) -> None:
            if name:
                self.save_pcapng(name, shown)
        self.push_screen(PromptScreen(f"Save the {len(shown)} shown packets (every hop) as pcapng:",
                                      value=default), save)

    def shown_paths(self) -> list[Path]:
        table = self.query_one(PacketList)
        return [self.paths[i] for i in table.visible(self.paths, self.filter_terms)]

    @work(thread=True, group="save", exit_on_error=False)
    def save_pcapng(self, filename: str, paths: list[Path]) -> None:
        from nettrace.capture.pcapng import write_paths
        try:
            count = write_paths(filename, paths, self.lab)
        except OSError as exc:
            self.call_from_thread(self.notify, f"{filename}: {exc.strerror}", severity="error")
            return
        self.call_from_thread(self.notify, f"wrote {count} packets ({len(paths)} paths) to {filename}")

    def action_labs(self) -> None:
        from tui.screens.labs import LabsScreen

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is None:
                return
            verb, name = choice
            if verb == "open":
                from nettrace.topology.model import load_lab
                try:
                    self.open_lab(load_lab(name))
                except NettraceError as exc:
                    self.notify(str(exc), severity="error")
            elif verb == "up":
                self.lab_up(name)
            elif verb == "down":
                self.lab_down(name)
        self.push_screen(LabsScreen(current=self.lab.name if self.lab else None,
                                    brought_up=self.labs_brought_up), chosen)

    def action_probes(self) -> None:
        from tui.screens.probes import ProbesScreen
        reason = self.tracer_detail if self.tracer_state in ("unavailable", "off") else None
        self.push_screen(ProbesScreen(self.probes, self.session.events_lost if self.session else 0,
                                      reason))

    async def action_quit(self) -> None:
        if self.quitting:                      # second q / Ctrl-C: do not wait any longer
            self.exit()
            return
        still_up = sorted(n for n in self.labs_brought_up if n in running_labs())
        if still_up:
            from tui.screens.teardown import TeardownScreen
            self.push_screen(TeardownScreen(still_up), self._quit_with)
        else:
            self._quit_with(False)

    def _quit_with(self, teardown: bool | None) -> None:
        if teardown is None:                   # "stay"
            return
        self.quitting = True
        labs = sorted(self.labs_brought_up) if teardown else []
        if self.session is not None:
            self.tracer_state = "stopping"
        self.refresh_status()
        self.shutdown(labs)

    @work(thread=True, group="quit", exit_on_error=False)
    def shutdown(self, labs: list[str]) -> None:
        """Detach probes (leave the Tracer block), then take down what the user asked."""
        self.close_session()
        if labs:
            from nettrace.topology.builder import down
            for name in labs:
                self.post_message(LabProgress(f"taking lab {name} down…"))
                try:
                    down(name, quiet=True)
                    self.labs_brought_up.discard(name)
                except NettraceError as exc:
                    self.post_message(LabFailed(name, str(exc)))
        self.call_from_thread(self.exit)

    def close_session(self, timeout: float = 15.0) -> bool:
        """Stop the tracer and wait until its probes are detached (safe from any thread)."""
        session = self.session
        return session.close(timeout) if session is not None else True

    # -- command palette ------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Inject a packet", "Send a packet from a container and trace it",
                            self.action_inject)
        yield SystemCommand("Labs", "Open a running lab, bring an embedded lab up or down",
                            self.action_labs)
        yield SystemCommand("Probe status", "Which probes are live, events lost",
                            self.action_probes)
        yield SystemCommand("Watch live traffic", "Trace matching lab traffic as it flows",
                            self.action_live)
        yield SystemCommand("Show topology", "CNM tree and map", lambda: self.action_tab("topology"))
        yield SystemCommand("Show packets", "Packets and the selected path",
                            lambda: self.action_tab("trace"))
        yield SystemCommand("Filter packets", "Focus the filter box", self.action_filter)
        yield SystemCommand("Save as pcapng", "Write the shown packets, at every hop, to a file",
                            self.action_save)
        yield SystemCommand("Help", "Keys and panes", self.action_help)


def make_app(lab: Lab | None = None, *, paths: Sequence[Path] = (), trace: bool = True,
             bring_up: str | None = None, trace_off_reason: str | None = None) -> NettraceApp:
    """The TUI on an open lab (or none: the lab picker opens), optionally with recorded paths.

    trace=False shows topology and recorded paths without attaching any probe (snapshots,
    replays, no root); bring_up names an embedded lab to bring up from inside the TUI.
    """
    return NettraceApp(lab, paths=paths, trace=trace, bring_up=bring_up,
                       trace_off_reason=trace_off_reason)
