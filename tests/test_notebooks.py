"""The chapter notebooks: paired with their .py, run once in a fresh kernel, no machine paths,
no drift from lmbook, enough exercises (CONTRIBUTING.md). The checks live in tools/notebooks.py;
the fixture chapter in tests/fixtures/ proves that each one passes and fails when it should."""

import inspect
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402

from lmbook import env  # noqa: E402

NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
SOURCES = sorted((ROOT / "chapters").glob("*.py"))
FIXTURE = ROOT / "tests" / "fixtures" / "90_fixture.py"


def _report(problems):
    return "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Every real chapter


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_chapter_has_a_notebook(py):
    assert py.with_suffix(".ipynb").exists(), f"{py.name} has no .ipynb: run `make notebooks` and commit it"


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_is_paired_with_its_py(chapter):
    assert not (problems := notebooks.check_paired(chapter)), _report(problems)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_ran_in_one_fresh_kernel(chapter):
    nb = nbformat.read(chapter, as_version=4)
    assert not (problems := notebooks.check_fresh_run(nb, chapter.name)), _report(problems)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_no_machine_paths(chapter):
    nb = nbformat.read(chapter, as_version=4)
    assert not (problems := notebooks.check_no_machine_paths(nb, chapter.name)), _report(problems)


@pytest.mark.parametrize("path", NOTEBOOKS + SOURCES, ids=lambda p: p.name)
def test_chapter_code_matches_lmbook(path):
    assert not (problems := notebooks.drifted_cells(path)), _report(problems)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_enough_exercises(chapter):
    nb = nbformat.read(chapter, as_version=4)
    assert not (problems := notebooks.check_exercises(nb, chapter.name)), _report(problems)


# ---------------------------------------------------------------------------------------------
# The fixture chapter: each check passes on it, and fails once it is broken


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The fixture chapter's .py and the .ipynb that `execute` made from it (in a tmp folder)."""
    folder = tmp_path_factory.mktemp("chapter")
    py = folder / FIXTURE.name
    shutil.copyfile(FIXTURE, py)
    notebooks.execute(py)
    return py, py.with_suffix(".ipynb")


@pytest.fixture
def chapter(executed, tmp_path):
    """A private copy of the executed fixture chapter, free to break."""
    for f in executed:
        shutil.copyfile(f, tmp_path / f.name)
    return tmp_path / executed[0].name, tmp_path / executed[1].name


def test_fixture_chapter_passes_every_check(executed):
    py, ipynb = executed
    assert notebooks.check(ipynb) == []
    assert notebooks.main(["check", str(ipynb)]) == 0


