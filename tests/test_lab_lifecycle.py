"""Labs leave nothing behind: up/down, two labs at once, kill -9 mid-up, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import RUN_TAG, NETTRACE, needs_root, our_namespaces, run_cli

from netutil import ping, wait_until
from nettrace.topology import builder, netns, spec
from nettrace.topology.model import ns_name

#: a namespace prefix of this run only: a user's labs (or another run) never collide
KILLED = f"ntk{RUN_TAG}"

pytestmark = needs_root


def _root_links() -> set[str]:
    """Links of the root namespace (this machine may run Docker: docker0, veths are normal)."""
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines()}


def _links_in(ns: str) -> list[str]:
    return [ln.split()[0] for ln in netns.run(ns, ["ip", "-br", "link"]).stdout.splitlines()]


@pytest.mark.parametrize("name", list(spec.embedded_labs()))
def test_every_embedded_lab_up_then_down_leaves_nothing(name):
    before, root_before = our_namespaces(), _root_links()
    lab = builder.up(spec.load(name, name=f"cyc-{name}"))
    try:
        assert set(lab.namespaces) <= set(our_namespaces())
        assert all(ns.startswith(ns_name(f"cyc-{name}") + ".") for ns in lab.namespaces)
        for host in lab.hosts.values():
            assert "FORWARD DROP" in netns.run(host.netns, ["iptables-save"]).stdout.replace(":", "")
        assert os.path.exists(lab.state_path())
        assert _root_links() - root_before == set(), "a link appeared in the root namespace"
    finally:
        report = builder.down(lab.name)
    assert report.namespaces == len(lab.namespaces)
    assert our_namespaces() == before, "namespaces left behind"
    assert not os.path.exists(lab.state_path())
    assert _root_links() - root_before == set(), "nothing may ever appear in the root namespace"


def test_two_labs_at_once_do_not_interfere(make_lab):
    a = make_lab("bridge", name="twin-a")
    b = make_lab("bridge", name="twin-b")
    assert a.sandbox("c1").ip() == b.sandbox("c1").ip() == "172.17.0.2"   # same addresses
    assert ping(a.sandbox("c1").netns, "172.17.0.3")
    assert ping(b.sandbox("c1").netns, "172.17.0.3")
    builder.down("twin-a")
    assert not any(ns.startswith(ns_name("twin-a") + ".") for ns in netns.list_all())
    assert ping(b.sandbox("c1").netns, "172.17.0.3"), "taking a down must not touch b"


def test_up_refuses_a_lab_that_is_already_up(make_lab):
    make_lab("bridge", name="dup")
    proc = run_cli("lab", "up", "bridge", "--name", "dup")
    assert proc.returncode == 2 and "already up" in proc.stderr


def test_down_all_cleans_up_after_kill_9_mid_up(tmp_path):
    """A crashed `lab up` is found by namespace name and removed by `lab down --all`."""
    env = {"NETTRACE_NS_PREFIX": KILLED, "NETTRACE_STATE_DIR": str(tmp_path / "state")}
    lab_file = tmp_path / "big.yaml"
    lab_file.write_text("containers:\n" + "".join(f"  - name: c{i}\n" for i in range(400)))
    proc = subprocess.Popen([NETTRACE, "lab", "up", str(lab_file)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: len(our_namespaces(KILLED)) >= 20, timeout=20), "up never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = our_namespaces(KILLED)
    assert 20 <= len(left) < 401, "the kill should land mid-up"
    down = run_cli("lab", "down", "--all", env=env, check=True)
    assert "lab 'big' down" in down.stdout
    assert our_namespaces(KILLED) == []
    assert run_cli("lab", "ls", "--json", env=env, check=True).stdout.count('"name"') == 0


def test_cli_up_show_exec_ls_down():
    up = run_cli("lab", "up", "user-bridges", "--name", "cli1", check=True)
    try:
        assert "lab 'cli1' is up" in up.stdout
        show = run_cli("lab", "show", "cli1", check=True).stdout
        for needle in ("host host", "front (bridge, local) 10.10.0.0/24", "endpoint c1-front: eth0 10.10.0.2/24",
                       "firewall of host host", "-A DOCKER-FORWARD -j DOCKER-BRIDGE"):
            assert needle in show, needle
        as_json = json.loads(run_cli("lab", "show", "cli1", "--json", check=True).stdout)
        assert set(as_json["sandboxes"]) == {"c1", "c2", "c3"}
        ok = run_cli("lab", "exec", "cli1", "c1", "--", "ping", "-c1", "-W1", "10.10.0.3")
        assert ok.returncode == 0
        blocked = run_cli("lab", "exec", "cli1", "c1", "--", "ping", "-c1", "-W1", "10.20.0.2")
        assert blocked.returncode == 1, "exec passes the command's exit code through"
        missing = run_cli("lab", "exec", "cli1", "nope", "--", "true")
        assert missing.returncode == 2 and "no container or host 'nope'" in missing.stderr
        ls = json.loads(run_cli("lab", "ls", "--json", check=True).stdout)
        assert any(r["name"] == "cli1" and r["state"] == "up" for r in ls["labs"])
    finally:
        down = run_cli("lab", "down", "cli1")
    assert down.returncode == 0 and "3 namespaces" not in down.stdout   # host + 3 containers = 4
    assert "4 namespaces" in down.stdout and "1 processes stopped" in down.stdout
    assert not any(ns.startswith(ns_name("cli1") + ".") for ns in netns.list_all())
    again = run_cli("lab", "down", "cli1")
    assert again.returncode == 2 and "no lab named 'cli1'" in again.stderr


def test_not_root_is_a_clear_error():
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           NETTRACE, "lab", "up", "bridge", "--name", "nobody"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "needs root" in proc.stderr
    assert not any(ns.startswith(ns_name("nobody") + ".") for ns in netns.list_all())


def test_missing_kernel_features_are_refused_by_name(tmp_path):
    before = our_namespaces()
    ipvlan = tmp_path / "ipv.yaml"
    ipvlan.write_text("networks: [{name: ipv, driver: ipvlan, subnet: 10.50.0.0/24}]\n"
                      "containers: [{name: a, networks: [ipv]}]\n")
    from nettrace.topology.features import has_link_kind
    proc = run_cli("lab", "up", str(ipvlan))
    if has_link_kind("ipvlan"):
        assert proc.returncode == 0
        run_cli("lab", "down", "ipv", check=True)
    else:
        assert proc.returncode == 2
        assert "ipvlan" in proc.stderr and "does not provide" in proc.stderr
    vlan = tmp_path / "vlan.yaml"
    vlan.write_text("networks: [{name: mv, driver: macvlan, parent: eth0.10, subnet: 10.51.0.0/24}]\n"
                    "containers: [{name: a, networks: [mv]}]\n")
    proc = run_cli("lab", "up", str(vlan))
    if not has_link_kind("vlan"):
        assert proc.returncode == 2 and "802.1Q" in proc.stderr
    else:
        run_cli("lab", "down", "vlan")
    assert our_namespaces() == before
    time.sleep(0)
