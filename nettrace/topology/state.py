"""A lab's state on this machine, apart from building it: the state files and pid files
under STATE_DIR and the namespaces named after the lab (which also find the leftovers of a
crashed `lab up`). Read by the builder's teardown, by the daemons a lab runs (embedded DNS,
listeners) and by `lab ls`; the saved `Lab` itself is `model.load_lab`/`running_labs`.
"""

from __future__ import annotations

import json
import os

from nettrace.topology import netns
from nettrace.topology.model import NS_PREFIX, STATE_DIR, running_labs


def pidfile(lab: str, what: str) -> str:
    """The pid file of a daemon `what` (dns, listeners, proxy...) of lab `lab`."""
    return os.path.join(STATE_DIR, f"{lab}.{what}.pid")


def start_daemon(lab: str, module: str, kind: str, what: str) -> int:
    """Start `python -m MODULE LAB`, one of a lab's daemons (embedded DNS, listeners): in a
    session of its own (it outlives the command that started it), its PID in the pid file
    `<lab>.<kind>.pid` that `lab down` stops it by, and its first line awaited: `ready`, or
    `error <why>` (raised, naming `what`)."""
    import subprocess
    import sys
    from nettrace.errors import NettraceError
    proc = subprocess.Popen([sys.executable, "-m", module, lab],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    with open(pidfile(lab, kind), "w") as f:
        f.write(f"{proc.pid}\n")
    line = proc.stdout.readline().strip()
    proc.stdout.close()
    if line != "ready":
        raise NettraceError(f"{what} of lab '{lab}' did not start"
                            + (f": {line[6:]}" if line.startswith("error ") else ""))
    return proc.pid


def pidfiles() -> list[str]:
    """Every pid file of every lab."""
    try:
        return [os.path.join(STATE_DIR, f) for f in os.listdir(STATE_DIR) if f.endswith(".pid")]
    except FileNotFoundError:
        return []


def lab_namespaces(name: str) -> list[str]:
    """The namespaces of lab `name`, found by name (a state file may be missing)."""
    prefix = f"{NS_PREFIX}.{name}."
    return [ns for ns in netns.list_all() if ns.startswith(prefix)]


def lab_names() -> list[str]:
    """Every lab on this machine: those with a state file, and leftovers found only by a
    namespace or a pid file (a `lab up` killed half-way)."""
    names = set(running_labs())
    prefix = NS_PREFIX + "."
    for ns in netns.list_all():
        if ns.startswith(prefix) and ns.count(".") >= 2:
            names.add(ns.split(".")[1])
    for path in pidfiles():
        names.add(os.path.basename(path).split(".")[0])
    return sorted(names)


def count_links(name: str) -> int:
    """How many links (not loopbacks) the state file of lab `name` records."""
    try:
        with open(os.path.join(STATE_DIR, f"{name}.json")) as f:
            return sum(1 for i in json.load(f).get("interfaces", []) if i["role"] != "loopback")
    except (OSError, ValueError):
        return 0
