"""Bad lab files fail before the kernel is touched, naming file, line and field."""

from __future__ import annotations

import pytest

from nettrace.errors import SpecError
from nettrace.topology import spec


def load_text(tmp_path, text: str):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return spec.load(str(path)), str(path)


CASES = {
    "unknown driver": ("networks:\n  - name: n1\n    driver: weave\n", 3, "networks[0].driver",
                       "unknown driver 'weave'"),
    "overlapping subnets": ("networks:\n  - name: a\n    subnet: 10.1.0.0/16\n"
                            "  - name: b\n    subnet: 10.1.2.0/24\n", 4, "networks.b.subnet",
                            "overlaps 10.1.0.0/16"),
    "unknown network": ("containers:\n  - name: c1\n    networks:\n      - front\n", 4,
                        "containers[0].networks[0]", "unknown network 'front'"),
    "bad cidr": ("networks:\n  - name: a\n    subnet: 10.1.0.300/24\n", 3, "networks[0].subnet",
                 "bad CIDR"),
    "host bits": ("networks:\n  - name: a\n    subnet: 10.1.0.5/24\n", 3, "networks[0].subnet",
                  "has host bits set"),
    "duplicate container": ("containers:\n  - name: c1\n  - name: c1\n", 3, "containers[1].name",
                            "duplicate name 'c1'"),
    "duplicate network": ("networks:\n  - name: a\n  - name: a\n", 3, "networks[1].name",
                          "duplicate network name"),
    "interface name too long": ("networks:\n  - name: a\n    bridge_name: br-this-is-far-too-long\n",
                                3, "networks[0].bridge_name", "at most 15"),
    "unknown field": ("containers:\n  - name: c1\n    netwrks: [bridge]\n", 3,
                      "containers[0].netwrks", "unknown field"),
    "bad port": ("containers:\n  - name: c1\n    publish: ['80:99999']\n", 3,
                 "containers[0].publish[0]", "outside 1..65535"),
    "ip outside subnet": ("networks:\n  - name: a\n    subnet: 10.1.0.0/24\ncontainers:\n"
                          "  - name: c1\n    networks: [{name: a, ip: 10.2.0.5}]\n", 6,
                          "containers[0].networks[0].ip", "not in 10.1.0.0/24"),
    "builtin redefined": ("networks:\n  - name: bridge\n", 2, "networks[0].name", "built-in"),
    "not yaml": ("containers: [\n", 2, None, "not valid YAML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_file_line_field(tmp_path, case):
    text, line, field, words = CASES[case]
    with pytest.raises(SpecError) as err:
        load_text(tmp_path, text)
    e = err.value
    assert e.file == str(tmp_path / "lab.yaml")
    assert e.line == line, str(e)
    if field:
        assert e.field == field, str(e)
    assert words in str(e)
    assert str(e).startswith(f"{e.file}:{line}")


def test_embedded_labs_all_parse():
    names = spec.embedded_labs()
    for required in ("bridge", "user-bridges", "icc-off", "internal", "published-port", "host",
                     "none", "macvlan", "overlay"):
        assert required in names
        s = spec.load(required)
        assert s.name == required and s.containers


def test_unknown_lab_reference_lists_embedded():
    with pytest.raises(SpecError, match="no lab file and no embedded lab called 'brige'"):
        spec.load("brige")


def test_docker_option_aliases(tmp_path):
    s, _ = load_text(tmp_path, "networks:\n  - name: n\n    options:\n"
                     "      com.docker.network.bridge.enable_icc: 'false'\n"
                     "      com.docker.network.driver.mtu: 1400\n")
    net = s.network("n")
    assert net.icc is False and net.mtu == 1400


def test_cli_bad_file_exit_code_2(tmp_path):
    import os
    from conftest import run_cli
    path = tmp_path / "bad.yaml"
    path.write_text("networks:\n  - name: n1\n    driver: weave\n")
    from conftest import our_namespaces
    before = our_namespaces()
    proc = run_cli("lab", "up", str(path))
    assert proc.returncode == 2
    assert f"{path}:3: networks[0].driver: unknown driver 'weave'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert our_namespaces() == before, "bad input must not touch the kernel"
