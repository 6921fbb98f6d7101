"""Golden paths: a capture plus the path each of its frames must take through a lab.

A case is `captures/<case>.pcap` and `captures/<case>.paths.yaml`. The YAML names the lab,
the injection point, the `--rewrite` rules and, per frame, the expected path signature:
one line per hop (`owner:device point [hook] [verdict] [rule] [drop reason]`) and the
verdict. Nothing that changes from run to run goes in: no times, skb addresses, netns
names, and no device names derived from the lab's name (a veth host end is written
`veth(c1)`, a user-defined bridge `br(mynet)`), so a case passes under any lab name.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from nettrace.errors import SpecError
from nettrace.trace.model import Path
from nettrace.views.names import Aliases, hop_owner
from nettrace.views.paths import hop_signature, verdict_signature

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

GOLDEN_SUFFIX = ".paths.yaml"
ENGINE_KEYS = {"version", "firewall", "userland_proxy"}
_LISTEN = re.compile(r"^\S+ (tcp|udp)/\d{1,5}$")


# -- signatures ------------------------------------------------------------------------------
@dataclass
class PathSignature:
    verdict: str
    hops: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"verdict: {self.verdict}"] + [f"  {h}" for h in self.hops]

    def to_yaml(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "hops": list(self.hops)}


@dataclass
class FrameSignature:
    """What one replayed frame did: its path, and its reply's path when there is one."""

    frame: int
    packet: str = ""                     # informative: the frame as scapy summarises it
    request: PathSignature | None = None
    reply: PathSignature | None = None
    error: str | None = None             # the frame could not be injected

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.error:
            out.append(f"error: {self.error}")
        if self.request:
            out += self.request.lines()
        if self.reply:
            out += ["reply " + self.reply.lines()[0]] + self.reply.lines()[1:]
        return out

    def to_yaml(self) -> dict[str, Any]:
        d: dict[str, Any] = {"frame": self.frame}
        if self.packet:
            d["packet"] = self.packet
        if self.error:
            d["error"] = self.error
        if self.request:
            d.update(self.request.to_yaml())
        if self.reply:
            d["reply"] = self.reply.to_yaml()
        return d


def path_signature(path: Path, lab: "Lab | None", alias: Aliases | None = None) -> PathSignature:
    """Hops seen at no device are left out when they are a normal free (`consume`) or have
    no place at all: an skb freed by a process after the path ended (a server reading its
    socket) comes before or after the tracer closes the path as timing has it."""
    alias = alias or Aliases(lab)
    placed = [h for h in path.hops if h.device or (h.point != "consume" and
                                                   (h.netns or h.sandbox or h.host))]
    return PathSignature(verdict_signature(path, alias, lab),
                         [hop_signature(h, lab, alias) for h in placed])


def frame_signature(number: int, packet: str, path: Path | None, lab: "Lab | None",
                    alias: Aliases | None = None, error: str | None = None) -> FrameSignature:
    alias = alias or Aliases(lab)
    if path is None:
        return FrameSignature(number, packet, error=error)
    return FrameSignature(number, packet, path_signature(path, lab, alias),
                          path_signature(path.reply, lab, alias) if path.reply else None, error)


