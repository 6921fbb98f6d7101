"""Files a user hands to nettrace (lab files, golden files, saved paths, captures): checked
before they are parsed, so hostile or mistaken input is refused with the file named.

Limits (documented in the README):

* a lab, golden or JSON file is a regular file of at most `MAX_TEXT_BYTES` (1 MiB); FIFOs,
  sockets and devices (`/dev/zero`) are refused from `os.stat`, before any read can block;
* text is UTF-8 (a UTF-8 byte-order mark is allowed); UTF-16 and binary files are refused;
* YAML is pre-scanned event by event (PyYAML's parser keeps its own stack, it does not
  recurse): at most `MAX_YAML_DEPTH` nested collections, `MAX_YAML_ALIASES` aliases and
  `MAX_YAML_NODES` nodes once aliases are expanded (a "billion laughs" file stops there),
  only the plain tags (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`),
  and no key twice in one mapping;
* saved paths (`nettrace path --json` output) may be up to `MAX_PATHS_BYTES` (64 MiB) and
  trace bundles up to `MAX_BUNDLE_BYTES` (256 MiB) once decompressed;
* captures are streamed, so they have no size limit, but they must be regular files too.

Mappings come back as `LineMap` (a dict with `.line` and `.lines[key]`, 1-based) and
sequences as `LineList` (`.line`, `.lines[i]`), so errors can name the line.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Callable

from nettrace.errors import NettraceError

MAX_TEXT_BYTES = 1 << 20          # 1 MiB: the largest embedded lab is ~2 KiB
MAX_PATHS_BYTES = 64 << 20        # saved paths (`path --json`) for the TUI: 10,000 hops ~ 5 MiB
MAX_BUNDLE_BYTES = 256 << 20      # a trace bundle, uncompressed (a long `record --save`)
MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 1_000
MAX_YAML_NODES = 100_000

#: tags a file may write explicitly; anything else (!!binary, !!timestamp, !foo) is refused
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null",
                                                  "seq", "map")}

Error = Callable[..., NettraceError]     # make_error(message, line=None) -> exception


def _kind(mode: int) -> str | None:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: str, what: str, error: Error, *, max_bytes: int | None = None):
    """Open `path` for binary reading after checking, with `os.stat`, that it is a regular file
    (and no larger than `max_bytes`). A FIFO or device is refused without being opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error("no such file") from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}") from None
    kind = _kind(st.st_mode)
    if kind:
        raise error(f"is {kind}, not a {what}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"is {st.st_size:,} bytes; a {what} may be at most {max_bytes:,} bytes "
                    f"({max_bytes >> 20} MiB)")
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        msg = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror
        raise error(f"cannot read {what}: {msg}") from None
    f = os.fdopen(fd, "rb")
    if _kind(os.fstat(fd).st_mode):
        f.close()
        raise error(f"is not a regular file, not a {what}")
    os.set_blocking(fd, True)
    return f


