"""Docker 20.10's profile against what a real 20.10 engine installed (userland proxy on, its
default): the iptables-save recorded in tests/fixtures/docker/recorded-facts.json (the
engine, networks and containers are described in tests/test_engine_sandbox.py)."""

from __future__ import annotations

import json
import os

from conftest import ROOT
from fwref import ipt_canon, ipt_diff, paper_lab
from nettrace.topology import firewall, spec

with open(os.path.join(ROOT, "tests", "fixtures", "docker", "recorded-facts.json")) as _f:
    RECORDED = json.load(_f)["iptables_save"]

# The recorded engine's networks, in creation order, with its bridge names; the containers
# with the addresses the engine gave them (routes in the same file).
RECORDED_LAB = """
engine: {version: "20.10"}
networks:
  - {name: unet, bridge_name: br-f7dc3403fd84, subnet: 172.18.0.0/16}
  - {name: internal, bridge_name: br-87125f014372, subnet: 10.97.0.0/24, internal: true}
  - {name: noicc, bridge_name: br-d45a37933206, subnet: 172.19.0.0/16, icc: false}
containers:
  - {name: web, networks: [bridge], publish: ["8080:80/tcp"]}
  - {name: u1, networks: [unet]}
  - {name: u2, networks: [unet, {name: internal, ip: 10.97.0.2}]}
  - {name: i1, networks: [{name: internal, ip: 10.97.0.10}]}
  - {name: i2, networks: [noicc, {name: internal, ip: 10.97.0.11}]}
  - {name: lo, networks: [{name: unet, ip: 172.18.0.4}], publish: ["127.0.0.1:8081:81/udp"]}
"""


def test_userland_proxy_layout_matches_the_real_engine():
    lab = paper_lab(spec.parse(RECORDED_LAB, default_name="rec"))
    assert lab.engine.userland_proxy and firewall.profile_for(lab).name == "docker2010"
    got = ipt_canon(firewall.render_host(lab, lab.hosts["host"]))
    assert ipt_diff(ipt_canon(RECORDED), got) == []


def test_without_the_proxy_the_nat_table_is_the_hairpin_layout():
    text = RECORDED_LAB.replace('engine: {version: "20.10"}',
                                'engine: {version: "20.10", userland_proxy: false}')
    lab = paper_lab(spec.parse(text, default_name="rec"))
    doc = firewall.render_host(lab, lab.hosts["host"])
    assert "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER" in doc
    assert "-A POSTROUTING -o docker0 -m addrtype --src-type LOCAL -j MASQUERADE" in doc
    assert "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80" in doc
    assert "-j RETURN" not in doc.split("*nat")[1]
    # the filter table does not depend on the proxy
    assert ipt_canon(doc)["filter"] == ipt_canon(RECORDED)["filter"]
