"""`nettrace lab`: bring labs up and down, list them, show their CNM tree and firewall."""

from __future__ import annotations

import json
import sys
import time

import click

from nettrace.cli.common import docker_option, get_lab
from nettrace.errors import NettraceError


@click.group("lab")
def lab_group() -> None:
    """Build Docker-style networks in namespaces nettrace owns, and remove them.

    \b
    Embedded labs (no file needed): bridge, user-bridges, icc-off, internal,
    published-port, host, none, macvlan, overlay. Or write your own YAML
    (see nettrace/topology/spec.py for the format).

    \b
    Fault catalogue: `nettrace lab ls --faults` lists labs that each show one
    thing going wrong (e.g. `nettrace lab up faults/icc-disabled`); the flow to
    trace is the `trace:` key of its file, the cause it shows the `expect:` key.
    """


def _stderr_progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


@lab_group.command("up")
@click.argument("lab")
@click.option("--name", help="Name the lab (default: the file's or embedded lab's name).")
@click.option("--engine", "version", type=click.Choice(["29", "20.10"]), default=None,
              help="Docker release to reproduce (overrides the file's engine.version; "
                   "default 29).")
@click.option("--firewall", type=click.Choice(["iptables", "nftables"]), default=None,
              help="dockerd's firewall backend (overrides engine.firewall; default iptables; "
                   "nftables needs --engine 29).")
@click.option("--userland-proxy/--no-userland-proxy", "userland_proxy", default=None,
              help="Run docker-proxy per published port, as dockerd does by default "
                   "(overrides engine.userland_proxy).")
@click.option("--json", "as_json", is_flag=True, help="Print the lab as JSON.")
def lab_up(lab: str, name: str | None, version: str | None, firewall: str | None,
           userland_proxy: bool | None, as_json: bool) -> None:
    """Bring up LAB: an embedded lab name, a catalogue fault (faults/NAME) or a YAML file.

    \b
    The same lab under two engines, side by side:
      nettrace lab up bridge --name b29
      nettrace lab up bridge --name b2010 --engine 20.10
    """
    from nettrace.topology import builder, spec
    lab_spec = spec.load(lab, name=name)          # validated before the kernel is touched
    lab_spec.engine = _engine_override(lab_spec.engine, version, firewall, userland_proxy)
    start = time.perf_counter()
    if not as_json:
        click.echo(f"bringing up lab '{lab_spec.name}' from {lab_spec.file} ({lab_spec.engine})",
                   err=True)
    live = builder.up(lab_spec, progress=None if as_json else _stderr_progress)
    took = time.perf_counter() - start
    if as_json:
        click.echo(json.dumps(live.to_dict(), indent=1))
        return
    from nettrace.cli.views import print_lab_summary
    print_lab_summary(live)
    click.echo(f"lab '{live.name}' is up in {took:.2f} s: {len(live.namespaces)} namespaces, "
               f"{len(live.interfaces)} interfaces. Next: nettrace lab show {live.name}")


def _profile_label(profile) -> str:
    """29/iptables, 20.10/iptables/no-proxy: the profile in one column."""
    label = f"{profile.version.value}/{profile.firewall.value}"
    return label if profile.userland_proxy else label + "/no-proxy"


def _engine_override(profile, version: str | None, firewall: str | None,
                     userland_proxy: bool | None):
    """The lab file's engine profile with the command line's choices applied."""
    import dataclasses
    from nettrace.topology.model import EngineVersion, FirewallBackend
    changes = {k: v for k, v in (("version", version), ("firewall", firewall),
                                 ("userland_proxy", userland_proxy)) if v is not None}
    merged = dataclasses.replace(profile, **changes)
    if merged.version is EngineVersion.V20_10 and merged.firewall is FirewallBackend.NFTABLES:
        raise click.BadParameter("Docker 20.10 has no nftables backend (it came with 29)",
                                 param_hint="--engine/--firewall")
    return merged


@lab_group.command("down")
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True,
              help="Every lab, including leftovers of a crashed nettrace (found by name).")
def lab_down(name: str | None, all_: bool) -> None:
    """Remove every namespace, link, rule and process of lab NAME."""
    from nettrace.topology import builder
    if bool(name) == all_:
        raise click.UsageError("give a lab NAME or --all (not both)")
    reports = builder.down_all() if all_ else [builder.down(name)]
    for r in reports:
        click.echo(f"lab '{r.lab}' down: {r.namespaces} namespaces and {r.links} links removed"
                   + (f", {r.processes} processes stopped" if r.processes else ""))
    if all_ and not reports:
        click.echo("no labs were up")


@lab_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--faults", is_flag=True, help="List the fault catalogue instead: one line per "
              "lab (name, the cause it shows, what happens). Bring one up with "
              "`nettrace lab up faults/NAME`.")
