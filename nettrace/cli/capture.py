"""`nettrace replay`, `nettrace record`, `nettrace check`: captures in and out of labs."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import click

from nettrace.cli.common import Seconds, check_output_file, get_lab, writing
from nettrace.errors import require_root


@contextmanager
def _progress(enabled: bool, what: str) -> Iterator:
    """A progress bar on stderr when it is a terminal (bytes of the capture read, frames
    traced and their rate, time left); a no-op callback otherwise. The callback is called
    once per traced frame."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn(what), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[frames]:,} frames, {task.fields[rate]:,.0f}/s"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=1, frames=0, rate=0.0)
        start, frames = 0.0, 0

        def update(done: int, total: int) -> None:
            nonlocal frames, start
            frames += 1
            if frames == 1:                     # the rate of tracing, not of start-up
                start = time.monotonic()
            rate = (frames - 1) / max(time.monotonic() - start, 1e-6)
            bar.update(task, completed=done, total=max(total, 1), frames=frames, rate=rate)
        yield update


@click.command("replay")
@click.argument("lab")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--from", "source", required=True, metavar="CONTAINER",
              help="Lab node that sends the frames: a container (NAME or NAME@NETWORK), "
                   "an external client or a Docker host.")
@click.option("--rewrite", "rewrites", multiple=True, metavar="OLD=NEW|auto",
              help="Map a capture address (IP or MAC) to a lab node or address, e.g. "
                   "--rewrite 10.0.0.5=c2; 'auto' maps the first frame's source to --from. "
                   "Repeatable.")
@click.option("--layer", type=click.Choice(["auto", "l2", "l3"]), default="auto",
              show_default=True,
              help="Send IP frames at layer 3 (the kernel routes them), others at layer 2.")
@click.option("--timeout", type=Seconds(0.05, 60), default=2.0, show_default=True,
              help="Seconds to wait for each frame's path to end.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per frame (with its path), then one with the summary.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@click.option("-o", "--pcapng", "pcapng_out", type=click.Path(dir_okay=False),
              help="Also write every traced path to this pcapng file (a packet per hop).")
@click.option("--no-rules", is_flag=True,
              help="Skip netfilter rule attribution (nft trace); drops still show the hook "
                   "and the drop reason.")
@click.option("--save", "bundle_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a trace bundle of every frame traced (as `nettrace path "
              "--save`; gzip'd when FILE ends in .gz): `nettrace show FILE` prints the paths "
              "again without root or the lab. Written also when the replay stops early (what was "
              "traced until then).")
def replay_cmd(lab: str, capture: str, source: str, rewrites: tuple[str, ...], layer: str,
               timeout: float, as_json: bool, quiet: bool, pcapng_out: str | None,
               no_rules: bool, bundle_file: str | None) -> None:
    """Inject every frame of CAPTURE (pcap or pcapng) into LAB and trace each one.

    \b
    Example:
      nettrace replay bridge dns.pcap --from c1 --rewrite auto --rewrite 10.0.0.53=c2
      nettrace replay bridge dns.pcap --from c1 --save dns.bundle.json.gz
    """
    from nettrace.capture.replay import ReplaySummary, replay
    from nettrace.views.paths import verdict_line
    if pcapng_out:
        check_output_file(pcapng_out, "'-o' / '--pcapng'")
    if bundle_file:
        check_output_file(bundle_file, "'--save'")
    require_root("nettrace replay")
    live = get_lab(lab)
    summary = ReplaySummary(capture, live.name, source)
    start = time.perf_counter()
    writer = tracer = None
    try:
        if bundle_file:               # our own Tracer, so its trace records can be saved
            from nettrace.capture.reader import CaptureReader
            CaptureReader(capture).close()       # a bad capture fails before any probe loads
            from nettrace.trace import Tracer
            tracer = Tracer(live, nftrace=not no_rules).__enter__()
            tracer.records = []
        with _progress(not as_json, f"replaying {capture}") as progress:
            frames = replay(live, capture, source, rewrite=rewrites, layer=layer,
                            timeout=timeout, on_progress=progress, summary_out=summary,
                            rules=not no_rules, tracer=tracer)
            if pcapng_out:
                from nettrace.capture.pcapng import PcapngWriter
                with writing(pcapng_out, "-o"):
                    writer = PcapngWriter(pcapng_out, lab=live)
            for result in frames:
                if writer is not None:
                    with writing(pcapng_out, "-o"):
                        writer.write_path(result.path)
                if as_json:
                    click.echo(json.dumps(result.to_dict()))
                elif not quiet:
                    click.echo(f"{result.number:>6}  {result.packet}  ->  "
                               f"{verdict_line(result.path, live)}")
    except BaseException as exc:
        summary.error = summary.error or str(exc) or type(exc).__name__
        raise
    finally:
        summary.seconds = time.perf_counter() - start
        if writer is not None:
            with writing(pcapng_out, "-o"):
                writer.close()
        if tracer is not None:
            tracer.__exit__(None, None, None)
        if tracer is not None and (tracer.records or summary.error is None):
            from nettrace.trace import bundle
            saved = bundle.Bundle.of_lab(live, tracer.names)
            saved.traces = tracer.records
            saved.meta = {"replay": {"capture": capture, "from": source,
                                     "rewrite": list(rewrites), "layer": layer}}
            with writing(bundle_file, "--save"):
                bundle.save(saved, bundle_file)
            click.echo(f"nettrace: wrote a bundle of {len(saved.traces)} traces to "
                       f"{bundle_file}", err=True)
        if as_json:
            click.echo(json.dumps({"summary": summary.to_dict()}))
        elif summary.sent or summary.error is None:      # what was traced before an error
            for line in summary.lines():
                click.echo(line, err=summary.error is not None)


