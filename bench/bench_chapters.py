"""Wall time of each chapter, run top to bottom in a fresh kernel, at each profile.

    python bench/bench_chapters.py                          # every chapter, profiles test and cpu
    python bench/bench_chapters.py --profiles test 02_neural 03_rnn

Each run builds the notebook from its ``.py``, executes it in a fresh ``python3`` kernel exactly as
``tools/notebooks.py execute`` does, and throws the outputs away: the committed notebooks are never
touched. Results are merged into ``bench/results/chapters.json`` (one entry per chapter and profile,
with the machine and the load average when the run started, because a neighbour on a shared 2-core
machine can double a wall time) and printed as a table into ``bench/results/chapters.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402  (tools/notebooks.py: build and run a chapter)

RESULTS = Path(__file__).parent / "results"


def run_chapter(py_path: Path, profile: str, timeout: int = 3600) -> tuple[float, float]:
    """(wall seconds, the kernel's CPU seconds) to execute ``py_path`` at ``profile`` in a fresh
    kernel; outputs are discarded."""
    import resource

    from nbclient import NotebookClient

    nb = notebooks.build(py_path)
    os.environ["LMBOOK_PROFILE"] = profile  # the kernel inherits the environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(py_path.parent)}})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    client.execute()  # shuts the kernel down at the end: its CPU time is then counted below
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.perf_counter() - start, cpu


def machine() -> str:
    return (f"{os.cpu_count()} cpus, python {platform.python_version()}, torch {torch.__version__}, "
            f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")


def table(results: dict) -> str:
    chapters = sorted({key.split("/")[0] for key in results})
    profiles = [p for p in ("test", "cpu", "gpu") if any(k.endswith("/" + p) for k in results)]
    lines = ["Wall time of each chapter, top to bottom in a fresh kernel (bench/bench_chapters.py)", ""]
    lines.append(f"{'chapter':<22}" + "".join(f"{p:>12}" for p in profiles))
    for ch in chapters:
        cells = [results.get(f"{ch}/{p}") for p in profiles]
        lines.append(f"{ch:<22}" + "".join(f"{c['seconds']:>11.0f}s" if c else f"{'-':>12}" for c in cells))
    lines += ["", "each entry: date, machine, load average (1 min) when the run started, and the CPU time of the",
              "notebook's kernel where recorded (on a busy machine the wall time is longer; one thread, unshared,",
              "takes about its CPU time)"]
    for key in sorted(results):
        r = results[key]
        cpu = f", kernel CPU {r['cpu_seconds']:.0f} s" if "cpu_seconds" in r else ""
        lines.append(f"  {key:<24} {r['seconds']:7.1f} s  {r['date']}  {r['machine']}  load {r['load']:.2f}{cpu}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="e.g. 02_neural (default: every chapter)")
    parser.add_argument("--profiles", nargs="+", default=["test", "cpu"], choices=["test", "cpu", "gpu"])
    args = parser.parse_args(argv)

    paths = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
    if args.chapters:
        wanted = set(args.chapters)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            parser.error(f"no chapter named {sorted(missing)}; chapters are "
                         f"{[p.stem for p in sorted((ROOT / 'chapters').glob('[0-9][0-9]_*.py'))]}")

    store = RESULTS / "chapters.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for path in paths:
        for profile in args.profiles:
            load = os.getloadavg()[0]
            seconds, cpu = run_chapter(path, profile)
            print(f"{path.stem} at the {profile} profile: {seconds:.1f} s, kernel CPU {cpu:.1f} s "
                  f"(load {load:.2f} at start)", flush=True)
            results[f"{path.stem}/{profile}"] = {"seconds": round(seconds, 1), "load": round(load, 2),
                                                 "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                                                 "cpu_seconds": round(cpu, 1)}
            store.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (RESULTS / "chapters.txt").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
