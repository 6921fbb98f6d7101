"""`nettrace path`, `nettrace trace`, `nettrace probes`: the tracer from the command line.

Exit codes: 0 the outcome was the expected one (delivered by default), 1 it was not,
2 usage or environment errors (not root, no BTF, bcc missing; the reason is printed).
"""

from __future__ import annotations

import sys

import click

from nettrace.cli.common import Seconds, check_output_file, docker_option, get_lab, writing
from nettrace.cli.views import console as views_console


def _err_progress(quiet: bool):
    if quiet:
        return None
    return lambda msg: click.echo(f"nettrace: {msg}", err=True) if sys.stderr.isatty() else None


def _lab_src_dst(args: tuple[str, ...], docker: str | None) -> tuple[str | None, str, str]:
    """LAB SRC DST, or SRC DST with --docker."""
    if len(args) == 3:
        return args[0], args[1], args[2]
    if len(args) == 2 and docker is not None:
        return None, args[0], args[1]
    raise click.UsageError("expected LAB SRC DST (or SRC DST with --docker, or LAB alone for "
                           "a lab whose file has a trace: key)")


def _lab_trace(lab_name: str):
    """The `trace:` flow of a running lab's file (fault labs name the flow they are about)."""
    from nettrace.errors import NettraceError
    from nettrace.topology import spec
    from nettrace.topology.model import load_lab
    source = load_lab(lab_name).source
    try:
        trace = spec.load(source).trace if source else None
    except NettraceError as exc:
        raise click.UsageError(f"lab '{lab_name}' alone: its file {source} cannot be read "
                               f"again ({exc}); give SRC DST") from None
    if trace is None:
        raise click.UsageError(f"lab '{lab_name}' alone: its file ({source}) has no trace: "
                               f"key; give SRC DST")
    return trace


@click.command("path")
@click.argument("args", nargs=-1, metavar="LAB [SRC DST]")
@click.option("--proto", default=None, metavar="[icmp|udp|tcp|arp|nd]",
              help="Packet to inject (default icmp, or tcp when DST is HOST:PORT). icmp is "
              "ICMPv6 echo over IPv6; nd is IPv6 neighbour discovery (IPv6's ARP).")
@click.option("-6", "--ipv6", "ipv6", is_flag=True, help="Resolve container and host names "
              "to their IPv6 addresses (an IPv6 DST such as fd00:40::3 or [fd00:40::3]:80 "
              "implies it).")
@click.option("--dport", type=int, default=None, help="Destination port (1-65535; tcp and "
              "udp only).")
@click.option("--count", type=int, default=1, show_default=True, help="Packets to inject "
              "(1-1000), each traced with its reply.")
@click.option("--size", type=int, default=None, metavar="BYTES",
              help="IP packet size in bytes (28-65535, the payload is padded), e.g. 1450 to "
              "find an MTU black hole.")
@click.option("--df", is_flag=True, help="Set Don't Fragment: a link with a smaller MTU drops "
              "the packet (and its router answers ICMP fragmentation-needed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per path (schema: "
              "nettrace.views.paths).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "mermaid"]),
              default="table", show_default=True,
              help="table: hop tables and why/fix; json: as --json; mermaid: the path drawn "
                   "over the lab's topology (a ```mermaid block for a GitHub issue).")
@click.option("--expect", type=click.Choice(["delivered", "dropped"]), default=None,
              help="Exit 0 when every path ends like this, else 1 (default: delivered, unless "
              "--expect-cause is given).")
@click.option("--expect-cause", "expect_cause", default=None, metavar="CODE",
              help="Exit 0 only when every path's diagnosis has this cause code (ok, "
              "network-isolation, icc-disabled, ...: see README), else 1; an unknown code "
              "exits 2.")
@click.option("--compact", is_flag=True, default=None,
              help="Hop table in 100 columns (automatic on a narrow terminal).")
@click.option("--timeout", type=Seconds(0.05, 60), default=2.0, show_default=True,
              help="Seconds to wait for each packet and its reply.")
@click.option("--l2", "layer2", is_flag=True, help="Inject a raw Ethernet frame on SRC's "
              "interface instead of going through its IP stack.")
@click.option("--pcapng", "pcapng_file", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Also write the packets, at every hop, to this pcapng file "
              "(one interface per lab device, the hop in each packet's comment).")
