"""Errors a user can act on. The CLI prints them without a traceback.

Exit codes: 0 success/expected outcome, 1 unexpected outcome (e.g. packet dropped
when delivery was expected), 2 usage or environment error.
"""

from __future__ import annotations


class NettraceError(Exception):
    """A failure explained in the user's terms; exit code 2."""

    exit_code = 2


class SpecError(NettraceError):
    """Bad lab file: names the file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = file or "<lab>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {message}")


class EnvironmentProblem(NettraceError):
    """The machine lacks something nettrace needs (root, BTF, bcc, a kernel feature)."""


class KernelFeatureMissing(EnvironmentProblem):
    """A driver or mode needs a kernel feature this kernel does not have."""

    def __init__(self, feature: str, needed_for: str):
        self.feature = feature
        super().__init__(f"{needed_for} needs the kernel feature '{feature}', "
                         f"which this kernel ({_release()}) does not provide")


def _release() -> str:
    import platform
    return platform.release()


def require_root(action: str = "this command") -> None:
    import os
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"{action} needs root (network namespaces, netlink and eBPF); "
                                 f"run it with sudo")
