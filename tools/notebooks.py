"""Build, execute, sync and check the chapter notebooks.

A chapter is two files: ``chapters/NN_topic.py`` (jupytext "percent" format, the file you edit)
and ``chapters/NN_topic.ipynb`` (built from it and committed with the outputs of one real run).

    python tools/notebooks.py build   chapters/01_ngram.py     # .py -> .ipynb, not executed
    python tools/notebooks.py execute chapters/01_ngram.py     # build, run in a fresh kernel, save
    python tools/notebooks.py sync    [files]                  # re-copy "# From lmbook/..." cells
    python tools/notebooks.py check   [files]                  # the checks tests/test_notebooks.py runs

`execute` runs at the profile named by ``$LMBOOK_PROFILE`` (the kernel inherits the environment).
See CONTRIBUTING.md for the conventions these commands enforce.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import importlib
import inspect
import math
import os
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_TOGGLE = {"mystnb": {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}}
TEST_HEADER = re.compile(r"# Autograded test: (?P<grade_id>[A-Za-z0-9_-]+) \((?P<points>\d+(?:\.\d+)?) points?\)")
FROM_HEADER = re.compile(r"# From (?P<path>lmbook/[\w/]+\.py)")
MACHINE_PATHS = ("/work/", "/home/", "/tmp/", "/root/", "/Users/")
MIN_EXERCISES, MIN_AUTOGRADED = 6, 2


# ---------------------------------------------------------------------------------------------
# Cells: what kind of cell is this?


def is_solution(cell) -> bool:
    """A solution cell: a code cell containing ``### BEGIN SOLUTION``."""
    return cell.cell_type == "code" and SOLUTION_BEGIN in cell.source


def autograded_test(cell) -> tuple[str, float] | None:
    """``(grade_id, points)`` for an autograded test cell, else None.

    Its first line is ``# Autograded test: <grade_id> (<points> points)``.
    A cell that starts with ``# Autograded test:`` but is malformed raises ValueError.
    """
    if cell.cell_type != "code" or not cell.source.startswith("# Autograded test:"):
        return None
    first = cell.source.splitlines()[0].rstrip()
    match = TEST_HEADER.fullmatch(first)
    if not match:
        raise ValueError(f"malformed test header {first!r}; write '# Autograded test: <grade_id> (<points> points)'")
    return match["grade_id"], float(match["points"])


def solution_grade_ids(cells) -> list[str]:
    """The nbgrader grade_id of each solution cell, in order.

    An id already in the cell's nbgrader metadata is kept; otherwise it is ``answer_<name>`` after
    the first function or class the cell defines, or ``answer_<k>`` (k counts solution cells).
    """
    ids: list[str] = []
    for k, cell in enumerate([c for c in cells if is_solution(c)], start=1):
        given = cell.metadata.get("nbgrader", {}).get("grade_id")
        name = re.search(r"^(?:def|class) (\w+)", cell.source, re.MULTILINE)
        base = given or (f"answer_{name[1]}" if name else f"answer_{k}")
        grade_id, n = base, 1
        while grade_id in ids:  # the same function solved twice: answer_f, answer_f_2, ...
            n += 1
            grade_id = f"{base}_{n}"
        ids.append(grade_id)
    return ids


# ---------------------------------------------------------------------------------------------
# build and execute


def build(py_path: str | Path) -> nbformat.NotebookNode:
    """The notebook built from a percent-format ``.py``, not executed.

    Solution cells get the ``hide-input`` tag and a "Show solution" toggle for the book; tags
    written in the ``.py`` (``# %% tags=["..."]``) are kept; the kernel is ``python3``; cell ids
    are derived from the cells' content, so that rebuilding an unchanged chapter changes nothing.
    """
    nb = jupytext.read(py_path)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    seen: dict[str, int] = {}
    for cell in nb.cells:
        if is_solution(cell):
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
            cell.metadata.update(SOLUTION_TOGGLE)
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell.id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
    return nb