# -- golden files --------------------------------------------------------------------------
@dataclass
class GoldenCase:
    """A `<case>.paths.yaml` file."""

    file: str
    capture: str                         # path of the capture, resolved against the YAML's dir
    lab: str                             # embedded lab name or lab file
    source: str                          # where frames are injected from (--from)
    rewrite: list[str] = field(default_factory=list)
    layer: str = "auto"
    timeout: float = 2.0
    description: str = ""
    frames: list[FrameSignature] = field(default_factory=list)
    listen: list[str] = field(default_factory=list)   # "web tcp/80": a server for the replay
    bundle: str | None = None            # the recorded trace bundle, resolved like capture
    #: engine profile pinned for the lab ({"version": "20.10"}): expectations name its chains
    engine: dict[str, Any] = field(default_factory=dict)
    expect: list[dict[str, Any]] = field(default_factory=list)   # hand-written; never updated

    @property
    def name(self) -> str:
        base = os.path.basename(self.file)
        return base[:-len(GOLDEN_SUFFIX)] if base.endswith(GOLDEN_SUFFIX) else base

    def to_yaml(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "capture": os.path.relpath(self.capture, os.path.dirname(os.path.abspath(self.file))),
            "lab": self.lab,
            **({"engine": dict(self.engine)} if self.engine else {}),
            "from": self.source,
            "rewrite": list(self.rewrite),
            "layer": self.layer,
            "timeout": self.timeout,
            **({"listen": list(self.listen)} if self.listen else {}),
            **({"bundle": os.path.relpath(self.bundle, os.path.dirname(
                os.path.abspath(self.file)))} if self.bundle else {}),
            **({"expect": self.expect} if self.expect else {}),
            "frames": [f.to_yaml() for f in self.frames],
        }


def _path_sig(raw: Any, file: str, where: str) -> PathSignature:
    if not isinstance(raw, dict) or "verdict" not in raw:
        raise SpecError("expected a mapping with 'verdict' and 'hops'", file=file, field=where)
    hops = raw.get("hops") or []
    if not isinstance(hops, list) or not all(isinstance(h, str) for h in hops):
        raise SpecError("'hops' must be a list of strings", file=file, field=f"{where}.hops")
    return PathSignature(str(raw["verdict"]), list(hops))


