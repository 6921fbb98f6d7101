"""Trace bundles: what a trace saw, in a file, so every path can be rebuilt offline.

A bundle is one JSON document (gzip-compressed when the file name ends in `.gz`):

    {"format": "nettrace-bundle", "version": 1,
     "created": "2026-12-02T10:00:00Z", "nettrace": "<version>", "kernel": "<uname -r>",
     "lab": <Lab.to_dict(): the lab model as built, with its rule index>,
     "spec": "<the lab file's YAML text>" | null,
     "names": {"places": {"<netns inode>": {"netns", "host", "sandbox"}},
               "devices": [[inode, ifindex, {"name", "role", "sandbox", "kind"}], ...],
               "reasons": {"<skb_drop_reason>": "NAME"},
               "locations": {"<kernel address>": "symbol+0xoff"}},
     "traces": [{"request": {"lab", "src", "dst", "fingerprint": {...}, "dst_netns",
                             "refused"},
                 "events": [[point, ts_ns, skb, netns, ifindex, in_ifindex, out_ifindex,
                             trace_id, reason, location, hook, pf, l2, ethertype, len,
                             "<header bytes, base64>"], ...],
                 "nft": [[netns, trace_id, family, table, chain, text, ts], ...],
                 "events_lost": int, "probes_missing": [str]}, ...],
     "observed": [[<event row>, ...], ...],       # `nettrace record`: one list per packet
     "meta": {...}}        # free-form: a golden case maps frames to trace ids here

Events are numbers only (the columns of `struct nt_event`, bpf/event.h: `point` is
NT_P_*, `netns` an inode, `hook` NF_INET_*, `pf` 2 or 10); every word comes from the
`names` snapshot. `Bundle.paths()` runs the pure assembly (nettrace.trace.assemble), the
same code the live tracer ran, so the paths are the ones that were printed. Readers
refuse another `format` or a newer `version`, naming the file and the field.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nettrace.errors import SpecError
from nettrace.trace.assemble import Request, TraceLine, TraceRecord, assemble_observed
from nettrace.trace.events import Event, Point
from nettrace.trace.model import Path
from nettrace.trace.names import Names

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

FORMAT, VERSION = "nettrace-bundle", 1
#: columns of one event row (struct nt_event), in order; `hdr` is base64
EVENT_FIELDS = ("point", "ts_ns", "skb", "netns", "ifindex", "in_ifindex", "out_ifindex",
                "trace_id", "reason", "location", "hook", "pf", "l2", "ethertype", "len", "hdr")


class _Raw:
    """The fields of one recorded event, as `Event` reads them from bcc's struct."""

    __slots__ = EVENT_FIELDS + ("hdr_len",)

    def __init__(self, row: list) -> None:
        for name, value in zip(EVENT_FIELDS, row):
            setattr(self, name, value)
        self.hdr = base64.b64decode(self.hdr)
        self.hdr_len = len(self.hdr)


def event_row(ev: Event) -> list:
    return [int(ev.point), ev.ts_ns, ev.skb, ev.netns, ev.ifindex, ev.in_ifindex,
            ev.out_ifindex, ev.trace_id, ev.reason, ev.location, ev.hook, ev.pf, int(ev.l2),
            ev.ethertype, ev.length, base64.b64encode(ev.hdr).decode()]


def event_of_row(row: list) -> Event:
    if not isinstance(row, list) or len(row) != len(EVENT_FIELDS):
        raise ValueError(f"an event is a list of {len(EVENT_FIELDS)} values "
                         f"({', '.join(EVENT_FIELDS)})")
    for name, value in zip(EVENT_FIELDS[:-1], row):     # numbers, as the kernel wrote them
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 64:
            raise ValueError(f"event field {name} must be an unsigned integer, not {value!r}")
    if not 1 <= row[0] <= len(Point):
        raise ValueError(f"event point {row[0]} is not a probe point (1..{len(Point)})")
    if not isinstance(row[-1], str):
        raise ValueError("event field hdr must be base64 text")
    return Event(_Raw(row))


def _checked_names(names: Names) -> Names:
    """Names as recorded: text where the views expect text (a bundle is user input)."""
    for place in names.places.values():
        _text_fields(place, required=("netns",))
    for (inode, ifindex), dev in names.devices.items():
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (inode, ifindex)):
            raise ValueError(f"device key {[inode, ifindex]!r} must be two integers")
        _text_fields(dev, required=("name",))
    for table in (names.reasons, names.locations):
        for key, text in table.items():
            if not isinstance(text, str):
                raise ValueError(f"name of {key} must be text, not {text!r}")
    return names