@click.option("--save", "bundle_file", type=click.Path(dir_okay=False, writable=True),
              default=None, metavar="FILE",
              help="Also write a trace bundle (the raw events, nft trace lines, names and lab; "
              "gzip'd when FILE ends in .gz): `nettrace show FILE` prints these paths again "
              "without root or the lab.")
@docker_option
def path_cmd(args, proto, ipv6, dport, count, size, df, as_json, fmt, expect, expect_cause, compact,
             timeout, layer2, pcapng_file, bundle_file, docker):
    """Inject a packet from SRC to DST in LAB and show every hop, and its reply.

    SRC and DST are container names, IPs, or HOST:PORT for a published port (send from
    the external client). Example: nettrace path bridge c1 c2 --proto tcp --dport 80

    \b
    On a live Docker engine (DOCKER_HOST, or --docker-host URL):
      nettrace path --docker c1 c2

    MTU: nettrace path overlay c1 c2 --size 1450 --df

    A lab whose file names its flow (`trace:`, as every fault lab does) is traced with
    LAB alone: nettrace lab up faults/icc-disabled && nettrace path icc-disabled

    IPv6: nettrace path dual-stack c1 c2 -6   (or --proto nd for neighbour discovery)

    Under the verdict, `why:` says in Docker's terms why the packet (or its reply) ended as
    it did, naming the hop and the rule, and `fix:` the docker command(s) and the same
    change to the lab file. Pin it in scripts: --expect-cause network-isolation
    """
    from nettrace.diagnosis import Cause, attach
    from nettrace.trace import Tracer
    from nettrace.trace import tracer as tracer_mod
    from nettrace.views.paths import outcome, render, to_json_lines
    if expect_cause is not None and expect_cause not in {c.value for c in Cause}:
        raise click.BadParameter(f"unknown cause code {expect_cause!r} (known: "
                                 f"{', '.join(c.value for c in Cause)})",
                                 param_hint="'--expect-cause'")
    tracer_mod.open_ahead()    # bcc compiles while the lab loads (or Docker is discovered)
    if len(args) == 1 and docker is None:          # LAB alone: the flow its file names
        trace = _lab_trace(args[0])
        lab, src, dst = args[0], trace.src, trace.dst
        proto = proto or trace.proto
        dport = dport or trace.dport
        size = size or trace.size
        df = df or trace.df
    else:
        lab, src, dst = _lab_src_dst(args, docker)
    for file, option in ((pcapng_file, "'--pcapng'"), (bundle_file, "'--save'")):
        if file:
            check_output_file(file, option)
    the_lab = get_lab(lab, docker)
    from nettrace.inject.request import InjectRequest
    from nettrace.trace.endpoints import resolve_request
    request = InjectRequest(src, dst, proto=proto, dport=dport, count=count, size=size, df=df,
                            family=6 if ipv6 else None, layer="l2" if layer2 else "l3")
    resolve_request(the_lab, request)          # a bad request exits 2 before any probe loads
    with Tracer(the_lab, progress=_err_progress(as_json)) as tr:
        tr.records = [] if bundle_file else None
        paths = tr.path(request, timeout=timeout)
    if bundle_file:
        from nettrace.trace import bundle
        saved = bundle.Bundle.of_lab(the_lab, tr.names)
        saved.traces = tr.records
        bundle.save(saved, bundle_file)
        click.echo(f"nettrace: wrote a bundle of {len(saved.traces)} traces to {bundle_file}",
                   err=True)
    attach(paths, the_lab)
    if fmt == "mermaid":
        from nettrace.cli.bundle import mermaid_blocks
        click.echo(mermaid_blocks(paths, the_lab))
    elif as_json or fmt == "json":
        click.echo(to_json_lines(paths))
    else:
        console = views_console()
        for p in paths:
            render(console, p, the_lab, compact=compact)
    if pcapng_file:
        from nettrace.capture.pcapng import write_paths
        with writing(pcapng_file, "--pcapng"):
            written = write_paths(pcapng_file, paths, the_lab)
        click.echo(f"nettrace: wrote {written} packets to {pcapng_file}", err=True)
    if expect is None and expect_cause is None:
        expect = "delivered"
    ok = all((expect is None or outcome(p) == expect) and
             (expect_cause is None or p.diagnosis.cause.value == expect_cause) for p in paths)
    sys.exit(0 if ok else 1)


@click.command("trace")
@click.argument("lab", required=False)
@click.argument("expr", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per observed packet, "
              "then one {\"summary\": {...}} object with the counters.")
