"""Pieces shared by CLI commands: finding the lab a command works on."""

from __future__ import annotations

import click

from nettrace.topology.model import Lab, load_lab


def docker_option(f):
    """`--docker [HOST]`: work on a live Docker engine instead of a nettrace lab."""
    return click.option(
        "--docker", "docker", is_flag=False, flag_value="", default=None, metavar="[HOST[,HOST...]]",
        help="Use a live Docker engine instead of a lab (HOST defaults to DOCKER_HOST or the "
             "local socket; several engines of one swarm, comma-separated, form one lab).")(f)


def get_lab(name: str | None, docker: str | None = None) -> Lab:
    """The running lab `name`, or the CNM view of a live Docker engine when --docker is given."""
    if docker is not None:
        from nettrace.docker.discover import discover
        return discover(docker or None)
    if not name:
        raise click.UsageError("name a lab (see: nettrace lab ls) or pass --docker")
    return load_lab(name)
