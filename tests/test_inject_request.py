"""One inject request, checked once (no root): `resolve_request` on labs recorded from real
`nettrace lab up` runs (tui/samples). The CLI (`nettrace path`), the TUI form and
`Tracer.path` all hand it an InjectRequest; the expectations are written by hand from the
labs' addresses."""

from __future__ import annotations

import dataclasses

import pytest

from nettrace.errors import NettraceError
from nettrace.inject.request import InjectRequest, RequestError
from nettrace.trace.endpoints import resolve_request
from tui.sample import sample_lab


@pytest.fixture(scope="module")
def bridge():
    return sample_lab("bridge")


@pytest.fixture(scope="module")
def published():
    return sample_lab("published-port")


def test_defaults_resolve_to_icmp_from_the_containers_addresses(bridge):
    r = resolve_request(bridge, InjectRequest("c1", "c2"))
    assert (r.source.ip, r.target.ip, r.proto, r.port, r.layer) == \
        ("172.17.0.2", "172.17.0.3", "icmp", None, "l3")
    assert r.request == InjectRequest("c1", "c2")
    assert r.source.netns == bridge.sandboxes["c1"].netns
    assert r.target.netns == bridge.sandboxes["c2"].netns


def test_host_port_means_tcp_and_arp_means_layer_2(bridge, published):
    r = resolve_request(published, InjectRequest("client", "192.168.50.11:8080"))
    assert (r.proto, r.port, r.source.ip) == ("tcp", 8080, "192.168.50.100")
    r = resolve_request(published, InjectRequest("client", "host:8080", proto="udp"))
    assert (r.target.ip, r.proto, r.port) == ("192.168.50.11", "udp", 8080)
    assert resolve_request(bridge, InjectRequest("c1", "c2", proto="arp")).layer == "l2"
    assert resolve_request(bridge, InjectRequest("c1", "c2", layer="l2")).layer == "l2"
    # --dport and DST's :PORT may say the same thing
    assert resolve_request(bridge, InjectRequest("c1", "c2:53", "udp", dport=53)).port == 53


BAD = [
    (dict(src=""), "src", "SRC: name the container"),
    (dict(src="c9"), "src", "SRC 'c9' is not a container, client or host of lab"),
    (dict(dst=" "), "dst", "DST: a container"),
    (dict(dst="c9"), "dst", "DST 'c9' is not a container, client, host or IP address"),
    (dict(dst="c1"), "dst", "SRC 'c1' and DST 'c1' are the same node"),
    (dict(dst="172.17.0.2"), "dst", "are the same node"),
    (dict(dst="224.0.0.1"), "dst", "DST '224.0.0.1' is a multicast address"),
    (dict(dst="c2:0", proto="tcp"), "dst", "the port after ':' must be 1-65535"),
    (dict(proto="sctp"), "proto", "--proto must be icmp, udp, tcp, arp or nd (not 'sctp')"),
    (dict(proto="udp", dport=0), "dport", "--dport must be 1-65535 (not 0)"),
    (dict(proto="udp", dport=65536), "dport", "--dport must be 1-65535 (not 65536)"),
    (dict(dport=80), "dport", "icmp has no ports: --dport 80 needs --proto tcp or udp"),
    (dict(dst="c2:80", proto="icmp"), "dst", "icmp has no ports"),
    (dict(dst="c2:80", proto="tcp", dport=81), "dport", "--dport 81 contradicts DST's port"),
    (dict(count=0), "count", "--count must be 1-1000 (not 0)"),
    (dict(count=1001), "count", "--count must be 1-1000 (not 1001)"),
    (dict(size=27), "size", "--size must be 28-65535 bytes (not 27)"),
    (dict(size=65536), "size", "--size must be 28-65535 bytes (not 65536)"),
    (dict(family=5), "family", "the address family is 4 or 6 (not 5)"),
    (dict(layer="l4"), "layer", "layer must be 'l3' or 'l2' (not 'l4')"),
    (dict(family=6), "dst", "DST 'c2' has no IPv6 address"),
]


@pytest.mark.parametrize("change, field, words", BAD, ids=[f"{f}-{w[:24]}" for _, f, w in BAD])
def test_a_bad_field_is_refused_naming_it(bridge, change, field, words):
    request = dataclasses.replace(InjectRequest("c1", "c2"), **change)
    with pytest.raises(RequestError) as err:
        resolve_request(bridge, request)
    assert err.value.field == field
    assert words in str(err.value)
    assert isinstance(err.value, NettraceError) and err.value.exit_code == 2


def test_the_cli_options_leave_ranges_and_choices_to_the_request():
    """No second validator: the click options of `nettrace path` only convert text to
    numbers; ranges and choices are resolve_request's (tests/test_input_cli.py runs them)."""
    from nettrace.cli.path import path_cmd
    opts = {p.name: p for p in path_cmd.params}
    for name in ("proto", "dport", "count", "size"):
        assert opts[name].type.name in ("integer", "text"), (name, opts[name].type)
