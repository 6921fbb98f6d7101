"""Run every benchmark in bench/ (bench_*.py) one after the other; each prints its figures."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
failed = 0
for path in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
    print(f"\n=== {os.path.basename(path)}", flush=True)
    rc = subprocess.call([sys.executable, path])
    failed += rc != 0
sys.exit(1 if failed else 0)