def test_build_collapses_solutions_and_keeps_tags():
    nb = notebooks.build(FIXTURE)
    assert nb.metadata.kernelspec.name == "python3"
    solutions = [c for c in nb.cells if notebooks.is_solution(c)]
    assert len(solutions) == 6
    for cell in solutions:
        assert "hide-input" in cell.metadata.tags
        assert cell.metadata.mystnb == {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
    assert any(c.metadata.get("tags") == ["remove-output"] for c in nb.cells)
    assert nbformat.writes(nb) == nbformat.writes(notebooks.build(FIXTURE)), "a rebuild must not change the file"


def test_execute_saves_outputs_of_one_run_without_timestamps(executed):
    nb = nbformat.read(executed[1], as_version=4)
    assert f"profile: {env.profile()}" in nb.cells[1].outputs[0].text
    assert all("execution" not in c.metadata for c in nb.cells)


def test_pairing_fails_when_the_py_was_edited_after_the_build(chapter):
    py, ipynb = chapter
    py.write_text(py.read_text().replace('text = "abracadabra"', 'text = "mississippi"'))
    problems = notebooks.check_paired(ipynb)
    assert len(problems) == 1 and "run `make notebooks`" in problems[0] and "cell 4" in problems[0]
    py.write_text(py.read_text() + '\n# %%\nprint("a new cell")\n')
    assert notebooks.check_paired(ipynb)
    assert notebooks.main(["check", str(ipynb)]) == 1


def test_pairing_fails_when_a_tag_differs(chapter):
    py, ipynb = chapter
    py.write_text(py.read_text().replace('tags=["remove-output"]', 'tags=["remove-input"]'))
    assert notebooks.check_paired(ipynb)


def test_pairing_fails_without_a_py(chapter):
    py, ipynb = chapter
    py.unlink()
    assert "no 90_fixture.py" in notebooks.check_paired(ipynb)[0]


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_fresh_run_fails_on_skipped_or_reordered_cells(executed):
    nb = nbformat.read(executed[1], as_version=4)
    _code(nb)[2].execution_count = None
    assert "execution counts" in notebooks.check_fresh_run(nb)[0]
    _code(nb)[2].execution_count = 7
    assert "execution counts" in notebooks.check_fresh_run(nb)[0]


def test_fresh_run_fails_on_errors_and_tracebacks(executed):
    nb = nbformat.read(executed[1], as_version=4)
    _code(nb)[1].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    assert "ValueError: bad" in notebooks.check_fresh_run(nb)[0]
    nb = nbformat.read(executed[1], as_version=4)
    _code(nb)[1].outputs.append(nbformat.v4.new_output(
        "stream", name="stderr", text="Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"))
    assert "traceback" in notebooks.check_fresh_run(nb)[0]


def test_fresh_run_names_empty_code_cells(executed):
    nb = nbformat.read(executed[1], as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(""))
    assert "cell 3: an empty code cell" in notebooks.check_fresh_run(nb)[0]


@pytest.mark.parametrize("path", ["/home/ada/data.txt", "/tmp/xyz", "/Users/ada", "/root/x", "/work/main/x"])
def test_machine_paths_are_found_in_outputs_and_sources(executed, path):
    nb = nbformat.read(executed[1], as_version=4)
    assert notebooks.check_no_machine_paths(nb) == []
    _code(nb)[0].outputs[0].text += f"loaded {path}\n"
    assert path in notebooks.check_no_machine_paths(nb)[0]
    nb = nbformat.read(executed[1], as_version=4)
    nb.cells[0].source += f"\nSee {path}."
    assert "source holds a machine path" in notebooks.check_no_machine_paths(nb)[0]


def test_exercise_rules(executed):
    nb = nbformat.read(executed[1], as_version=4)
    assert notebooks.check_exercises(nb) == []
    solution = next(i for i, c in enumerate(nb.cells) if notebooks.is_solution(c))
    del nb.cells[solution]
    assert notebooks.check_exercises(nb) == ["notebook: 5 exercises (solution cells); at least 6 needed"]

    nb = nbformat.read(executed[1], as_version=4)
    tests = [c for c in nb.cells if notebooks.autograded_test(c)]
    tests[1].source = tests[1].source.replace("bigram_counts (3 points)", "char_counts (3 points)")
    assert "grade_ids used more than once: ['char_counts']" in notebooks.check_exercises(nb)[0]
    tests[1].source = tests[1].source.replace("# Autograded test:", "# Not a test:")
    problems = notebooks.check_exercises(nb)
    assert "notebook: 1 autograded test cells; at least 2 needed" in problems
    assert "notebook cell 10: hidden tests belong in an autograded test cell" in problems
    tests[0].source = tests[0].source.replace("(2 points)", "worth 2")
    assert "malformed test header" in notebooks.check_exercises(nb)[0]


def test_solution_grade_ids_are_unique_and_stable():
    cells = [nbformat.v4.new_code_cell(s) for s in [
        "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION",
        "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        "### BEGIN SOLUTION\ny = 1\n### END SOLUTION",
        "print('not an exercise')",
    ]]
    assert notebooks.solution_grade_ids(cells) == ["answer_f", "answer_f_2", "answer_3"]


# ---------------------------------------------------------------------------------------------
# The drift rule


def _drift_chapter(folder: Path, code: str) -> Path:
    """A two-cell chapter (.py and its built .ipynb, with an output) showing `code` from lmbook/env.py."""
    py = folder / "91_drift.py"
    py.write_text(f"# %% [markdown]\n# Drift.\n\n# %%\n# From lmbook/env.py\n{code}\n\n\n# %%\nprint(1)\n")
    nb = notebooks.build(py)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="kept\n")]
    nbformat.write(nb, py.with_suffix(".ipynb"))
    return py


PICK = inspect.getsource(env.pick).rstrip("\n")


def test_an_exact_copy_does_not_drift(tmp_path):
    py = _drift_chapter(tmp_path, "import os\n\n\n" + PICK + "\n\n\n" + inspect.getsource(env.profile).rstrip())
    assert notebooks.drifted_cells(py) == []
    assert notebooks.drifted_cells(py.with_suffix(".ipynb")) == []


def test_a_changed_character_is_drift_and_sync_fixes_it(tmp_path):
    changed = PICK.replace("missing", "misssing", 1)
    assert changed != PICK
    py = _drift_chapter(tmp_path, changed)
    for path in (py, py.with_suffix(".ipynb")):
        problems = notebooks.drifted_cells(path)
        assert "`pick` differs from lmbook/env.py" in problems[0] and "misssing" in problems[0]
        assert "tools/notebooks.py sync" in problems[-1]

    assert notebooks.main(["sync", str(py)]) == 0
    assert notebooks.drifted_cells(py) == [] and notebooks.drifted_cells(py.with_suffix(".ipynb")) == []
    assert PICK in py.read_text()
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert nb.cells[1].outputs[0].text == "kept\n", "sync changes sources only"
    assert notebooks.check_paired(py.with_suffix(".ipynb")) == [], "the .py and .ipynb stay paired"


def test_drift_reports_names_that_are_missing_or_defined_elsewhere(tmp_path):
    py = _drift_chapter(tmp_path, "def no_such_function():\n    pass")
    assert "lmbook/env.py has no `no_such_function`" in notebooks.drifted_cells(py)[0]
    assert notebooks.main(["sync", str(py)]) == 1, "sync cannot invent a definition"
    py = _drift_chapter(tmp_path, "def describe():\n    pass")
    py.write_text(py.read_text().replace("lmbook/env.py", "lmbook/data.py"))
    assert "`describe`" in notebooks.drifted_cells(py)[0]
    py.write_text(py.read_text().replace("lmbook/data.py", "lmbook/nonexistent.py"))
    assert "cannot import lmbook.nonexistent" in notebooks.drifted_cells(py)[0]