@click.option("--max-events", type=click.IntRange(100, 10_000_000), default=50_000,
              show_default=True, help="Events held for packets not shown yet (the memory "
              "bound, at most 1 KiB each); packets beyond it are counted as dropped by nettrace.")
@click.option("--ring-kib", type=click.IntRange(4, 1 << 20), default=64 << 10, show_default=True,
              help="Kernel ring buffer size in KiB (a power of two): events wait there until "
              "nettrace reads them; when it is full the kernel counts them as lost.")
@docker_option
def trace_cmd(lab, expr, as_json, max_events, ring_kib, docker):
    """Stream the hops of LAB's traffic matching EXPR until Ctrl-C (or SIGTERM, SIGHUP).

    EXPR is a small tcpdump subset: icmp|udp|tcp|arp, host A, src A, dst A, port N,
    joined by 'and' (A: IPv4 or container name). 'or', 'not', 'net' are refused.

    \b
    Ctrl-C, SIGTERM or SIGHUP ends it (exit 0). Each packet is shown 50 ms after
    its first event. Nothing is lost silently: at the end nettrace reports the
    packets shown, the packets it saw but could not keep up with (dropped by
    nettrace: at most --max-events events wait to be shown), and the events the
    kernel could not hand over (ring buffer full). Packets still waiting when you
    press Ctrl-C are shown before nettrace exits.
    """
    import json
    from nettrace.cli.common import stop_on_signal
    from nettrace.trace import Tracer
    from nettrace.views.paths import live_line
    if ring_kib & (ring_kib - 1):
        raise click.BadParameter(f"{ring_kib} is not a power of two", param_hint="--ring-kib")
    the_lab = get_lab(lab, docker)
    text = " ".join(expr) or None
    from nettrace.trace import expr as live_expr           # a bad expression: before any probe
    live_expr.parse(text, lambda n: the_lab.sandboxes[n].ip() if n in the_lab.sandboxes else None)
    with Tracer(the_lab, progress=_err_progress(as_json), nftrace=False, watch=False,
                ring_pages=ring_kib // 4) as tr, stop_on_signal() as stopped:
        click.echo(f"nettrace: tracing {the_lab.name} ({text or 'all traffic'}); Ctrl-C stops",
                   err=True)
        try:
            for p in tr.live(expr=text, stop=stopped, max_events=max_events):
                click.echo(json.dumps(p.to_dict()) if as_json else live_line(p, the_lab))
        finally:        # also when a second signal cuts the flush short: the counters
            _live_summary(tr, as_json)


def _live_summary(tr, as_json: bool) -> None:
    import json
    stats = tr.live_stats
    if stats is None:
        return
    lost = tr.events_lost if tr._live_probes is not None else tr.live_lost
    # packets still held when a second signal cut the flush short are dropped too
    dropped = stats.dropped + stats.held_packets
    summary = {"packets_shown": stats.shown, "packets_dropped_by_nettrace": dropped,
               "events_lost_in_kernel": lost, "events": stats.events,
               "events_discarded": stats.events_discarded, "late_events": stats.late_events,
               "events_of_dropped_packets": stats.dropped_events,
               "held_events_peak": stats.held_events_peak,
               "memory_bound_bytes": stats.memory_bound_bytes}
    try:
        if as_json:
            click.echo(json.dumps({"summary": summary}))
        click.echo(f"nettrace: {stats.shown} packets shown, {dropped} dropped by nettrace "
                   f"(could not keep up), {lost} events lost in the kernel (ring buffer full)",
                   err=True)
    except OSError:                          # the terminal is gone (SIGHUP)
        pass


@click.command("probes")
@click.argument("lab", required=False)
@docker_option
def probes_cmd(lab, docker):
    """List the probes that are live on this machine, and why the others are not."""
    from rich.table import Table
    from nettrace.topology.model import Lab
    from nettrace.trace import Tracer
    the_lab = get_lab(lab, docker) if (lab or docker is not None) else Lab(name="(no lab)")
    with Tracer(the_lab, nftrace=bool(lab or docker is not None)) as tr:
        status = tr.probe_status()
    table = Table(title="nettrace probes", title_justify="left")
    for col in ("probe", "live", "why not"):
        table.add_column(col)
    for st in status:
        table.add_row(st.name, "yes" if st.live else "no", st.reason or "",
                      style=None if st.live else "yellow")
    views_console().print(table)


def register(cli: click.Group) -> None:
    cli.add_command(path_cmd)
    cli.add_command(trace_cmd)
    cli.add_command(probes_cmd)
