"""The TUI against real labs, as root: bring a lab up and down from inside it, and inject
through the inject form with the real tracer (eBPF), seeing the delivered path with its
hops and the isolation drop with its rule. Quitting must detach every probe."""

from __future__ import annotations

import os

import pytest

from conftest import missing, needs_root, our_namespaces
from nettrace.views.paths import verdict_line
from nettrace.topology.model import ns_name, running_labs
from test_tui_pilot import pilot, until
from tui.app import make_app
from tui.screens.inject import InjectScreen
from tui.screens.labs import LabsScreen
from tui.screens.teardown import TeardownScreen
from tui.widgets.cnm_tree import CnmTree
from tui.widgets.timeline import PathTimeline
from tui.widgets.topomap import TopologyMap

pytestmark = needs_root


def tracer_missing() -> str | None:
    try:
        from nettrace.trace import Tracer  # noqa: F401
    except ImportError as exc:
        return f"the tracing engine is not on main yet ({exc})"
    return None


needs_tracer = pytest.mark.skipif(tracer_missing() is not None, reason=missing(str(tracer_missing())))


def bpf_links() -> int:
    """BPF programs and links this process holds (a global count would race other users)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target in ("anon_inode:bpf-prog", "anon_inode:bpf_link", "anon_inode:bpf-link")
    return count


@pilot
async def test_bring_a_lab_up_from_the_tui_and_take_it_down_on_quit():
    name = "none"
    if name in running_labs():
        pytest.skip(f"lab {name} is already up in this state directory")
    app = make_app(None, trace=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LabsScreen)
                    and app.screen.query("#lab-list"), 5, "the lab picker")
        options = app.screen.query_one("#lab-list")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = ids.index(f"emb:{name}")
        await pilot.press("u")
        await until(pilot, lambda: app.lab is not None, 60, f"lab {name} to come up")
        assert name in running_labs() and name in app.labs_brought_up
        assert any(ns.startswith(ns_name(name) + ".") for ns in our_namespaces())
        tree = app.query_one(CnmTree)
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert any("lonely" in label for label in labels)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, TeardownScreen), 5, "the teardown offer")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 60, "the app to take the lab down and exit")
    assert name not in running_labs()
    assert not any(ns.startswith(ns_name(name) + ".") for ns in our_namespaces())


async def inject(pilot, app, dst: str, src: str = "c1", proto: str = "icmp") -> None:
    await until(pilot, lambda: app.tracer_state != "starting", 120, "the tracer to attach")
    assert app.tracer_state == "ready", f"tracer not ready: {app.tracer_detail}"
    before = len(app.paths)
    await pilot.press("i")
    await until(pilot, lambda: isinstance(app.screen, InjectScreen) and app.screen.query("#dst"),
                5, "the inject form")
    app.screen.query_one("#src").value = src
    app.screen.query_one("#proto").value = proto
    app.screen.query_one("#dst").value = dst
    await pilot.press("ctrl+s")
    await until(pilot, lambda: len(app.paths) > before, 30, f"the path to {dst}")


def nftrace_rules(lab) -> list[str]:
    """Temporary `meta nftrace set 1` rules left in the lab's hosts."""
    from nettrace.topology import netns
    return [f"{host.name}: {line.strip()}" for host in lab.hosts.values()
            for line in netns.run(host.netns, ["nft", "list", "ruleset"]).stdout.splitlines()
            if "nftrace set 1" in line]


async def quit_detaches(pilot, app, links_before: int) -> None:
    import asyncio
    await pilot.press("q")
    await until(pilot, lambda: not app.is_running, 30, "quit to detach probes")
    assert app.session is None or app.session.finished.is_set()
    assert bpf_links() == links_before, "probes left attached after quitting"
    assert await asyncio.to_thread(nftrace_rules, app.lab) == [], "temporary nftrace rules left"


@pilot
async def traced(lab, dst: str, check, src: str = "c1", proto: str = "icmp") -> None:
    """Open the TUI on `lab`, inject `src` -> `dst` from the form, `check(app, path)`, quit."""
    links = bpf_links()
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot, app, dst, src, proto)
        check(app, app.paths[-1])
        await quit_detaches(pilot, app, links)


