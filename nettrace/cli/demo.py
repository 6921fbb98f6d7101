"""`nettrace demo`: the main job end to end on the embedded default bridge lab.

Brings the `bridge` lab up (as lab `demo`), traces an ICMP echo from c1 to c2 and its
reply hop by hop, prints the path, and takes the lab down again (also on Ctrl-C or error).
This is what `make demo` runs.
"""

from __future__ import annotations

import sys
import time

import click


def _step(msg: str) -> None:
    click.secho(f"==> {msg}", bold=True, err=True)


@click.command("demo")
@click.option("--keep", is_flag=True, help="Leave the demo lab up afterwards.")
def demo_cmd(keep: bool) -> None:
    """Bring up the default bridge lab, trace c1 -> c2 and its reply, take the lab down."""
    from nettrace.cli.views import console, print_lab_summary
    from nettrace.errors import require_root
    from nettrace.topology import builder, spec
    from nettrace.topology.model import running_labs
    from nettrace.trace import Tracer
    from nettrace.views.paths import render

    require_root("nettrace demo")
    if "demo" in running_labs():
        _step("a 'demo' lab is still up from an earlier run: taking it down")
        builder.down("demo")
    _step("bringing up the embedded 'bridge' lab (docker0 172.17.0.0/16, containers c1 and c2)")
    t0 = time.perf_counter()
    lab = builder.up(spec.load("bridge", name="demo"))
    click.echo(f"    lab 'demo' up in {time.perf_counter() - t0:.2f} s: "
               f"{len(lab.namespaces)} namespaces", err=True)
    print_lab_summary(lab)
    try:
        _step("attaching eBPF probes (tracepoints, netfilter hooks, TC) and tracing "
              "an ICMP echo c1 -> c2")
        t0 = time.perf_counter()
        with Tracer(lab, progress=lambda m: click.echo(f"    {m}", err=True)) as tracer:
            from nettrace.inject.request import InjectRequest
            paths = tracer.path(InjectRequest("c1", "c2", proto="icmp"), timeout=2.0)
        click.echo(f"    traced in {time.perf_counter() - t0:.2f} s (probe compile included)",
                   err=True)
        out = console()
        for p in paths:
            render(out, p)
    finally:
        if keep:
            _step("leaving lab 'demo' up (nettrace lab down demo removes it)")
        else:
            _step("taking the lab down")
            report = builder.down("demo")
            click.echo(f"    {report.namespaces} namespaces removed; nothing left behind", err=True)
    delivered = all(p.verdict.kind == "delivered" for p in paths)
    _step("c1 reached c2 and the reply came back" if delivered else
          "the packet did not make it: see the path above")
    sys.exit(0 if delivered else 1)


def register(cli: click.Group) -> None:
    cli.add_command(demo_cmd)