def load_golden(file: str) -> GoldenCase:
    """Read and validate a golden file; errors name the file and the field."""
    from nettrace.inputs import read_text, read_yaml

    def error(message: str, line: int | None = None) -> SpecError:
        return SpecError(message, file=file, line=line)
    doc = read_yaml(read_text(file, "golden file", error), error)
    if not isinstance(doc, dict):
        raise SpecError("a golden file is a mapping with capture, lab, from and frames", file=file)
    for key in ("capture", "lab", "from"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise SpecError("missing or not a string", file=file, field=key)
    unknown = set(doc) - {"description", "capture", "lab", "from", "rewrite", "layer", "timeout",
                          "listen", "frames", "bundle", "expect", "engine"}
    if unknown:
        raise SpecError(f"unknown key(s): {', '.join(sorted(unknown))}", file=file)
    rewrite = doc.get("rewrite") or []
    if not isinstance(rewrite, list) or not all(isinstance(r, str) for r in rewrite):
        raise SpecError("must be a list of OLD=NEW strings or 'auto'", file=file, field="rewrite")
    layer = doc.get("layer", "auto")
    if layer not in ("auto", "l2", "l3"):
        raise SpecError(f"'{layer}' is not one of auto, l2, l3", file=file, field="layer")
    listen = doc.get("listen") or []
    if not isinstance(listen, list) or not all(isinstance(x, str) and _LISTEN.match(x)
                                               for x in listen):
        raise SpecError("must be a list of 'NODE tcp/PORT' or 'NODE udp/PORT'", file=file,
                        field="listen")
    timeout = doc.get("timeout", 2.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 < timeout <= 3600:                      # also refuses .nan and .inf
        raise SpecError("must be a positive number of seconds", file=file, field="timeout")
    frames = []
    for i, raw in enumerate(doc.get("frames") or []):
        where = f"frames[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("frame"), int):
            raise SpecError("each frame needs an integer 'frame'", file=file, field=where)
        request = _path_sig(raw, file, where) if "verdict" in raw else None
        reply = _path_sig(raw["reply"], file, f"{where}.reply") if raw.get("reply") else None
        frames.append(FrameSignature(raw["frame"], str(raw.get("packet", "")), request, reply,
                                     raw.get("error")))
    here = os.path.dirname(os.path.abspath(file))
    capture = os.path.join(here, doc["capture"])
    if doc.get("bundle") is not None and not isinstance(doc["bundle"], str):
        raise SpecError("must be the file name of a trace bundle", file=file, field="bundle")
    bundle = os.path.join(here, doc["bundle"]) if doc.get("bundle") else None
    engine = doc.get("engine") or {}
    if not isinstance(engine, dict) or set(engine) - ENGINE_KEYS:
        raise SpecError(f"must be a mapping of {', '.join(sorted(ENGINE_KEYS))}", file=file,
                        field="engine")
    try:
        from nettrace.topology.model import EngineProfile
        EngineProfile(**engine)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"not an engine profile: {exc}", file=file, field="engine") from None
    engine = {k: (str(v) if k != "userland_proxy" else bool(v)) for k, v in engine.items()}
    expect = doc.get("expect") or []
    if not isinstance(expect, list):
        raise SpecError("must be a list of per-frame expectations", file=file, field="expect")
    for i, exp in enumerate(expect):
        _check_expect_syntax(exp, file, f"expect[{i}]")
    expect = json.loads(json.dumps(expect))       # plain lists and dicts (the YAML reader's
                                                  # line-tracking types do not dump back)
    return GoldenCase(file, capture, doc["lab"], doc["from"], list(rewrite), layer,
                      float(timeout), str(doc.get("description") or ""), frames, list(listen),
                      bundle=bundle, expect=expect, engine=engine)


def save_golden(case: GoldenCase) -> None:
    import yaml
    text = yaml.safe_dump(case.to_yaml(), sort_keys=False, width=200, allow_unicode=True)
    shown = os.path.relpath(case.file) if not os.path.relpath(case.file).startswith("..") \
        else case.file
    header = (f"# Golden paths for {os.path.basename(case.capture)}: what each frame must do.\n"
              f"# Regenerate after an intended change: nettrace check {shown} --update\n"
              f"# (`expect:` is written by hand from the lab and Docker's rules: --update keeps\n"
              f"# it and checks it; `frames:` and the bundle are what the tracer saw)\n")
    tmp = case.file + ".tmp"
    with open(tmp, "w") as f:
        f.write(header + text)
    os.replace(tmp, case.file)


# -- comparison ----------------------------------------------------------------------------
@dataclass
class FrameDifference:
    frame: int
    expected: list[str]
    actual: list[str]


def compare(expected: Iterable[FrameSignature],
            actual: Iterable[FrameSignature]) -> list[FrameDifference]:
    """Frames whose signature differs (a frame missing on one side counts)."""
    exp = {f.frame: f for f in expected}
    act = {f.frame: f for f in actual}
    diffs = []
    for n in sorted(set(exp) | set(act)):
        e = exp[n].lines() if n in exp else ["(frame not in the golden file)"]
        a = act[n].lines() if n in act else ["(frame not replayed)"]
        if e != a:
            diffs.append(FrameDifference(n, e, a))
    return diffs


def side_by_side(diff: FrameDifference, width: int = 60) -> list[str]:
    """Expected | actual, aligned line by line; '!' marks lines that differ."""
    rows = [f"frame {diff.frame}:", f"  {'expected':<{width}} | actual"]
    matcher = difflib.SequenceMatcher(a=diff.expected, b=diff.actual, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        left, right = diff.expected[a1:a2], diff.actual[b1:b2]
        for i in range(max(len(left), len(right))):
            lt = left[i] if i < len(left) else ""
            rt = right[i] if i < len(right) else ""
            mark = " " if op == "equal" else "!"
            lt = lt if len(lt) <= width else lt[:width - 1] + "…"
            rows.append(f"{mark} {lt:<{width}} | {rt}")
    return rows


# -- hand-written expectations ---------------------------------------------------------------
#: keys of one `expect:` entry (a frame) and of its `reply:` mapping
EXPECT_KEYS = {"frame", "verdict", "at", "devices", "chain", "changes", "reply", "error", "note"}
REPLY_KEYS = {"verdict", "at", "devices", "chain", "changes"}


def _check_expect_syntax(exp: Any, file: str, where: str) -> None:
    if not isinstance(exp, dict) or not isinstance(exp.get("frame"), int):
        raise SpecError("each expectation is a mapping with an integer 'frame'", file=file,
                        field=where)
    unknown = set(exp) - EXPECT_KEYS
    if unknown:
        raise SpecError(f"unknown key(s): {', '.join(sorted(unknown))} (known: "
                        f"{', '.join(sorted(EXPECT_KEYS))})", file=file, field=where)
    reply = exp.get("reply")
    if reply is not None and (not isinstance(reply, dict) or set(reply) - REPLY_KEYS):
        raise SpecError(f"'reply' is null (no reply) or a mapping of {', '.join(sorted(REPLY_KEYS))}",
                        file=file, field=f"{where}.reply")
    for key in ("devices", "changes"):
        for part in (exp, reply or {}):
            if key in part and not (isinstance(part[key], list)
                                    and all(isinstance(x, str) for x in part[key])):
                raise SpecError(f"'{key}' must be a list of strings", file=file,
                                field=f"{where}.{key}")


def device_roles(path: Path, lab: "Lab | None", alias: Aliases) -> list[str]:
    """`owner:device role` of every device crossing, once per crossing, stable names."""
    out: list[str] = []
    for hop in path.hops:
        bridge_nf = hop.point.is_netfilter and hop.role == "bridge"
        if (hop.point.is_device or bridge_nf) and hop.device:
            text = f"{hop_owner(hop, lab)}:{alias(hop.device)} {hop.role or '?'}"
            if not out or out[-1] != text:
                out.append(text)
    return out


def deciding_chain(path: Path) -> str | None:
    """The chain of the rule that decided: the verdict's (a drop), else the chain of the
    last filter-table rule that accepted the packet (nat and policy lines do not decide)."""
    if path.verdict.rule is not None:
        return path.verdict.rule.chain
    rules = [h.rule for h in path.hops if h.rule is not None and h.rule.table == "filter"
             and not (h.rule.rule or "").startswith("policy ")]
    return rules[-1].chain if rules else None


def _check_path(exp: dict, path: Path | None, lab, alias: Aliases, what: str) -> list[str]:
    if path is None:
        return [f"{what}: expected a path, none was traced"]
    bad = []
    v = path.verdict
    if "verdict" in exp and v.kind != exp["verdict"]:
        bad.append(f"{what}: verdict {v.kind}, expected {exp['verdict']}")
    where = alias(v.where) or ""
    if "at" in exp and not where.startswith(str(exp["at"])):
        bad.append(f"{what}: verdict at {where or '-'}, expected at {exp['at']}")
    if "devices" in exp:
        got = device_roles(path, lab, alias)
        if got != exp["devices"]:
            bad.append(f"{what}: devices {got}, expected {exp['devices']}")
    if "chain" in exp and deciding_chain(path) != exp["chain"]:
        bad.append(f"{what}: decided by chain {deciding_chain(path)}, expected {exp['chain']}")
    changes = [alias(c) for h in path.hops for c in h.changes]
    for want in exp.get("changes", []):
        if not any(want in c for c in changes):
            bad.append(f"{what}: no header change like {want!r} (seen: {changes})")
    return bad


def check_expectations(expect: list[dict], results: dict[int, tuple[Path | None, str | None]],
                       lab: "Lab | None") -> list[str]:
    """Problems of `results` (frame -> (path, error)) against hand-written expectations."""
    alias = Aliases(lab)
    bad: list[str] = []
    for exp in expect:
        n = exp["frame"]
        what = f"frame {n}"
        path, error = results.get(n, (None, None))
        if "error" in exp:
            if not error or str(exp["error"]) not in error:
                bad.append(f"{what}: expected an error like {exp['error']!r}, got {error!r}")
            continue
        if error:
            bad.append(f"{what}: {error}")
            continue
        bad += _check_path(exp, path, lab, alias, what)
        if "reply" in exp:
            if exp["reply"] is None:
                if path is not None and path.reply is not None:
                    bad.append(f"{what}: a reply was seen, none expected")
            else:
                bad += _check_path(exp["reply"], path.reply if path else None, lab, alias,
                                   f"{what} reply")
    return bad
