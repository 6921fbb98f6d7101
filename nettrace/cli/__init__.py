"""The `nettrace` command.

Each concern registers its commands from its own module (listed in COMMAND_MODULES);
every command calls the same library API the TUI uses. Errors a user can act on
(`NettraceError`) are printed without a traceback and exit with code 2. SIGINT, SIGTERM
and SIGHUP end every command through the same cleanup path (nettrace.cli.common) and exit
128 + the signal number.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from nettrace import __version__
from nettrace.cli.common import install_signal_handlers, interrupted_exit_code
from nettrace.errors import NettraceError

#: modules that each define `register(cli: click.Group)`
COMMAND_MODULES = [
    "nettrace.cli.lab",
    "nettrace.cli.tui",
    "nettrace.cli.capture",
    "nettrace.cli.docker",
    "nettrace.cli.path",
    "nettrace.cli.bundle",
    "nettrace.cli.demo",
]


class NettraceGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from nettrace.cli.common import legacy_docker_args
        return super().parse_args(ctx, legacy_docker_args(args))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NettraceError as exc:
            click.secho(f"nettrace: {exc}", fg="red", err=True, color=None)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:      # SIGINT, SIGTERM, SIGHUP: see cli.common
            # generators left suspended in the unwound frames (a replay holding a Tracer)
            # run their cleanup now, not during interpreter shutdown
            traceback.clear_frames(exc.__traceback__)
            _say_interrupted(exc)
            ctx.exit(interrupted_exit_code(exc))


def _say_interrupted(exc: KeyboardInterrupt) -> None:
    name = str(exc) or "SIGINT"
    try:
        click.echo(f"nettrace: interrupted ({name}), cleaned up", err=True)
    except OSError:                       # the terminal is gone (SIGHUP)
        pass


@click.group(cls=NettraceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nettrace")
def cli() -> None:
    """Where did my packet go, and why was it dropped?

    nettrace rebuilds Docker's network drivers (bridge, host, none, macvlan, overlay)
    in network namespaces it owns, injects packets from any container, and traces
    each packet hop by hop with eBPF: veth, bridge, netfilter, VXLAN, macvlan.

    \b
    Quick start (as root):
      nettrace lab up bridge          # embedded lab: docker0 with c1 and c2
      nettrace lab show bridge        # the CNM tree and the firewall
      nettrace path bridge c1 c2      # every hop of c1 -> c2 and its reply
      nettrace lab down bridge
    """
    from nettrace.cli.common import check_env_vars
    check_env_vars()                       # NETTRACE_STATE_DIR / _NS_PREFIX, before any command


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    install_signal_handlers()
    try:
        cli(prog_name="nettrace")
    except KeyboardInterrupt as exc:      # a signal outside a command (parsing, exiting)
        sys.exit(interrupted_exit_code(exc))


if __name__ == "__main__":
    sys.exit(main())
