"""Docker-specific commands: `nettrace lab diff LAB --docker` and `nettrace docker ...`.

`nettrace docker engine start|stop|ls` runs private Docker engines in namespaces nettrace
owns (for comparisons and tests: the root namespace and any system Docker are untouched);
`nettrace docker mirror LAB` recreates a running lab's networks and containers in one.
"""

from __future__ import annotations

import json

import click

from nettrace.cli.common import docker_option
from nettrace.errors import NettraceError


@click.command("diff")
@click.argument("lab")
@docker_option
@click.option("--host", help="Lab host to compare (labs with several Docker hosts).")
@click.option("--no-ping", is_flag=True, help="Skip the reachability matrix (pings).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lab_diff(lab: str, docker: str | None, host: str | None, no_ping: bool, as_json: bool) -> None:
    """How running lab LAB differs from a live Docker engine with the same networks.

    Compares the engine profile (version, firewall backend, userland proxy), interfaces,
    addresses, MTU, routes, sysctls, iptables rules (Docker's hashed names aliased as
    everywhere: br(mynet), veth(c1); MACs, DNS ports masked) and which containers reach which. Only what LAB declares is
    compared: its containers by name, its networks by membership (the engine network its
    containers joined, whatever its name); the engine's other objects are left out.
    Exit code 0 when equivalent, 1 when different.

    \b
    Example, against a private engine:
      nettrace lab up bridge --engine 20.10 --no-userland-proxy
      nettrace docker engine start cmp
      nettrace docker mirror bridge --engine cmp
      nettrace lab diff bridge --docker --docker-host unix:///tmp/<dir>/docker.sock
    """
    if docker is None:
        raise click.UsageError("lab diff compares a lab with a Docker engine: pass --docker "
                               "(and --docker-host URL, or DOCKER_HOST)")
    from nettrace.docker.diff import diff
    from nettrace.docker.discover import discover
    from nettrace.errors import require_root
    from nettrace.topology.model import load_lab
    require_root("nettrace lab diff")
    report = diff(load_lab(lab), discover(docker or None), host=host, ping=not no_ping)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(report.text(), nl=False)
    click.get_current_context().exit(0 if report.equivalent else 1)


@click.group("docker")
def docker_group() -> None:
    """Private Docker engines in namespaces nettrace owns, for comparing labs with Docker."""


@docker_group.group("engine")
def engine_group() -> None:
    """Start, stop and list private engines (dockerd + containerd in <prefix>.docker-TAG)."""


@engine_group.command("start")
@click.argument("tag")
@click.option("--userland-proxy", is_flag=True,
              help="Run docker-proxy per published port (dockerd's own default). Off here by "
                   "default: the engine then matches a lab brought up with --engine 20.10 "
                   "--no-userland-proxy.")
@click.option("--json", "as_json", is_flag=True)
def engine_start(tag: str, userland_proxy: bool, as_json: bool) -> None:
    """Start engine TAG with a busybox image (nt-busybox:1); prints its DOCKER_HOST."""
    from nettrace.docker import engine
    eng = engine.start(tag, userland_proxy=userland_proxy)
    try:
        eng.import_busybox()
    except BaseException:
        eng.stop()
        raise
    if as_json:
        click.echo(json.dumps({"name": eng.name, "netns": eng.netns, "docker_host": eng.url}))
    else:
        click.echo(f"engine {eng.name} is up in namespace {eng.netns}\n"
                   f"export DOCKER_HOST={eng.url}")


@engine_group.command("stop")
@click.argument("tag", required=False)
@click.option("--all", "all_", is_flag=True, help="Every private engine nettrace started.")
def engine_stop(tag: str | None, all_: bool) -> None:
    """Remove containers and swarm, stop the daemons, delete the namespace and directory."""
    from nettrace.docker import engine
    if bool(tag) == all_:
        raise click.UsageError("name an engine TAG or pass --all")
    for eng in engine.running() if all_ else [engine.load(tag)]:
        report = eng.stop()
        click.echo(f"engine {eng.name} stopped: {report.containers} containers, "
                   f"{report.processes} processes, {report.links} links removed")
        for problem in report.problems:
            click.echo(f"  warning: {problem}", err=True)


@engine_group.command("ls")
def engine_ls() -> None:
    """Private engines and their DOCKER_HOST."""
    from nettrace.docker import engine
    for eng in engine.running():
        click.echo(f"{eng.name}\t{eng.netns}\t{eng.url}")


@docker_group.command("mirror")
@click.argument("lab")
@click.option("--engine", "tag", required=True, help="Private engine TAG to create it in.")
@click.option("--host", help="Only this lab host's containers (an engine is one Docker host).")
def docker_mirror(lab: str, tag: str, host: str | None) -> None:
    """Create running lab LAB's networks and containers in private engine TAG."""
    from nettrace.docker import engine
    from nettrace.docker.mirror import mirror
    from nettrace.topology.model import load_lab
    eng = engine.load(tag)
    live = load_lab(lab)
    try:
        mirror(eng, live, host=host)
    except Exception as exc:
        if isinstance(exc, NettraceError):
            raise
        raise NettraceError(f"mirroring lab {lab} into {eng.name} failed: {exc}") from None
    click.echo(f"lab {lab} mirrored into {eng.name}: "
               f"nettrace lab diff {lab} --docker --docker-host {eng.url}")


def register(cli: click.Group) -> None:
    cli.add_command(docker_group)
    lab = cli.commands.get("lab")
    if isinstance(lab, click.Group):
        lab.add_command(lab_diff)