def strip_volatile(nb: nbformat.NotebookNode) -> None:
    """Remove execution timestamps, so that re-running a chapter only changes real outputs."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)


def execute(py_path: str | Path, timeout: int = 1800) -> float:
    """Build the notebook, run it top to bottom in one fresh ``python3`` kernel whose working
    folder is the chapter's, and save it with its outputs next to the ``.py``. Returns seconds.
    Raises ``nbclient.exceptions.CellExecutionError`` (and saves nothing) when a cell fails."""
    from nbclient import NotebookClient

    py_path = Path(py_path)
    nb = build(py_path)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(py_path.parent.resolve())}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    strip_volatile(nb)
    nbformat.write(nb, py_path.with_suffix(".ipynb"))
    return seconds


# ---------------------------------------------------------------------------------------------
# The drift rule: cells starting with "# From lmbook/<module>.py"


def _read_cells(path: str | Path):
    return jupytext.read(path).cells


def _blocks(source: str):
    """``(name, first_line, last_line)`` of each top-level def/class (1-based, decorators included)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            yield node.name, first, node.end_lineno


def _package_source(module_path: str, name: str) -> str:
    """``inspect.getsource`` of ``name`` in ``lmbook/<module>.py``; ValueError says what is wrong."""
    module_name = module_path[: -len(".py")].replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name}: {err}") from err
    if not hasattr(module, name):
        raise ValueError(f"{module_path} has no `{name}`")
    obj = getattr(module, name)
    where = inspect.getsourcefile(obj)
    if where is None or Path(where).resolve() != Path(module.__file__).resolve():
        raise ValueError(f"`{name}` is not defined in {module_path} (it comes from {where})")
    return inspect.getsource(obj)


def _check_drift_cell(source: str) -> list[str]:
    """Differences between one "# From lmbook/..." cell and the package (empty when in sync)."""
    module_path = FROM_HEADER.fullmatch(source.splitlines()[0])["path"]
    try:
        blocks = list(_blocks(source))
    except SyntaxError as err:
        return [f"does not parse as Python ({err.msg}, line {err.lineno})"]
    if not blocks:
        return [f"claims to come from {module_path} but has no top-level def or class"]
    lines, problems = source.splitlines(), []
    for name, first, last in blocks:
        shown = "\n".join(lines[first - 1 : last])
        try:
            real = _package_source(module_path, name).rstrip("\n")
        except ValueError as err:
            problems.append(str(err))
            continue
        if shown != real:
            diff = difflib.unified_diff(real.splitlines(), shown.splitlines(),
                                        f"{module_path}:{name}", f"notebook:{name}", lineterm="", n=1)
            problems.append(f"`{name}` differs from {module_path}:\n    " + "\n    ".join(diff))
    return problems


def _drift_cells(cells):
    """``(index, cell)`` of each code cell whose first line is ``# From lmbook/<module>.py``."""
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and cell.source and FROM_HEADER.fullmatch(cell.source.splitlines()[0]):
            yield i, cell


def drifted_cells(nb_or_py_path: str | Path) -> list[str]:
    """Human-readable differences between the chapter's "# From lmbook/..." cells and the
    package (``inspect.getsource``); empty when every copied definition is verbatim."""
    problems = []
    for i, cell in _drift_cells(_read_cells(nb_or_py_path)):
        problems += [f"{nb_or_py_path} cell {i + 1}: {p}" for p in _check_drift_cell(cell.source)]
    if problems:
        problems.append(f"fix: python tools/notebooks.py sync {nb_or_py_path}")
    return problems


def synced_source(source: str) -> str:
    """The cell's source with every top-level def/class replaced by the package's source."""
    module_path = FROM_HEADER.fullmatch(source.splitlines()[0])["path"]
    lines = source.splitlines()
    for name, first, last in reversed(list(_blocks(source))):
        lines[first - 1 : last] = _package_source(module_path, name).rstrip("\n").splitlines()
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def sync(path: str | Path) -> int:
    """Rewrite the drifted cells of a chapter from the package, in the ``.py`` and the ``.ipynb``
    (sources only; outputs are kept). Returns the number of cells changed, both files counted.
    Raises ValueError when a cell names something the package does not define."""
    path = Path(path)
    changed = 0
    py, ipynb = path.with_suffix(".py"), path.with_suffix(".ipynb")
    if py.exists():
        text = py.read_text()
        for _, cell in _drift_cells(jupytext.read(py).cells):
            new = synced_source(cell.source)
            if new != cell.source:
                if cell.source not in text:
                    raise ValueError(f"{py}: cannot find this cell's text to replace:\n{cell.source}")
                text = text.replace(cell.source, new)
                changed += 1
        if changed:
            py.write_text(text)
    if ipynb.exists():
        nb = nbformat.read(ipynb, as_version=4)
        cells_changed = 0
        for _, cell in _drift_cells(nb.cells):
            new = synced_source(cell.source)
            if new != cell.source:
                cell.source = new
                cells_changed += 1
        if cells_changed:
            nbformat.write(nb, ipynb)
        changed += cells_changed
    return changed