@needs_tracer
def test_inject_c1_to_c2_on_the_bridge_lab_shows_the_delivered_path(labs):
    def check(app, path):
        assert path.verdict.kind == "delivered", verdict_line(path)
        places = [h.place for h in path.hops]
        assert places[0] == "c1:eth0" and "c2:eth0" in places
        assert any(h.device == "docker0" for h in path.hops)
        assert path.reply is not None and path.reply.verdict.kind == "delivered"
        assert app.query_one(PathTimeline).path is path
        steps = app.query(TopologyMap).first().drawing.steps(path)
        assert steps[0].place == "c1:eth0" and all(s.key is not None for s in steps)
    traced(labs("bridge"), "c2", check)   # lab built outside the app's event loop (pyroute2)


@needs_tracer
def test_inject_across_isolated_bridges_shows_the_drop_and_its_rule(labs):
    def check(app, path):
        assert path.verdict.kind == "dropped", verdict_line(path)
        # Docker 29 (default): dropped as a direct access in raw PREROUTING
        rule = path.verdict.rule
        assert rule is not None and (rule.table, rule.chain) == ("raw", "PREROUTING")
        timeline = app.query_one(PathTimeline)
        text = "\n".join(e.text.plain for e in timeline.entries)
        assert "✗ dropped" in text and "PREROUTING" in text
    traced(labs("user-bridges"), "c3", check)


@needs_tracer
def test_inject_from_the_external_client_to_a_published_port_shows_the_dnat(labs):
    lab = labs("published-port")
    host = lab.hosts["host"].address

    def check(app, path):
        assert path.src == "client" and path.proto == "tcp"
        assert path.verdict.kind == "delivered", verdict_line(path)
        changes = [c for h in path.hops for c in h.changes]
        assert any("DNAT" in c and ":80" in c for c in changes), changes
        assert any(h.place == "web:eth0" for h in path.hops)
        steps = app.query(TopologyMap).first().drawing.steps(path)
        assert [s.place for s in steps][:2] == ["client:eth0", "underlay:p-client"]
    traced(lab, f"{host}:8080", check, src="client", proto="tcp")


@needs_tracer
def test_a_crash_still_detaches_every_probe(labs):
    """What `nettrace tui` does after the app ends for any reason: close the session."""
    lab = labs("bridge")
    links = bpf_links()
    with pytest.raises(ZeroDivisionError):
        app = crash_once_attached(lab, links)
    app = crash_once_attached.app
    assert app.close_session(timeout=30), "the tracer thread did not leave its Tracer block"
    assert bpf_links() == links, "probes left attached after a crash"


@pilot
async def crash_once_attached(lab, links_before: int):
    app = crash_once_attached.app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.tracer_state != "starting", 120, "the tracer to attach")
        assert app.tracer_state == "ready", app.tracer_detail
        assert bpf_links() > links_before, "no probe was attached"
        app.call_later(lambda: 1 / 0)                # a bug in a handler
        await until(pilot, lambda: not app.is_running, 10, "the app to stop on the error")


@needs_tracer
def test_live_watch_shows_observed_traffic(labs):
    watch_ping(labs("bridge"))


@pilot
async def watch_ping(lab):
    import asyncio

    from nettrace.topology import netns
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.tracer_state != "starting", 120, "the tracer to attach")
        await pilot.press("w")
        await until(pilot, lambda: app.screen.query("#answer"), 5, "the watch prompt")
        app.screen.query_one("#answer").value = "icmp"
        await pilot.press("enter")
        c2 = lab.sandbox("c2").ip()
        for _ in range(10):                      # the watch starts asynchronously: ping until seen
            await asyncio.to_thread(netns.run, lab.sandbox("c1").netns,
                                    ["ping", "-c", "1", "-W", "1", c2], check=False)
            await pilot.pause(0.5)
            if any(p.dst == c2 for p in app.paths):
                break
        await until(pilot, lambda: any(p.dst == c2 for p in app.paths), 5, "the observed ping")
        seen = next(p for p in app.paths if p.dst == c2)
        assert seen.direction == "observed" and seen.proto == "icmp"
        assert any(h.place == "c2:eth0" for h in seen.hops)
        await pilot.press("w")                                   # stop watching
        assert app.live_expr is None
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, 30, "quit")