def _text_fields(obj, required: tuple[str, ...]) -> None:
    import dataclasses
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not isinstance(value, str) and (f.name in required or value is not None):
            raise ValueError(f"{type(obj).__name__.lower()} field {f.name} must be text, "
                             f"not {value!r}")


@dataclass
class Bundle:
    lab_name: str
    names: Names
    traces: list[TraceRecord] = field(default_factory=list)
    observed: list[list[Event]] = field(default_factory=list)
    lab: dict[str, Any] | None = None          # Lab.to_dict()
    spec: str | None = None                    # the lab file's text
    created: str = ""
    kernel: str = ""
    nettrace: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_lab(cls, lab: "Lab", names: Names) -> "Bundle":
        from nettrace import __version__
        spec = None
        if lab.source and os.path.isfile(lab.source):
            with open(lab.source) as f:
                spec = f.read()
        return cls(lab.name, names, lab=lab.to_dict(), spec=spec,
                   created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   kernel=platform.release(), nettrace=__version__)

    def the_lab(self) -> "Lab | None":
        """The lab model as it was when recorded (for names and the rule index)."""
        from nettrace.topology.model import Lab
        return Lab.from_dict(self.lab) if self.lab else None

    def paths(self) -> list[Path]:
        """Every path of the bundle, assembled now: injected packets, then observed ones."""
        out = [rec.path(self.names) for rec in self.traces]
        out += [assemble_observed(evs, self.names, self.lab_name) for evs in self.observed]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "created": self.created,
            "nettrace": self.nettrace, "kernel": self.kernel, "lab": self.lab,
            "spec": self.spec, "names": self.names.to_dict(),
            "traces": [{"request": r.request.to_dict(),
                        "events": [event_row(ev) for ev in r.events],
                        "nft": [tl.to_list() for tl in r.lines],
                        "events_lost": r.events_lost, "probes_missing": list(r.probes_missing)}
                       for r in self.traces],
            "observed": [[event_row(ev) for ev in evs] for evs in self.observed],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Any, file: str = "<bundle>") -> "Bundle":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise SpecError(f"not a trace bundle (format must be {FORMAT!r})", file=file,
                            field="format")
        if not isinstance(d.get("version"), int) or not 1 <= d["version"] <= VERSION:
            raise SpecError(f"bundle version {d.get('version')!r} is not one this nettrace "
                            f"reads (1..{VERSION})", file=file, field="version")
        where = "names"
        try:
            names = _checked_names(Names.from_dict(d.get("names") or {}))
            for key in ("traces", "observed"):
                if not isinstance(d.get(key) or [], list):
                    raise TypeError(f"'{key}' must be a list")
            traces = []
            for i, t in enumerate(d.get("traces") or []):
                where = f"traces[{i}]"
                traces.append(TraceRecord(
                    Request.from_dict(t["request"]),
                    [event_of_row(row) for row in t.get("events") or []],
                    [TraceLine.from_list(row) for row in t.get("nft") or []],
                    int(t.get("events_lost") or 0), list(t.get("probes_missing") or [])))
            observed = []
            for i, evs in enumerate(d.get("observed") or []):
                where = f"observed[{i}]"
                observed.append([event_of_row(row) for row in evs])
            where = "lab"
            lab = d.get("lab")
            if lab is not None:
                from nettrace.topology.model import Lab
                Lab.from_dict(lab)                  # the recorded model must be readable
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SpecError(f"malformed: {str(exc)[:200]}", file=file, field=where) from None
        lab_name = (lab or {}).get("name") or (traces[0].request.lab if traces else "?")
        return cls(lab_name, names, traces, observed, lab, d.get("spec"),
                   d.get("created", ""), d.get("kernel", ""), d.get("nettrace", ""),
                   d.get("meta") or {})


def save(bundle: Bundle, file: str) -> None:
    """Write atomically (a partial bundle never replaces a good one)."""
    data = json.dumps(bundle.to_dict(), separators=(",", ":")).encode()
    if file.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    tmp = f"{file}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(file: str) -> Bundle:
    """Read a bundle (JSON, optionally gzip): a regular file, bounded in size (nettrace.inputs)."""
    from nettrace.inputs import MAX_BUNDLE_BYTES, gunzip, read_bytes

    def error(message: str, line: int | None = None) -> SpecError:
        return SpecError(message, file=file, line=line)
    data = read_bytes(file, "trace bundle", error, max_bytes=MAX_BUNDLE_BYTES)
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, "trace bundle", error, max_bytes=MAX_BUNDLE_BYTES)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"not a trace bundle (not JSON: {str(exc)[:100]})", file=file) from None
    return Bundle.from_dict(doc, file)
