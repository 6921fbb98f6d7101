"""TUI behaviour driven by keys (Textual Pilot), on recorded labs and paths: no root needed.

Filtering, selection driving the timeline and the map, hop-by-hop packet detail, the
inject form's checks, pcapng saving checked with tshark, and `nettrace tui` argument errors.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import time

import pytest

from conftest import needs_tool, run_cli
from nettrace.errors import NettraceError
from nettrace.inject.request import InjectRequest
from tui.app import make_app
from tui.sample import bridge_ping, isolation_drop, many_paths, sample_lab
from tui.screens.inject import InjectScreen, parse_form
from tui.widgets.packets import PacketList
from tui.widgets.timeline import PathTimeline
from tui.widgets.topomap import DROP_STYLE, TopologyMap, draw_map, legend


def pilot(fn):
    """Run an async Pilot test on its own event loop (no async pytest plugin needed)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    return run


async def until(pilot, condition, timeout: float, what: str) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.1)


def mixed():
    bridge, users = sample_lab("bridge"), sample_lab("user-bridges")
    return users, [bridge_ping(bridge), isolation_drop(users), bridge_ping(bridge, t0=7_000_000_000)]


@pilot
async def test_filter_narrows_and_negates_then_restores():
    lab, paths = mixed()
    app = make_app(lab, paths=paths, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(PacketList)
        assert table.row_count == 3
        await pilot.press("slash", *"dropped")
        assert table.row_count == 1
        assert app.paths[table.current_index()].verdict.kind == "dropped"
        await pilot.press(*" !c3")                     # contradiction: nothing left
        assert table.row_count == 0
        app.query_one("#filter").value = "!dropped"
        await pilot.pause()
        assert table.row_count == 2
        assert all(app.paths[i].verdict.kind == "delivered" for i in table.shown)
        app.query_one("#filter").value = ""
        await pilot.pause()
        assert table.row_count == 3


@pilot
async def test_selecting_a_packet_drives_timeline_and_map():
    lab, paths = mixed()
    app = make_app(lab, paths=paths, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PathTimeline)
        assert timeline.path is paths[0]
        await pilot.press("down")
        assert app.selected == 1 and timeline.path is paths[1]
        for m in app.query(TopologyMap):
            assert m.path is paths[1]
        # the map numbers the places in the order the packet took them, drop last
        steps = draw_map(lab).steps(paths[1])
        # (c1 LOCAL_OUT/POST_ROUTING/transmit, the veth, the front bridge's PRE_ROUTING and
        # receive, FORWARD toward the back bridge where it is dropped; the free is no place)
        assert [s.place for s in steps] == ["c1:eth0", f"host:{paths[1].hops[3].device}",
                                            f"host:{lab.network('front').device}",
                                            f"host:{lab.network('back').device}"]
        assert [s.dropped for s in steps] == [False, False, False, True]
        drawing = app.query(TopologyMap).first().drawing
        text = drawing.render(paths[1])
        words = legend(drawing.steps(paths[1]), paths[1]).plain.replace("\u00a0", " ")
        assert words.startswith("1 c1:eth0 → 2 host:veth") and words.endswith("✗ dropped")
        assert any(span.style == DROP_STYLE for span in text.spans)
        # walking the hops moves the current-hop highlight
        await pilot.press("tab", "down")
        assert app.query(TopologyMap).first().current_hop == 1


@pilot
async def test_reply_hops_are_listed_and_open_in_detail():
    lab = sample_lab("bridge")
    path = bridge_ping(lab)
    app = make_app(lab, paths=[path], trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PathTimeline)
        ids = [e.id for e in timeline.entries]
        assert "request:4" in ids and "reply:4" in ids
        assert ids.index("reply:0") > ids.index("request:4")
        timeline.focus()
        timeline.select_id("reply:4")
        await pilot.press("enter")
        assert type(app.screen).__name__ == "PacketDetailScreen"
        assert app.screen.path is path.reply and app.screen.index == 4


@pilot
async def test_packet_detail_dissects_and_steps_through_hops():
    lab = sample_lab("bridge")
    app = make_app(lab, paths=[bridge_ping(lab)], trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("tab", "enter")
        await until(pilot, lambda: app.screen.query("#dissection"), 5, "the packet detail")
        screen = app.screen
        dissection = str(screen.query_one("#dissection").render())
        # hop 1 is c1's LOCAL_OUT hook: the IP packet, no link header yet
        assert "###[ IP ]###" in dissection and "###[ Ethernet ]###" not in dissection
        assert "172.17.0.3" in dissection and "echo-request" in dissection
        assert "0000" in str(screen.query_one("#hexdump").render())
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert screen.index == 2                   # c1:eth0 transmit: the Ethernet frame
        assert "###[ Ethernet ]###" in str(screen.query_one("#dissection").render())
        assert "hop 3/12" in str(screen.query_one("#detail-head").render())
        await pilot.press(*["right_square_bracket"] * 9)
        assert screen.index == 11                  # the free in c2: no bytes, header fields
        assert "no frame bytes" in str(screen.query_one("#dissection").render())
        await pilot.press(*["left_square_bracket"] * 12)
        assert screen.index == 0
        await pilot.press("escape")
        assert type(app.screen).__name__ != "PacketDetailScreen"


def test_parse_form_names_the_field():
    """The form's text becomes an InjectRequest checked by the one check of every request
    (resolve_request, as `nettrace path` and Tracer.path); errors start with the field's
    label, also for what only the lab can tell (a node that is not in it, the same node)."""
    lab, port = sample_lab("bridge"), sample_lab("published-port")
    assert parse_form(lab, "c1", "c2", "icmp", "", "1") == InjectRequest("c1", "c2", "icmp")
    req = parse_form(port, "client", "192.168.50.11:8080", "tcp", "", "3")
    assert (req.src, req.proto, req.dport, req.count) == ("client", "tcp", None, 3)
    assert parse_form(lab, "c1", "c2", "udp", "53", "1").dport == 53
    assert parse_form(lab, "c1", " c2:80 ", "tcp", "80", "2") == \
        InjectRequest("c1", "c2:80", "tcp", 80, 2)
    for args, field, words in [
            ((None, "c2", "icmp", "", "1"), "source", "SRC"),
            (("c9", "c2", "icmp", "", "1"), "source", "SRC 'c9' is not a container"),
            (("c1", " ", "icmp", "", "1"), "destination", "DST"),
            (("c1", "c9", "icmp", "", "1"), "destination", "DST 'c9' is not a container"),
            (("c1", "c1", "icmp", "", "1"), "destination", "are the same node"),
            (("c1", "127.0.0.1", "icmp", "", "1"), "destination", "a loopback address"),
            (("c1", "c2", "sctp", "", "1"), "protocol", "'sctp'"),
            (("c1", "c2", "udp", "0", "1"), "port", "1-65535 (not 0)"),
            (("c1", "c2", "udp", "x", "1"), "port", "a number, not 'x'"),
            (("c1", "c2", "icmp", "80", "1"), "port", "icmp has no ports"),
            (("c1", "c2:x", "tcp", "", "1"), "destination", "the port after ':'"),
            (("c1", "c2:80", "tcp", "81", "1"), "port", "contradicts"),
            (("c1", "c2", "icmp", "", "0"), "count", "1-1000 (not 0)"),
            (("c1", "c2", "icmp", "", "1001"), "count", "1-1000 (not 1001)")]:
        with pytest.raises(NettraceError, match=f"^{field}: ") as err:
            parse_form(lab, *args)
        assert words in str(err.value), (args, str(err.value))


@pilot
async def test_inject_form_without_tracer_says_so_and_sends_nothing():
    lab = sample_lab("bridge")
    app = make_app(lab, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: app.screen.query("#dst"), 5, "the inject form")
        await pilot.press("ctrl+s")                 # c1 -> c2 icmp x1 is a valid default
        assert not isinstance(app.screen, InjectScreen)
        assert any("cannot inject" in n.message for n in app._notifications)
        assert app.paths == []


@needs_tool("tshark")
@pilot
async def test_save_shown_packets_as_pcapng(tmp_path):
    lab, paths = mixed()
    app = make_app(lab, paths=paths, trace=False)
    out = tmp_path / "shown.pcapng"
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#filter").value = "delivered"
        await pilot.pause()
        await pilot.press("s")
        await until(pilot, lambda: app.screen.query("#answer"), 5, "the file name prompt")
        app.screen.query_one("#answer").value = str(out)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    hops = sum(len(p.hops) + len(p.reply.hops) for p in paths if p.verdict.kind == "delivered")
    frames = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(frames) == hops == 2 * (len(paths[0].hops) + len(paths[0].reply.hops))


def test_cli_rejects_bad_paths_file_naming_file_and_line(tmp_path):
    lab = sample_lab("bridge")
    good = json.dumps(bridge_ping(lab).to_dict())
    bad = tmp_path / "paths.jsonl"
    bad.write_text(good + "\n{not json\n")
    proc = run_cli("tui", "--no-trace", "--paths", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2: not JSON" in proc.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"lab": "x"}]))
    proc = run_cli("tui", "--no-trace", "--paths", str(wrong))
    assert proc.returncode == 2 and f"{wrong}:1: not a nettrace path" in proc.stderr
    proc = run_cli("tui", "no-such-lab")
    assert proc.returncode == 2 and "no embedded lab called 'no-such-lab'" in proc.stderr


def test_many_paths_builds_the_benchmark_load():
    lab = sample_lab("bridge")
    paths = many_paths(lab, 10_000)
    pair = len(paths[0].hops) + len(paths[0].reply.hops)
    assert 10_000 <= sum(len(p.hops) + len(p.reply.hops) for p in paths) < 10_000 + pair


@pytest.mark.parametrize("name", ["bridge", "user-bridges", "icc-off", "internal", "host", "none",
                                  "macvlan", "overlay", "published-port"])
def test_map_draws_every_endpoint_bridge_and_uplink(name):
    lab = sample_lab(name)
    anchors = draw_map(lab).canvas.anchors
    for sb in lab.sandboxes.values():
        assert (sb.netns, None) in anchors, f"no box for {sb.name}"
        for ep in sb.endpoints:
            assert (sb.netns, ep.ifname) in anchors, f"{sb.name}:{ep.ifname} not drawn"
            if ep.host_ifname:
                assert (ep.host_netns, ep.host_ifname) in anchors, f"{ep.host_ifname} not drawn"
    for itf in lab.interfaces:
        if itf.role.value in ("bridge", "vxlan", "uplink"):
            assert (itf.netns, itf.ifname) in anchors, f"{itf.netns}/{itf.ifname} not drawn"
    if lab.underlay_netns:
        assert (lab.underlay_netns, "lan0") in anchors


@pilot
async def test_command_palette_opens_the_inject_form():
    lab = sample_lab("bridge")
    app = make_app(lab, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Inject a packet")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, InjectScreen), 5, "the inject form")


@pilot
async def test_mouse_click_selects_a_packet_and_resize_moves_the_map():
    lab, paths = mixed()
    app = make_app(lab, paths=paths, trace=False)
    async with app.run_test(size=(160, 40)) as pilot:
        assert app.has_class("-wide")                       # map beside the packets
        assert app.query_one("#trace-map").display
        await pilot.click(PacketList, offset=(3, 3))        # header row + rows 0, 1, [2]
        assert app.selected == 2
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not app.has_class("-wide")
        assert not app.query_one("#trace-map").display
        assert app.query_one(PathTimeline).path is paths[2]


@pilot
async def test_cursor_in_the_cnm_tree_points_at_the_element_on_the_map():
    lab = sample_lab("bridge")
    app = make_app(lab, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        c1 = lab.sandbox("c1")
        await pilot.press("down", "down", "down")    # lab → host → sandbox c1 → endpoint eth0
        topo_map = app.query_one("#topo-map TopologyMap")
        assert topo_map.focus_key == (c1.netns, "eth0")
        await pilot.press("down")                     # → its network: the docker0 bus
        assert topo_map.focus_key == (lab.hosts["host"].netns, "docker0")
        await pilot.press("up")
        text = topo_map.drawing.render(None, None, topo_map.focus_key)
        row = next(line for line in text.split("\n") if "172.17.0.2" in line.plain)
        assert any(span.style == "bold reverse" for span in row.spans)
