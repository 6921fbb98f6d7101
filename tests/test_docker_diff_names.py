"""`lab diff` names Docker's hashed devices as every view does (nettrace.views.names), with
no engine and no root: the recorded user-bridges lab (tui/samples) and hand-written lines."""

from __future__ import annotations

from conftest import needs_root
from nettrace.docker import diff as docker_diff
from nettrace.views.names import Aliases, veth_alias
from tui.sample import sample_lab


def test_hashed_names_become_the_views_aliases():
    lab = sample_lab("user-bridges")       # br-e464d9a2aa1e is front, veth9c4f162 serves c1
    alias = Aliases(lab)
    assert alias("-A FORWARD -i br-e464d9a2aa1e -o br-cfe777833fba -j DROP") == \
        "-A FORWARD -i br(front) -o br(back) -j DROP"
    assert alias("veth9c4f162 veth789c85b") == "veth(c1) veth(c3)"
    # a hashed name the lab does not record stays as it is for the views ...
    assert alias("br-0123456789ab veth0abcdef") == "br-0123456789ab veth0abcdef"
    # ... and becomes br(?)/veth(?) for a comparison of two sides that hash differently
    unknown = Aliases(lab, unknown=True)
    assert unknown("-i br-0123456789ab -o br-e464d9a2aa1e veth0abcdef veth9c4f162") == \
        "-i br(?) -o br(front) veth(?) veth(c1)"
    assert unknown("vethx docker0 br-12 veth01234567") == "vethx docker0 br-12 veth01234567"
    assert veth_alias("c1", "eth0") == "veth(c1)" and veth_alias("c1", "eth1") == "veth(c1:eth1)"


def test_lab_diff_uses_the_views_names_and_masks_dns_ports():
    assert not hasattr(docker_diff, "_NAME_RULES")     # no naming scheme of its own
    facts = object.__new__(docker_diff._Facts)         # the naming alone, no kernel read
    facts.alias = Aliases(sample_lab("user-bridges"), unknown=True)
    assert facts.normalise("-A DOCKER-ISOLATION-STAGE-1 -i br-cfe777833fba ! -o "
                           "br-cfe777833fba -j DOCKER-ISOLATION-STAGE-2") == \
        "-A DOCKER-ISOLATION-STAGE-1 -i br(back) ! -o br(back) -j DOCKER-ISOLATION-STAGE-2"
    assert facts.normalise("-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT "
                           "--to-destination 127.0.0.11:45821") == \
        "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT " \
        "--to-destination 127.0.0.11:<port>"
    assert facts.normalise("-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport "
                           "39123 -j SNAT --to-source :53") == \
        "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport <port> -j SNAT " \
        "--to-source :53"
    assert facts.normalise("net.ipv4.conf.br-e464d9a2aa1e.route_localnet") == \
        "net.ipv4.conf.br(front).route_localnet"


@needs_root
def test_two_copies_of_a_lab_hash_differently_and_compare_equal_by_alias(make_lab):
    """`lab diff`'s comparison on the real kernel without an engine: two copies of
    user-bridges under different names have different br-<id> and veth<id> names (hashed
    from the lab name), yet are equivalent. A rule on bridge `back` in one and on `front`
    in the other is a difference: the old br-<id> mask hid which bridge a rule names."""
    from nettrace.topology import netns
    a = make_lab("user-bridges", name="ddna")
    b = make_lab("user-bridges", name="ddnb")
    dev = {lab.name: {n.name: n.device for n in lab.networks} for lab in (a, b)}
    assert dev["ddna"]["front"] != dev["ddnb"]["front"]          # hashed from the lab name
    same = docker_diff.diff(a, b, ping=False)
    assert same.equivalent, same.text()
    assert same.compared["firewall"] > 20 and same.compared["interfaces"] >= 6
    rule = ["-I", "FORWARD", "-p", "udp", "--dport", "9", "-j", "DROP"]
    netns.run(a.hosts["host"].netns, ["iptables", rule[0], rule[1], "-i", dev["ddna"]["back"],
                                      *rule[2:]])
    netns.run(b.hosts["host"].netns, ["iptables", rule[0], rule[1], "-i", dev["ddnb"]["front"],
                                      *rule[2:]])
    moved = docker_diff.diff(a, b, ping=False)
    assert [(d.section, d.lab, d.docker) for d in moved.differences] == [
        ("firewall", "-A FORWARD -i br(back) -p udp -m udp --dport 9 -j DROP", None),
        ("firewall", None, "-A FORWARD -i br(front) -p udp -m udp --dport 9 -j DROP")]
