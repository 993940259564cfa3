"""Classroom assignments: the chapters' exercises as an nbgrader course.

    python tools/assignments.py build [chapters/NN_topic.ipynb ...]   # = make assignments

For every chapter notebook this writes, under ``_build/assignments/`` (an nbgrader course folder):

- ``source/chNN/NN_topic.ipynb``: the chapter, outputs cleared, with nbgrader metadata;
- ``release/chNN/NN_topic.ipynb``: what students get (``nbgrader generate_assignment``):
  solutions replaced by ``raise NotImplementedError()``, hidden tests removed;
- ``nbgrader_config.py`` and ``gradebook.db``.

How cells become nbgrader cells (conventions in CONTRIBUTING.md):

- a solution cell (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) is an autograded answer:
  ``solution: true, grade: false``;
- a test cell (first line ``# Autograded test: <grade_id> (<points> points)``) is a locked
  autograder test worth those points: ``grade: true, solution: false, locked: true``;
- every other cell, prose and code, is read-only (``locked: true``): the autograder puts back
  the original text of any locked cell a student edited, so the tests always run against the
  chapter's own set-up code.

See book/instructors.md for the whole classroom workflow.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import autograded_test, is_solution, solution_grade_ids  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = ROOT / "_build" / "assignments"

CONFIG = '''\
"""nbgrader configuration of the LM Book course (written by tools/assignments.py; rebuilt by
`make assignments`). Run nbgrader from this folder; it can be moved or copied elsewhere."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = "lmbook"
c.CourseDirectory.root = here
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")

# Autograding runs the whole chapter: allow slow cells, and run at the `test` profile (a few
# minutes a chapter) unless LMBOOK_PROFILE is set. The kernel is the `python3` of the environment
# that runs nbgrader, so lmbook and its data (LMBOOK_DATA_DIR) are found as in `make test`.
c.Execute.timeout = 1800
os.environ.setdefault("LMBOOK_PROFILE", "test")

# nbgrader creates the gradebook by running the `alembic` command: find this environment's.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
'''


def assignment_name(chapter: str | Path) -> str:
    """``chapters/01_ngram.ipynb`` -> ``ch01``."""
    match = re.match(r"(\d\d)_", Path(chapter).name)
    if not match:
        raise ValueError(f"{chapter}: a chapter's file name starts with its number, like 01_ngram.ipynb")
    return f"ch{match[1]}"


def with_nbgrader_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the chapter, outputs cleared, every cell carrying nbgrader metadata."""
    nb = copy.deepcopy(nb)
    answer_ids = iter(solution_grade_ids(nb.cells))
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in ("mystnb", "execution"):
            cell.metadata.pop(key, None)
        tags = [t for t in cell.metadata.pop("tags", []) if t != "hide-input"]  # a book-only tag
        if tags:
            cell.metadata["tags"] = tags
        test = autograded_test(cell)
        if test:
            grade_id, points = test
            meta = {"grade": True, "solution": False, "locked": True, "points": points, "grade_id": grade_id}
        elif is_solution(cell):
            meta = {"grade": False, "solution": True, "locked": False, "grade_id": next(answer_ids)}
        else:
            meta = {"grade": False, "solution": False, "locked": True,
                    "grade_id": f"cell-{cell.get('id') or index}"}
        cell.metadata["nbgrader"] = {**meta, "schema_version": 3}
    return nb


def nbgrader(course_dir: str | Path, *args: str) -> str:
    """Run ``nbgrader ARGS`` (of this Python environment) in the course folder; its log is returned,
    and a failure raises RuntimeError with that log."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_dir,
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or "[ERROR]" in log:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course_dir}:\n{log}")
    return log


def build(chapters: list[str | Path], course_dir: str | Path = COURSE_DIR) -> list[Path]:
    """Write the course's config and, for each chapter notebook, its source and student release.
    Returns the released notebooks. Submissions, grades and feedback already there are kept."""
    course_dir = Path(course_dir).resolve()
    course_dir.mkdir(parents=True, exist_ok=True)
    (course_dir / "nbgrader_config.py").write_text(CONFIG)
    released = []
    for chapter in map(Path, chapters):
        assignment = assignment_name(chapter)
        source = course_dir / "source" / assignment
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        nb = nbformat.read(chapter, as_version=4)
        nbformat.write(with_nbgrader_metadata(nb), source / chapter.with_suffix(".ipynb").name)
        nbgrader(course_dir, "generate_assignment", assignment, "--force")
        released.append(course_dir / "release" / assignment / chapter.with_suffix(".ipynb").name)
    return released


def submit(course_dir: str | Path, assignment: str, student: str, notebook_path: str | Path) -> Path:
    """Copy a notebook to ``submitted/<student>/<assignment>/``, as nbgrader's collect would. It
    keeps its file name, which must be the released notebook's."""
    submitted = Path(course_dir) / "submitted" / student / assignment
    submitted.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(notebook_path, submitted / Path(notebook_path).name))


def results(course_dir: str | Path, assignment: str, student: str, notebook_name: str) -> dict:
    """The autograder's verdict on one submitted notebook, from the gradebook and the autograded
    notebook:

        {"score": 5.0, "max_score": 5.0, "notebook": <the autograded .ipynb>,
         "tests": {grade_id: {"score": .., "max_score": .., "message": "AssertionError: ..."}}}

    ``message`` holds the test cell's errors (``ename: evalue``), empty for a passed test.
    """
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir).resolve()
    graded_path = course_dir / "autograded" / student / assignment / notebook_name
    messages = {}
    for cell in nbformat.read(graded_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            messages[meta["grade_id"]] = "\n".join(f"{o.ename}: {o.evalue}" for o in errors)
    with Gradebook("sqlite:///" + str(course_dir / "gradebook.db")) as gb:
        sub = gb.find_submission_notebook(Path(notebook_name).stem, assignment, student)
        tests = {g.name: {"score": g.score, "max_score": g.max_score, "message": messages.get(g.name, "")}
                 for g in sub.grades}
        return {"score": sub.score, "max_score": sub.max_score, "notebook": graded_path, "tests": tests}


def autograde(course_dir: str | Path, assignment: str, student: str, notebook_path: str | Path) -> dict:
    """Submit ``notebook_path`` as ``student``'s work on ``assignment``, run
    ``nbgrader autograde <assignment> --create --force --student=<student>`` and return
    :func:`results`. The kernel inherits this process's environment (LMBOOK_PROFILE, ...)."""
    submit(course_dir, assignment, student, notebook_path)
    nbgrader(course_dir, "autograde", assignment, "--create", "--force", f"--student={student}")
    return results(course_dir, assignment, student, Path(notebook_path).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("chapters", nargs="*", help="chapter notebooks; default: chapters/NN_*.ipynb")
    parser.add_argument("--course-dir", default=COURSE_DIR, type=Path, help=f"default: {COURSE_DIR}")
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        print("No chapters/NN_*.ipynb yet: nothing to build.")
        return 0
    for release in build(chapters, args.course_dir):
        print(f"student release: {os.path.relpath(release)}")
    print(f"nbgrader course folder: {os.path.relpath(args.course_dir)} (run nbgrader there; see book/instructors.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