# ---------------------------------------------------------------------------------------------
# Checks (tests/test_notebooks.py runs the same functions): each returns a list of problems.


def check_paired(ipynb_path: str | Path) -> list[str]:
    """The ``.ipynb`` has the cells (types, sources, tags) that its ``.py`` builds."""
    ipynb_path = Path(ipynb_path)
    py = ipynb_path.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb_path}: no {py.name} next to it (the .py is the source you edit)"]
    expected, actual = build(py).cells, nbformat.read(ipynb_path, as_version=4).cells

    def key(cell):
        return cell.cell_type, cell.source, cell.metadata.get("tags", [])

    if [key(c) for c in expected] == [key(c) for c in actual]:
        return []
    first = next((i for i, (e, a) in enumerate(zip(expected, actual)) if key(e) != key(a)),
                 min(len(expected), len(actual)))
    return [f"{ipynb_path} differs from {py.name} (first at cell {first + 1}; {len(actual)} cells "
            f"vs {len(expected)} built from the .py): run `make notebooks` "
            f"(or python tools/notebooks.py execute {py}) and commit both files"]


def check_fresh_run(nb, name: str = "notebook") -> list[str]:
    """Every code cell ran, in order, in one kernel (counts 1, 2, 3, ...) and none failed."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and not cell.source.strip():
            problems.append(f"{name} cell {i + 1}: an empty code cell (never executed): delete it")
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"{name}: execution counts are {counts}, not 1..{len(code)}: "
                        "run `make notebooks` (one fresh kernel, top to bottom)")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                problems.append(f"{name} cell {i + 1}: error output {out.ename}: {out.evalue}")
            elif "Traceback (most recent call last)" in _output_text(out):
                problems.append(f"{name} cell {i + 1}: an output contains a traceback")
    return problems


def _output_text(out) -> str:
    """The text of an output (streams, text/* and JSON data, errors), images left out."""
    parts = [out.get("text", ""), out.get("ename", ""), out.get("evalue", "")] + out.get("traceback", [])
    for mime, data in out.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            parts.append(data if isinstance(data, str) else str(data))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def check_no_machine_paths(nb, name: str = "notebook") -> list[str]:
    """No source or output names a folder of the machine that ran it."""
    problems = []
    for i, cell in enumerate(nb.cells):
        texts = [("source", cell.source)] + [("output", _output_text(o)) for o in cell.get("outputs", [])]
        for where, text in texts:
            for path in MACHINE_PATHS:
                if path in text:
                    line = next(l for l in text.splitlines() if path in l).strip()
                    problems.append(f"{name} cell {i + 1}: {where} holds a machine path {path!r}: {line[:120]}")
    return problems


def check_exercises(nb, name: str = "notebook") -> list[str]:
    """At least 6 exercises (solution cells), at least 2 autograded test cells, well-formed
    markers and unique grade_ids."""
    problems, test_ids = [], []
    for i, cell in enumerate(nb.cells):
        where = f"{name} cell {i + 1}"
        try:
            test = autograded_test(cell)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if test:
            test_ids.append(test[0])
            if SOLUTION_BEGIN in cell.source:
                problems.append(f"{where}: a test cell cannot also hold a solution")
        elif HIDDEN_BEGIN in cell.source:
            problems.append(f"{where}: hidden tests belong in an autograded test cell")
        for begin, end in ((SOLUTION_BEGIN, SOLUTION_END), (HIDDEN_BEGIN, HIDDEN_END)):
            if cell.source.count(begin) != cell.source.count(end):
                problems.append(f"{where}: unbalanced {begin!r} / {end!r}")
    solutions = solution_grade_ids(nb.cells)
    if len(solutions) < MIN_EXERCISES:
        problems.append(f"{name}: {len(solutions)} exercises (solution cells); at least {MIN_EXERCISES} needed")
    if len(test_ids) < MIN_AUTOGRADED:
        problems.append(f"{name}: {len(test_ids)} autograded test cells; at least {MIN_AUTOGRADED} needed")
    ids = test_ids + solutions
    duplicates = sorted({g for g in ids if ids.count(g) > 1})
    if duplicates:
        problems.append(f"{name}: grade_ids used more than once: {duplicates}")
    return problems


# ---------------------------------------------------------------------------------------------
# Numbers in the prose must come from the run: tests/test_prose_numbers.py


_PROSE_NUMBER = re.compile(r"(?<![\w.,\-+/])[-+−]?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
                           r"(?:\s?(%)|([kMB])(?!\w)|[x×](?!\w))?(?!\w|[.,]\d)")
_OUTPUT_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SKIPPED_SPANS = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]*`|\{cite(?::\w+)?\}`[^`]*`"
                            r"|\]\([^)]*\)|<[^>\n]*>", re.DOTALL)
_SECTION_REF = re.compile(r"(?:[Ss]ections?|§|[Cc]hapters?|[Ee]xercises?|[Tt]ables?|[Ff]igures?)\s*$")
_SUFFIX = {"k": 1e3, "M": 1e6, "B": 1e9}


def significant_digits(digits: str) -> int:
    """Significant digits of a number as written (commas removed): ``"182625"`` -> 6, ``"0.0090"``
    -> 2, ``"32000"`` -> 2 (trailing zeros of an integer are taken as rounding), ``"98.1"`` -> 3."""
    if "." in digits:
        return len(digits.replace(".", "").lstrip("0")) or 1
    return len(digits.lstrip("0").rstrip("0")) or 1


def prose_numbers(markdown: str) -> list[tuple[str, float, int, bool]]:
    """The numbers of a markdown text that claim a result: ``(as written, value, decimals, cited)``
    for each number with 3 or more significant digits. Math, code, links, HTML, section and
    chapter numbers and years (1900-2030) are left out; ``cited`` is True when the sentence holds
    a ``{cite:...}`` role. A suffix k, M or B multiplies the value; a percentage stays in percent.

    >>> [(w, v) for w, v, _, _ in prose_numbers("It reached 1.5387 on 182,625 pairs (98.1%), in 2017.")]
    [('1.5387', 1.5387), ('182,625', 182625.0), ('98.1%', 98.1)]
    """
    found = []
    for sentence in re.split(r"(?<=[.!?:;])\s+(?=[A-Z*(\[`$])|\n\s*\n", markdown):
        cited = "{cite" in sentence
        text = _SKIPPED_SPANS.sub(lambda m: " " * len(m.group(0)), sentence)
        for m in _PROSE_NUMBER.finditer(text):
            integer, fraction, percent, suffix = m.group(1), m.group(2) or "", m.group(3), m.group(4)
            digits = integer.replace(",", "") + fraction
            before = text[: m.start()]
            if _SECTION_REF.search(before) or re.search(r"(?:^|\n)#+\s*$", before) or significant_digits(digits) < 3:
                continue  # "section 7.10", "## 7.10 The running table", or too few digits to be a result
            if not fraction and not percent and not suffix and "," not in integer and 1900 <= int(digits) <= 2030:
                continue  # a year
            value = float(digits) * (_SUFFIX[suffix] if suffix else 1)
            found.append((m.group(0).strip().lstrip("-+−"), value, len(fraction) - 1 if fraction else 0, cited))
    return found


def output_numbers(nb) -> list[float]:
    """Every number in the notebook's stored outputs (text only), commas removed, signs dropped."""
    values = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for m in _OUTPUT_NUMBER.finditer(_output_text(out)):
                try:
                    values.append(abs(float(m.group(0).replace(",", ""))))
                except ValueError:
                    pass
    return values


def shown_by(value: float, decimals: int, written: str, outputs: list[float]) -> bool:
    """Whether an output number, rounded as the prose rounds, gives the prose's number: 1.4697 shows
    1.47, 226,489 shows 226,000 and 124M, 98.10 shows 98.1%, and 0.981 shows 98.1% too."""
    digits = re.sub(r"[^\d.]", "", written)
    sig = significant_digits(digits)
    candidates = [value] + ([value / 100] if written.endswith("%") else [])
    for target in candidates:
        for o in outputs:
            if "." in digits and target == value and written[-1] not in _SUFFIX:  # decimals: round alike
                if round(o, decimals) == round(target, decimals):
                    return True
            elif o > 0 and target > 0:  # an integer (or a percentage read as a fraction): significant digits
                scale = 10 ** (math.floor(math.log10(target)) - sig + 1)
                if round(o / scale) == round(target / scale):
                    return True
    return False


def check_prose_numbers(nb, name: str = "notebook", quoted: dict[str, str] | None = None) -> list[str]:
    """Each number with 3+ significant digits in a markdown cell must appear in the notebook's
    stored outputs (as printed, or rounded as the prose rounds it), unless its sentence cites a
    source (``{cite:p}`key```) or `quoted` maps the number, as written, to the reason it is quoted."""
    quoted = quoted or {}
    outputs = output_numbers(nb)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for written, value, decimals, cited in prose_numbers(cell.source):
            if cited or written in quoted or shown_by(value, decimals, written, outputs):
                continue
            line = next((l for l in cell.source.splitlines() if written in l), "").strip()
            problems.append(f"{name} cell {i + 1}: {written} is in no output of the notebook (print it above "
                            f"the sentence, cite its source, or allow-list it with a reason): {line[:100]}")
    return problems


def check(ipynb_path: str | Path) -> list[str]:
    """Every check on one chapter notebook."""
    ipynb_path = Path(ipynb_path)
    if not ipynb_path.exists():
        return [f"{ipynb_path} does not exist: run `make notebooks` and commit it"]
    nb = nbformat.read(ipynb_path, as_version=4)
    name = str(ipynb_path)
    return (check_paired(ipynb_path) + check_fresh_run(nb, name) + check_no_machine_paths(nb, name)
            + drifted_cells(ipynb_path) + check_exercises(nb, name))


# ---------------------------------------------------------------------------------------------
# The command line


def _chapters(files: list[str], suffix: str) -> list[Path]:
    """The named chapter files (default: every chapter, .py or .ipynb), with the wanted suffix."""
    chapters = ROOT / "chapters"
    paths = [Path(f) for f in files] or sorted({*chapters.glob("*.py"), *chapters.glob("*.ipynb")})
    return sorted({Path(os.path.relpath(p.with_suffix(suffix))) for p in paths})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "execute", "sync", "check"])
    parser.add_argument("files", nargs="*", help="chapter files (.py or .ipynb); default: chapters/*")
    args = parser.parse_args(argv)

    if args.command in ("build", "execute"):
        if not args.files:
            parser.error(f"{args.command} needs the chapter .py files, e.g. chapters/01_ngram.py")
        for py in _chapters(args.files, ".py"):
            if args.command == "build":
                nbformat.write(build(py), py.with_suffix(".ipynb"))
                print(f"{py.with_suffix('.ipynb')}: built (not executed)")
            else:
                from lmbook.env import profile
                from nbclient.exceptions import CellExecutionError

                print(f"{py}: executing at profile {profile()} ...", flush=True)
                try:
                    seconds = execute(py)
                except CellExecutionError as err:
                    print(f"{py}: a cell failed; nothing saved.\n{err}")
                    return 1
                print(f"{py.with_suffix('.ipynb')}: executed in {seconds:.1f} s (profile {profile()})")
        return 0
    if args.command == "sync":
        for py in _chapters(args.files, ".py"):
            try:
                print(f"{py} (and its .ipynb): {sync(py)} cell(s) re-synced from lmbook")
            except (ValueError, SyntaxError) as err:
                print(f"{py}: cannot sync: {err}")
                return 1
        return 0
    problems = []
    for ipynb in _chapters(args.files, ".ipynb"):
        found = check(ipynb)
        print(f"{ipynb}: {'ok' if not found else f'{len(found)} problem(s)'}")
        problems += found
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
