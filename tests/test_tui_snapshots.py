"""Snapshots of every TUI screen at 80x24 (and one wide), from recorded labs and paths.

The labs are what `nettrace lab up` built (tui/samples/*.json) and the paths are trace
bundles recorded on them (tui/samples/*.bundle.json.gz, assembled offline by tui/sample.py),
so these show real kernel events and need neither root nor eBPF. Review the SVG diffs like
code before `--snapshot-update`.
"""

from __future__ import annotations

from nettrace.trace.probes import ProbeStatus
from tui.app import make_app
from tui.sample import bridge_ping, isolation_drop, sample_lab


def bridge_app():
    lab = sample_lab("bridge")
    return make_app(lab, paths=[bridge_ping(lab)], trace=False)


def isolation_app():
    lab = sample_lab("user-bridges")
    return make_app(lab, paths=[isolation_drop(lab)], trace=False)


def test_trace_delivered_path(snap_compare):
    assert snap_compare(bridge_app())


def test_trace_dropped_path_shows_rule_and_reason(snap_compare):
    async def to_drop(pilot):
        await pilot.press("tab", *["down"] * 6)                     # the FORWARD drop hop
    assert snap_compare(isolation_app(), run_before=to_drop)


def test_topology_tree_and_map_with_the_path_numbered(snap_compare):
    assert snap_compare(isolation_app(), press=["2"])


def test_overlay_topology_map(snap_compare):
    assert snap_compare(make_app(sample_lab("overlay"), trace=False), press=["2"],
                        terminal_size=(140, 30))


def test_wide_layout_puts_the_map_beside_the_packets(snap_compare):
    assert snap_compare(bridge_app(), terminal_size=(160, 30))


def test_packet_detail_dissection_and_hex(snap_compare):
    assert snap_compare(bridge_app(), press=["tab", "enter"])


def test_packet_detail_next_hop_without_bytes(snap_compare):
    assert snap_compare(bridge_app(), press=["tab", "enter", *["]"] * 11])   # the free in c2


def test_inject_form(snap_compare):
    assert snap_compare(bridge_app(), press=["i"])


def test_inject_form_names_the_bad_field(snap_compare):
    async def bad_port(pilot):
        await pilot.press("i")
        while not pilot.app.screen.query("#port"):
            await pilot.pause(0.05)
        pilot.app.screen.query_one("#port").value = "99999"
        await pilot.press("ctrl+s")
    assert snap_compare(bridge_app(), run_before=bad_port)


def test_labs_screen(snap_compare):
    async def labs(pilot):
        from tui.screens.labs import LabsScreen
        pilot.app.push_screen(LabsScreen(current="bridge", brought_up={"bridge"},
                                         running=["bridge"]))
    assert snap_compare(bridge_app(), run_before=labs)


def test_probe_status_screen(snap_compare):
    async def probes(pilot):
        pilot.app.probes = [ProbeStatus("tp:net_dev_queue", True),
                            ProbeStatus("nf:hooks", True),
                            ProbeStatus("tc:lab-interfaces", True),
                            ProbeStatus("br_forward", False, "kprobes are not available on "
                                        "this kernel")]
        pilot.app.refresh_status()
        await pilot.press("p")
    assert snap_compare(bridge_app(), run_before=probes)


def test_help_screen(snap_compare):
    assert snap_compare(bridge_app(), press=["question_mark"])


def test_teardown_offer_on_quit(snap_compare):
    async def offer(pilot):
        from tui.screens.teardown import TeardownScreen
        pilot.app.push_screen(TeardownScreen(["bridge", "overlay"]))
    assert snap_compare(bridge_app(), run_before=offer)


def test_no_tracing_says_why_and_keeps_the_topology(snap_compare):
    async def unavailable(pilot):
        app = pilot.app
        app.tracer_state = "unavailable"
        app.tracer_detail = "tracing needs root (eBPF, network namespaces): run sudo nettrace tui"
        app.refresh_status()
        await pilot.press("2")
    lab = sample_lab("published-port")
    assert snap_compare(make_app(lab, trace=False), run_before=unavailable)


def test_filter_with_no_match(snap_compare):
    async def filt(pilot):
        await pilot.press("slash", *"nomatch")
    assert snap_compare(bridge_app(), run_before=filt)