def read_bytes(path: str, what: str, error: Error, *, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or `error(...)` saying why not."""
    with open_regular(path, what, error, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:                # grew between the stat and the read
        raise error(f"is larger than {max_bytes:,} bytes; a {what} may be at most "
                    f"{max_bytes >> 20} MiB")
    return data


def read_text(path: str, what: str, error: Error, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a small regular file, or `error(...)` saying why not."""
    return decode_text(read_bytes(path, what, error, max_bytes=max_bytes), what, error)


def gunzip(data: bytes, what: str, error: Error, *, max_bytes: int) -> bytes:
    """Decompress gzip data, refusing corrupt streams and more than `max_bytes` of output
    (a "zip bomb" stops there instead of filling memory)."""
    import zlib
    out, rest = [], data
    size = 0
    try:
        while rest[:2] == b"\x1f\x8b":               # one or more gzip members
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            chunk = d.decompress(rest, max_bytes + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > max_bytes or d.unconsumed_tail:
                raise error(f"decompresses to more than {max_bytes:,} bytes; a {what} may be "
                            f"at most {max_bytes >> 20} MiB uncompressed")
            if not d.eof:
                raise error(f"is a truncated gzip stream, not a {what}")
            rest = d.unused_data
    except zlib.error as exc:
        raise error(f"is a corrupt gzip stream ({exc}), not a {what}") from None
    if rest.strip(b"\0"):
        raise error(f"has {len(rest)} bytes of trailing garbage after its gzip data")
    return b"".join(out)


def decode_text(data: bytes, what: str, error: Error) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise error(f"is UTF-16 text; a {what} must be UTF-8")
    if b"\x00" in data:
        raise error(f"is binary (it contains NUL bytes), not a {what}")
    bom = len(b"\xef\xbb\xbf") if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        exc.start += bom
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    f"a {what} must be UTF-8", line=line) from None


# -- YAML -----------------------------------------------------------------------------------

class LineMap(dict):
    """A mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    lines: dict


class LineList(list):
    """A sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    lines: list


def read_yaml(text: str, error: Error) -> Any:
    """Parse one YAML document within the limits above; None for an empty document.

    `error(message, line=N)` builds the exception raised for any problem."""
    import yaml
    try:
        _prescan(text, error)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    if node is None:
        return None
    return _Builder(error).build(node, 0)


def _prescan(text: str, error: Error) -> None:
    """Depth, alias and tag limits, from the event stream (no recursion, no expansion)."""
    import yaml
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise error(f"nested more than {MAX_YAML_DEPTH} levels deep", line=line)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise error(f"more than {MAX_YAML_ALIASES} YAML aliases (*name)", line=line)
        tag = getattr(event, "tag", None)
        if tag and not isinstance(event, yaml.AliasEvent):
            full = tag if not tag.startswith("!!") else "tag:yaml.org,2002:" + tag[2:]
            if full not in PLAIN_TAGS and tag != "!":
                prefix = "tag:yaml.org,2002:"
                shown = "!!" + tag[len(prefix):] if tag.startswith(prefix) else tag
                raise error(f"YAML tag {shown} is not allowed (only !!str, !!int, !!float, "
                            f"!!bool, !!null, !!seq, !!map)", line=line)


class _Builder:
    """Nodes -> LineMap / LineList / scalars, counting nodes as aliases expand."""

    def __init__(self, error: Error):
        import yaml
        self.error, self.yaml = error, yaml
        self.nodes = 0
        self.scalars = yaml.SafeLoader("")

    def build(self, node, depth: int) -> Any:
        yaml = self.yaml
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_YAML_NODES:
            raise self.error(f"more than {MAX_YAML_NODES:,} values once aliases are expanded "
                             f"(an alias bomb?)", line=line)
        if depth > MAX_YAML_DEPTH:       # aliases can nest what the pre-scan saw as flat
            raise self.error(f"nested more than {MAX_YAML_DEPTH} levels deep", line=line)
        if isinstance(node, yaml.MappingNode):
            out = LineMap()
            out.line, out.lines = line, {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.error("YAML merge keys (<<) are not supported; write the keys out",
                                     line=key_line)
                key = self.build(key_node, depth + 1)
                key = key if isinstance(key, str) else str(key)
                if key in out:
                    raise self.error(f"duplicate key '{key}' (first on line {out.lines[key]})",
                                     line=key_line)
                out[key] = self.build(value_node, depth + 1)
                out.lines[key] = key_line
            return out
        if isinstance(node, yaml.SequenceNode):
            items = LineList(self.build(v, depth + 1) for v in node.value)
            items.line = line
            items.lines = [v.start_mark.line + 1 for v in node.value]
            return items
        try:
            return self.scalars.construct_object(node, deep=True)    # int, bool, str, float...
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(f"bad value {node.value!r} for tag {node.tag.rsplit(':', 1)[-1]}: "
                             f"{problem}", line=line) from None