def lab_ls(as_json: bool, faults: bool) -> None:
    """List running labs (and the embedded ones you can bring up)."""
    from nettrace.topology import netns, spec
    from nettrace.topology.model import NS_PREFIX, load_lab, running_labs
    if faults:
        _list_faults(as_json)
        return
    rows = []
    for name in running_labs():
        lab = load_lab(name)
        alive = all(netns.exists(ns) for ns in lab.namespaces)
        rows.append({"name": name, "source": lab.source, "hosts": len(lab.hosts),
                     "containers": len(lab.sandboxes), "namespaces": len(lab.namespaces),
                     "age_s": round(time.time() - lab.created), "state": "up" if alive else "broken",
                     "engine": _profile_label(lab.engine)})
    known = {r["name"] for r in rows}
    stale = sorted({ns.split(".")[1] for ns in netns.list_all()
                    if ns.startswith(NS_PREFIX + ".") and ns.count(".") >= 2} - known)
    for name in stale:
        rows.append({"name": name, "source": None, "hosts": 0, "containers": 0,
                     "namespaces": None, "age_s": None, "state": "leftover", "engine": None})
    if as_json:
        click.echo(json.dumps({"labs": rows, "embedded": list(spec.embedded_labs())}, indent=1))
        return
    from nettrace.cli.views import print_table
    if rows:
        print_table(["LAB", "STATE", "ENGINE", "HOSTS", "CONTAINERS", "NAMESPACES", "AGE",
                     "SOURCE"],
                    [[r["name"], r["state"], r["engine"] or "", r["hosts"], r["containers"],
                      r["namespaces"] or "", f"{r['age_s']}s" if r["age_s"] is not None else "",
                      r["source"] or ""]
                     for r in rows])
    else:
        click.echo("no labs are up")
    if stale:
        click.echo("leftovers of a crashed run: nettrace lab down --all", err=True)
    click.echo(f"embedded labs: {', '.join(spec.embedded_labs())}")


def _list_faults(as_json: bool) -> None:
    """The catalogue, one line each: name, expected cause, description."""
    from nettrace.topology import spec
    rows = []
    for ref in spec.fault_labs():
        s = spec.load(ref)
        rows.append({"name": ref, "cause": s.expect.cause if s.expect else "",
                     "stage": s.expect.stage if s.expect else "",
                     "description": s.description,
                     "trace": vars(s.trace) if s.trace else None})
    if as_json:
        click.echo(json.dumps({"faults": rows}, indent=1))
        return
    import shutil
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 10_000
    name_w = max(len(r["name"]) for r in rows)
    cause_w = max(len(r["cause"]) for r in rows)
    for r in rows:
        line = f"{r['name']:<{name_w}}  {r['cause']:<{cause_w}}  {r['description']}"
        click.echo(line if len(line) <= width else line[:width - 3] + "...")
    first = spec.load(rows[0]["name"])
    click.echo(f"{len(rows)} fault labs. Try one: nettrace lab up {rows[0]['name']} && "
               f"nettrace path {first.name} {' '.join(first.trace.path_args())}", err=True)


@lab_group.command("show")
@click.argument("name", required=False)
@docker_option
@click.option("--json", "as_json", is_flag=True, help="Print the lab model as JSON.")
@click.option("--no-firewall", is_flag=True, help="Leave out the hosts' iptables rules.")
def lab_show(name: str | None, docker: str | None, as_json: bool, no_firewall: bool) -> None:
    """Show lab NAME as Docker's CNM tree, and each host's firewall as the kernel has it."""
    if not (as_json or no_firewall):
        from nettrace.errors import require_root
        require_root("reading a lab's firewall (inside its namespaces; --no-firewall "
                     "shows the rest without root)")
    lab = get_lab(name, docker)
    if as_json:
        click.echo(json.dumps(lab.to_dict(), indent=1))
        return
    from nettrace.cli.views import print_lab_tree, print_firewall
    print_lab_tree(lab)
    if not no_firewall:
        print_firewall(lab)


@lab_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(name: str, container: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in CONTAINER as `docker exec` would: in its network namespace, with its
    own /etc/resolv.conf, /etc/hosts and hostname (e.g. -- ping -c1 c2 on a user-defined
    network, resolved by the lab's embedded DNS). CONTAINER may also be a lab host or client.

    The exit code is the command's.
    """
    from nettrace.errors import require_root
    from nettrace.topology import netns, sandbox_files
    from nettrace.topology.model import load_lab
    require_root("nettrace lab exec (entering a lab's namespace)")
    lab = load_lab(name)
    try:
        target = lab.netns_of(container)
    except KeyError:
        names = sorted(list(lab.sandboxes) + list(lab.hosts) + list(lab.clients))
        raise NettraceError(f"lab '{name}' has no container or host '{container}' "
                            f"(known: {', '.join(names)})") from None
    sys.stdout.flush()

    def start():
        try:
            if container in lab.sandboxes:
                # the container's resolv.conf, /etc/hosts and hostname, as in `docker exec`
                return sandbox_files.popen(lab, lab.sandbox(container), list(command))
            return netns.popen(target, list(command))
        except FileNotFoundError:
            raise NettraceError(f"command not found: {command[0]}") from None
    sys.exit(_run_forwarding_signals(start))


def _terminal_foreground() -> bool:
    """Whether this process group has the terminal (a Ctrl-C there signals the group)."""
    import os
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except OSError:
        return False


def _run_forwarding_signals(start) -> int:
    """Start the command (`start()` returns its Popen) and return its exit code. SIGINT,
    SIGTERM and SIGHUP are passed on to it (a Ctrl-C reaches it from the terminal too) and
    it is given 5 s to end on its own; it dies with nettrace in any case (netns.popen).
    Signals are caught from before the start, so one that comes while the command is
    starting is passed on too, never taken for nettrace's own stop."""
    import signal
    import subprocess
    from nettrace.cli.common import stop_on_signal
    with stop_on_signal() as stopped:
        proc = start()
        forwarded, deadline = None, None
        while True:
            try:
                return proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            sig = stopped()
            if sig is not None and forwarded is None:
                forwarded, deadline = sig, time.monotonic() + 5
                if sig != signal.SIGINT or not _terminal_foreground():
                    proc.send_signal(sig)       # (a Ctrl-C reached it from the terminal)
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()


def register(cli: click.Group) -> None:
    cli.add_command(lab_group)
