"""Paths under Docker 29 name the rules in the user's syntax: iptables-save lines with chain
and number (issue 14's acceptance), through the real `nettrace path` command."""

from __future__ import annotations

import json

from conftest import needs_root, run_cli
from nettrace.topology import netns

pytestmark = needs_root
WIDE = {"COLUMNS": "400"}            # the wide hop table: one rule per cell line


def test_bridge_path_shows_docker_forward_and_ct_rules_in_iptables_syntax(labs):
    lab = labs("bridge", as_name="fwp-bridge")
    assert lab.engine.version.value == "29"
    out = run_cli("path", lab.name, "c1", "c2", env=WIDE)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())          # rich wraps long cells
    # request: DOCKER-FORWARD rule 4 accepts what leaves docker0 (-i docker0 -j ACCEPT)
    assert "DOCKER-FORWARD rule 4: -A DOCKER-FORWARD -i docker0 -j ACCEPT" in text
    # reply: DOCKER-CT accepts the established flow back into docker0
    assert ("DOCKER-CT rule 1: -A DOCKER-CT -o docker0 -m conntrack --ctstate "
            "RELATED,ESTABLISHED -j ACCEPT") in text
    assert "ip filter DOCKER-FORWARD:" not in text      # not the nft translation


def test_direct_access_from_external_client_is_dropped_in_raw_prerouting(labs):
    lab = labs("published-port", as_name="fwp-pub")
    web, client, host = lab.sandbox("web"), lab.clients["client"], lab.hosts["host"]
    # the client routes the containers' subnet through the Docker host, as a LAN peer could
    netns.run(client.netns, ["ip", "route", "replace", "172.17.0.0/16", "via", host.address])
    out = run_cli("path", lab.name, "client", web.ip(), "--proto", "tcp", "--dport", "80",
                  "--expect", "dropped", env=WIDE)
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert ("dropped at host:eth0 PRE_ROUTING (NETFILTER_DROP" in text and
            f"by raw PREROUTING rule 1: -A PREROUTING -d {web.ip()}/32 ! -i docker0 -j DROP"
            in text), text
    as_json = json.loads(run_cli("path", lab.name, "client", web.ip(), "--proto", "tcp",
                                 "--dport", "80", "--json").stdout.splitlines()[0])
    rule = as_json["verdict"]["rule"]
    assert (rule["table"], rule["chain"], rule["verdict"]) == ("raw", "PREROUTING", "drop")
    fw = lab.rule_for("host", "ip", "raw", "PREROUTING", rule["handle"])
    assert fw is not None and fw.purpose.value == "direct-access" and fw.network == "bridge"
    # through the published port, the same container is reached: DNAT, then DOCKER's accept
    ok = run_cli("path", lab.name, "client", f"{host.address}:8080", env=WIDE)
    assert "nat DOCKER rule " in ok.stdout and "DOCKER rule " in ok.stdout, ok.stdout
    hops = json.loads(run_cli("path", lab.name, "client", f"{host.address}:8080",
                              "--json").stdout.splitlines()[0])["hops"]
    named = [lab.rule_for("host", h["rule"]["family"], h["rule"]["table"], h["rule"]["chain"],
                          h["rule"]["handle"]) for h in hops if h["rule"] and h["host"] == "host"]
    assert [(r.table, r.purpose.value) for r in named if r] == \
        [("nat", "dnat"), ("filter", "published-port")]
