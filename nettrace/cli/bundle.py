"""`nettrace show`: print a saved trace bundle with every view, offline (no root, no lab).

The paths are assembled from the bundle's raw events by the same code the live tracer
runs (nettrace.trace.assemble), so they are the paths that were printed when it was
recorded. Format of a bundle: nettrace/trace/bundle.py.
"""

from __future__ import annotations

import click

from nettrace.cli.views import console as views_console


def load_paths(file: str):
    """(bundle, lab model or None, paths with their diagnosis) of a bundle file."""
    from nettrace.diagnosis import attach
    from nettrace.trace import bundle
    saved = bundle.load(file)
    lab = saved.the_lab()
    paths = saved.paths()
    if lab is not None:
        attach(paths, lab)
    return saved, lab, paths


@click.command("show")
@click.argument("bundle_file", metavar="BUNDLE", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per path (the schema of `nettrace path --json`).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "mermaid"]),
              default="table", show_default=True,
              help="table: the hop tables; json: as --json; mermaid: each path drawn over "
                   "the lab's topology, a ```mermaid block to paste into a GitHub issue.")
@click.option("--compact", is_flag=True, default=None,
              help="Hop table in 100 columns (automatic on a narrow terminal).")
def show_cmd(bundle_file: str, as_json: bool, fmt: str, compact: bool | None) -> None:
    """Print every path of a trace bundle (written by `nettrace path --save FILE` or
    `nettrace record --save FILE`), without root and without the lab.

    \b
    Example:
      sudo nettrace path bridge c1 c2 --save c1-c2.bundle.json.gz
      nettrace show c1-c2.bundle.json.gz            # same table, any machine
      nettrace show c1-c2.bundle.json.gz --json
      nettrace show c1-c2.bundle.json.gz --format mermaid >> issue.md
    """
    from nettrace.views.paths import render, to_json_lines
    saved, lab, paths = load_paths(bundle_file)
    if fmt == "mermaid":
        click.echo(mermaid_blocks(paths, lab))
        return
    if as_json or fmt == "json":
        click.echo(to_json_lines(paths))
        return
    console = views_console()
    console.print(f"bundle {bundle_file}: lab {saved.lab_name}, {len(saved.traces)} injected, "
                  f"{len(saved.observed)} observed; recorded {saved.created or '?'} on kernel "
                  f"{saved.kernel or '?'}", style="dim", markup=False)
    for p in paths:
        render(console, p, lab, compact=compact)


def mermaid_blocks(paths, lab) -> str:
    """One fenced ```mermaid block per path (GitHub renders them)."""
    from nettrace.views.mermaid import mermaid
    return "\n\n".join(f"```mermaid\n{mermaid(p, lab)}\n```" for p in paths)


@click.command("diff")
@click.argument("bundle_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("bundle_b", metavar="B", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per divergence.")
@click.option("--width", type=click.IntRange(40, 1000), default=110, show_default=True,
              help="Line width.")
def diff_cmd(bundle_a: str, bundle_b: str, as_json: bool, width: int) -> None:
    """Show where the paths of two trace bundles part ways: the first hop that differs,
    with both sides from that hop on. Paths are paired by position (the Nth trace of A
    with the Nth of B); hashed device names are aliased, so two labs, a lab and a live
    engine (--docker), or two engine profiles compare.

    Exit 0 when every path is the same, 1 when one diverges, 2 on a bad file.

    \b
    Example:
      sudo nettrace path bridge c1 c2 --save before.json.gz
      ... change the lab ...
      sudo nettrace path bridge c1 c2 --save after.json.gz
      nettrace diff before.json.gz after.json.gz
    """
    import json
    from nettrace.views.diff import diverge
    _, lab_a, paths_a = load_paths(bundle_a)
    _, lab_b, paths_b = load_paths(bundle_b)
    found = diverge(paths_a, paths_b, lab_a, lab_b)
    if as_json:
        for d in found:
            click.echo(json.dumps(d.to_dict()))
    elif not found:
        click.echo(f"no difference: {len(paths_a)} paths take the same hops")
    else:
        click.echo(f"A = {bundle_a}\nB = {bundle_b}")
        for d in found:
            click.echo("\n".join(d.lines(width)))
    click.get_current_context().exit(1 if found else 0)


def register(cli: click.Group) -> None:
    cli.add_command(show_cmd)
    cli.add_command(diff_cmd)
