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
@click.option("--compact", is_flag=True, default=None,
              help="Hop table in 100 columns (automatic on a narrow terminal).")
def show_cmd(bundle_file: str, as_json: bool, compact: bool | None) -> None:
    """Print every path of a trace bundle (written by `nettrace path --save FILE` or
    `nettrace record --save FILE`), without root and without the lab.

    \b
    Example:
      sudo nettrace path bridge c1 c2 --save c1-c2.bundle.json.gz
      nettrace show c1-c2.bundle.json.gz            # same table, any machine
      nettrace show c1-c2.bundle.json.gz --json
    """
    from nettrace.views.paths import render, to_json_lines
    saved, lab, paths = load_paths(bundle_file)
    if as_json:
        click.echo(to_json_lines(paths))
        return
    console = views_console()
    console.print(f"bundle {bundle_file}: lab {saved.lab_name}, {len(saved.traces)} injected, "
                  f"{len(saved.observed)} observed; recorded {saved.created or '?'} on kernel "
                  f"{saved.kernel or '?'}", style="dim", markup=False)
    for p in paths:
        render(console, p, lab, compact=compact)


def register(cli: click.Group) -> None:
    cli.add_command(show_cmd)
