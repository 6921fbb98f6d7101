"""Why a path ended as it did, in Docker's terms, and what to do about it.

    from nettrace.diagnosis import diagnose, apply_edits
    d = diagnose(path, lab)            # Diagnosis(cause, summary, evidence, fixes)
    fixed_spec = apply_edits(spec_dict, d.fixes[0].lab)

Pure: no kernel, no bcc, no pyroute2. Works the same on a live lab, a live Docker engine
(`--docker`) and a recorded path: it needs only the `Path` and the `Lab`.
"""

from nettrace.diagnosis.edits import EditError, apply_edits, parse_path
from nettrace.diagnosis.engine import diagnose
from nettrace.diagnosis.model import Cause, Diagnosis, EditOp, Fix, LabEdit

__all__ = ["Cause", "Diagnosis", "EditError", "EditOp", "Fix", "LabEdit", "apply_edits",
           "attach", "diagnose", "parse_path"]


def attach(paths, lab) -> None:
    """Put a diagnosis on each path (and nothing on its reply: the request's covers both)."""
    for path in paths:
        path.diagnosis = diagnose(path, lab)
