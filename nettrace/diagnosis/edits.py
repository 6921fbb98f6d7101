"""Apply `LabEdit`s to a lab file's YAML document (a plain dict), so a fix can be tried.

    spec = yaml.safe_load(open("lab.yaml"))
    fixed = apply_edits(spec, diagnosis.fixes[0].lab)      # a new dict; `spec` is untouched
    yaml.safe_dump(fixed, open("fixed.yaml", "w"))

Path syntax (see `LabEdit`): `networks[name=front].icc`, `containers[name=c1].publish`,
`hosts[name=host].sysctls["net.ipv4.ip_forward"]`, `hosts[0].firewall`. Selecting
`[name=X]` in a list of plain names (`hosts: [h1, h2]`) turns that item into `{name: X}`
so keys can be set on it; `hosts[name=host]` in a file without `hosts:` stands for the
default host and creates the list. Setting a network key also drops the Docker option
spelling of the same key (`com.docker.network.bridge.enable_icc` for `icc`), top-level or
under `options:`, so the file keeps one value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from nettrace.diagnosis.model import EditOp, LabEdit
from nettrace.errors import NettraceError

_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(?:"([^"]*)"|name=([^\]]+)|(\d+))\]')


class EditError(NettraceError):
    """A lab edit whose path does not lead anywhere in this lab file."""


def parse_path(path: str) -> list[tuple[str, Any]]:
    """`a.b[name=x]["k.y"][0]` -> [("key", "a"), ("key", "b"), ("name", "x"), ("key", "k.y"),
    ("index", 0)]."""
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m or m.end() == pos:
            raise EditError(f"lab edit path {path!r}: cannot read it at {path[pos:]!r}")
        key, quoted, name, index = m.groups()
        if key is not None:
            out.append(("key", key))
        elif quoted is not None:
            out.append(("key", quoted))
        elif name is not None:
            out.append(("name", name.strip()))
        else:
            out.append(("index", int(index)))
        pos = m.end()
    if not out:
        raise EditError("empty lab edit path")
    return out


def _item_name(item: Any) -> Any:
    return item.get("name") if isinstance(item, dict) else item


def _step(node: Any, step: tuple[str, Any], nxt: tuple[str, Any] | None, path: str,
          create: bool) -> Any:
    kind, arg = step
    if kind == "key":
        if not isinstance(node, dict):
            raise EditError(f"lab edit {path!r}: {arg!r} is looked up in a {type(node).__name__}")
        if arg not in node or node[arg] is None:
            if not create:
                raise EditError(f"lab edit {path!r}: no key {arg!r}")
            node[arg] = [] if nxt is not None and nxt[0] in ("name", "index") else {}
        return node[arg]
    if not isinstance(node, list):
        raise EditError(f"lab edit {path!r}: [{arg}] needs a list")
    if kind == "index":
        if not 0 <= arg < len(node):
            raise EditError(f"lab edit {path!r}: index {arg} out of range ({len(node)} items)")
        return node[arg]
    for i, item in enumerate(node):
        if _item_name(item) == arg:
            if not isinstance(item, dict) and nxt is not None:
                node[i] = item = {"name": item}
            return item
    if create and path.startswith("hosts[") and not node:
        node.append({"name": arg})           # the default host of a file without hosts:
        return node[-1]
    names = ", ".join(str(_item_name(i)) for i in node) or "none"
    raise EditError(f"lab edit {path!r}: no item named {arg!r} (there are: {names})")


def _drop_aliases(parent: dict, key: str) -> None:
    from nettrace.topology.spec import OPTION_ALIASES
    aliases = [k for k, v in OPTION_ALIASES.items() if v == key]
    for alias in aliases:
        parent.pop(alias, None)
        if isinstance(parent.get("options"), dict):
            parent["options"].pop(alias, None)


def apply_edit(doc: dict, edit: LabEdit) -> None:
    """Apply one edit in place."""
    steps = parse_path(edit.path)
    create = edit.op in (EditOp.SET, EditOp.ADD)
    if create and edit.path.startswith("hosts[name=") and "hosts" not in doc:
        doc["hosts"] = []
    node: Any = doc
    for i, step in enumerate(steps[:-1]):
        try:
            node = _step(node, step, steps[i + 1], edit.path, create)
        except EditError:
            if edit.op == EditOp.REMOVE:
                return                      # nothing there: removing it is already done
            raise
    kind, arg = steps[-1]
    if edit.op == EditOp.SET:
        if kind != "key" or not isinstance(node, dict):
            raise EditError(f"lab edit {edit.path!r}: set needs a key at the end")
        _drop_aliases(node, arg)
        node[arg] = copy.deepcopy(edit.value)
        return
    if edit.op == EditOp.ADD:
        target = _step(node, steps[-1], ("index", 0), edit.path, True)
        if not isinstance(target, list):
            raise EditError(f"lab edit {edit.path!r}: add needs a list there")
        if edit.value not in target and _item_name(edit.value) not in map(_item_name, target):
            target.append(copy.deepcopy(edit.value))
        return
    # REMOVE
    try:
        target = _step(node, steps[-1], None, edit.path, False)
    except EditError:
        return
    if edit.value is None:
        if kind == "key":
            del node[arg]
        else:
            node.remove(target)
        return
    if not isinstance(target, list):
        raise EditError(f"lab edit {edit.path!r}: remove VALUE needs a list there")
    target[:] = [x for x in target if x != edit.value and _item_name(x) != edit.value]


def apply_edits(spec: dict, edits: Iterable[LabEdit]) -> dict:
    """A copy of the lab document `spec` with `edits` applied in order."""
    doc = copy.deepcopy(spec)
    for edit in edits:
        apply_edit(doc, edit)
    return doc