@click.command("record")
@click.argument("lab")
@click.argument("expr", required=False, default="")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="pcapng file to write (one interface per lab device, a comment per hop).")
@click.option("--save", "bundle_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Trace bundle to write (raw events and names; `nettrace show FILE` prints "
              "the paths again offline). At least one of -o and --save.")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after this many paths.")
@click.option("-d", "--duration", type=Seconds(0.001, 7 * 86400),
              help="Stop after this many seconds.")
def record_cmd(lab: str, expr: str, output: str | None, bundle_file: str | None,
               count: int | None, duration: float | None) -> None:
    """Trace LAB live and write every packet path to a pcapng file and/or a trace bundle,
    until Ctrl-C.

    EXPR selects packets (see `nettrace path --help`; e.g. "icmp", "tcp port 80").
    """
    from contextlib import nullcontext
    from nettrace.capture.pcapng import PcapngWriter
    from nettrace.trace import Tracer
    from nettrace.trace import bundle
    from nettrace.trace import expr as live_expr
    if not output and not bundle_file:
        raise click.UsageError("give -o FILE (pcapng), --save FILE (trace bundle), or both")
    for file, option in ((output, "'-o' / '--output'"), (bundle_file, "'--save'")):
        if file:
            check_output_file(file, option)
    require_root("nettrace record")
    live = get_lab(lab)
    # a bad expression is refused before the file is created or a probe is loaded
    live_expr.parse(expr or None, lambda n: live.sandboxes[n].ip() if n in live.sandboxes else None)
    deadline = time.monotonic() + duration if duration else None
    written = {"paths": 0}

    def stop() -> bool:
        return ((count is not None and written["paths"] >= count)
                or (deadline is not None and time.monotonic() >= deadline))

    targets = " and ".join(f for f in (output, bundle_file) if f)
    from nettrace.cli.common import stop_on_signal
    with (PcapngWriter(output, lab=live) if output else nullcontext()) as writer, \
            stop_on_signal() as stopped:
        with Tracer(live) as tracer:
            tracer.observed = [] if bundle_file else None
            click.echo(f"recording lab {live.name}{' ' + expr if expr else ''} to {targets} "
                       f"(Ctrl-C to stop)", err=True)
            try:
                for path in tracer.live(expr or None, lambda: stop() or stopped() is not None):
                    if writer is not None:
                        with writing(output, "-o"):
                            writer.write_path(path)
                    written["paths"] += 1
                    if stop():
                        break
            finally:
                if bundle_file:       # what was seen, also when interrupted
                    saved = bundle.Bundle.of_lab(live, tracer.names)
                    saved.observed = tracer.observed
                    bundle.save(saved, bundle_file)
        interrupted = stopped() is not None
    what = (f" ({writer.packets} packets, {len(writer.interfaces)} interfaces)"
            if writer is not None else "")
    click.echo(f"{'interrupted: ' if interrupted else ''}wrote {written['paths']} paths{what} "
               f"to {targets}", err=True)


@click.command("check")
@click.argument("goldens", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--live", is_flag=True,
              help="Replay each case in a real lab (root) instead of checking its recorded "
                   "bundle offline.")
@click.option("--update", is_flag=True,
              help="Replay live and rewrite each case's signatures (frames:) and bundle; its "
                   "hand-written expect: block is kept and checked (review the diff).")
@click.option("--width", type=int, default=64, show_default=True,
              help="Column width of the side-by-side difference.")
@click.option("--lab-name", metavar="NAME",
              help="Bring each case's lab up under NAME (default: the lab's own name).")
def check_cmd(goldens: tuple[str, ...], live: bool, update: bool, width: int,
              lab_name: str | None) -> None:
    """Check golden cases (captures/CASE.paths.yaml): each frame's path against the case's
    signatures and its hand-written expectations.

    By default offline, from the trace bundle recorded with the case (no root, no lab);
    --live replays the capture in a fresh lab (brought up and down here unless it is up).
    Exits 1 when a frame took a different path or missed an expectation, printing
    expected and actual side by side.
    """
    from nettrace.capture.check import run_case
    from nettrace.capture.golden import load_golden, side_by_side
    if live or update:
        require_root("nettrace check --live")
    failed = 0
    cases = [load_golden(file) for file in goldens]      # every file valid before any work
    for file, case in zip(goldens, cases):
        result = run_case(case, update=update, lab_name=lab_name, live=live,
                          say=lambda m: click.echo(f"  {m}", err=True))
        frames = len(result.actual)
        how = "live" if result.live else "offline"
        if update and not result.problems:
            click.echo(f"updated {file}: {frames} frames ({result.seconds:.1f} s)")
        elif result.passed:
            click.echo(f"ok      {case.name}: {frames} frames, {len(case.expect)} expectations "
                       f"({how}, {result.seconds:.3f} s)")
        else:
            failed += 1
            click.echo(f"FAILED  {case.name} ({how}): {len(result.differences)} of "
                       f"{max(frames, len(case.frames))} frames differ, "
                       f"{len(result.problems)} expectations unmet")
            for problem in result.problems:
                click.echo(f"  expect: {problem}")
            for diff in result.differences:
                for line in side_by_side(diff, width):
                    click.echo("  " + line)
    if len(goldens) > 1:
        click.echo(f"{len(goldens)} cases: {len(goldens) - failed} ok, {failed} failed")
    if failed:
        click.get_current_context().exit(1)


def register(cli: click.Group) -> None:
    for command in (replay_cmd, record_cmd, check_cmd):
        cli.add_command(command)

