"""One build of the HTML book per test run, shared by the test files that read it.

``jupyter-book build -W -n --keep-going`` runs once into a temporary folder; under pytest-xdist the
workers share it through a lock file, so whichever asks first builds and the others wait and reuse.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATHJAX = ROOT / "vendor" / "mathjax" / "tex-mml-chtml.js"


@dataclass(frozen=True)
class Build:
    code: int  # jupyter-book's exit status
    output: str  # what it printed
    html: Path  # the built site
    wrote_cache: bool  # it left a .jupyter_cache in the repository


def build_book(tmp_path_factory) -> Build:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder per run
    out, record = shared / "book", shared / "book-build.json"
    with open(shared / "book-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.exists():
            out.mkdir(exist_ok=True)
            had_cache = (ROOT / ".jupyter_cache").exists()
            jupyter_book = Path(sys.executable).parent / "jupyter-book"
            proc = subprocess.run(
                [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
                capture_output=True, text=True, timeout=900, cwd=out,
            )
            wrote_cache = not had_cache and (ROOT / ".jupyter_cache").exists()
            record.write_text(json.dumps({"code": proc.returncode, "output": proc.stdout + proc.stderr,
                                          "wrote_cache": wrote_cache}))
        result = json.loads(record.read_text())
    return Build(result["code"], result["output"], out / "_build" / "html", result["wrote_cache"])
