"""Classroom assignments (tools/assignments.py, nbgrader): the release hides solutions and hidden
tests; the instructor's solutions score full marks; the untouched release scores zero with
messages a student can act on; edited tests are put back. On the fixture chapter (fast) and on
every real chapter. Each test builds its own course folder under tmp; nothing is written into the
repository."""

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import notebooks  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
FIXTURE = ROOT / "tests" / "fixtures" / "90_fixture.py"


@pytest.fixture(autouse=True)
def test_profile(monkeypatch):
    """Autograding runs the whole chapter: at the `test` profile it takes minutes, not hours."""
    monkeypatch.setenv("LMBOOK_PROFILE", "test")


def _regions(source: str, begin: str, end: str) -> list[str]:
    return re.findall(re.escape(begin) + r"\n(.*?)\n[ \t]*" + re.escape(end), source, re.DOTALL)


def _by_grade_id(nb) -> dict:
    return {c.metadata.nbgrader.grade_id: c for c in nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}


def check_release(source_path: Path, release_path: Path) -> None:
    """No solution or hidden-test text is left in the release; solutions became stubs."""
    source, release = nbformat.read(source_path, as_version=4), nbformat.read(release_path, as_version=4)
    released = _by_grade_id(release)
    text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{release_path.name}: {marker!r} is left in the release"
    for grade_id, cell in _by_grade_id(source).items():
        meta = cell.metadata.nbgrader
        if meta.solution:
            assert "raise NotImplementedError()" in released[grade_id].source
            bodies = _regions(cell.source, notebooks.SOLUTION_BEGIN, notebooks.SOLUTION_END)
        else:
            bodies = _regions(cell.source, notebooks.HIDDEN_BEGIN, notebooks.HIDDEN_END)
        for body in bodies:
            assert body.strip() not in released[grade_id].source, f"{grade_id}: the release shows {body!r}"


def solved_release(course: Path, assignment: str, name: str, folder: Path) -> Path:
    """The release with the instructor's solution cells pasted in: a student who solved it all."""
    source = _by_grade_id(nbformat.read(course / "source" / assignment / name, as_version=4))
    nb = nbformat.read(course / "release" / assignment / name, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = source[cell.metadata.nbgrader.grade_id].source
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def check_full_marks(result: dict) -> None:
    failed = {g: t["message"] for g, t in result["tests"].items() if t["score"] != t["max_score"]}
    assert not failed, f"the instructor's solutions fail these tests: {failed}"
    assert result["score"] == result["max_score"] > 0


def check_zero_with_messages(result: dict) -> None:
    assert result["max_score"] > 0
    passed = [g for g, t in result["tests"].items() if t["score"] > 0]
    assert not passed, f"these tests pass on the untouched release (they test nothing): {passed}"
    assert result["score"] == 0
    for grade_id, test in result["tests"].items():
        message = test["message"]
        actionable = "NotImplementedError" in message or re.search(r"AssertionError: \S", message)
        assert actionable, (f"test {grade_id} fails on the untouched release with {message!r}: a student "
                            "needs NotImplementedError (an unsolved exercise) or an assert message")


# ---------------------------------------------------------------------------------------------
# The fixture chapter


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The fixture chapter built into an nbgrader course folder of its own."""
    folder = tmp_path_factory.mktemp("fixture")
    py = folder / FIXTURE.name
    shutil.copyfile(FIXTURE, py)
    nbformat.write(notebooks.build(py), py.with_suffix(".ipynb"))
    course = folder / "course"
    [release] = assignments.build([py.with_suffix(".ipynb")], course)
    assert release == course / "release" / "ch90" / "90_fixture.ipynb"
    return course


def test_config_keeps_the_course_in_its_folder(course):
    config = (course / "nbgrader_config.py").read_text()
    assert 'course_id = "lmbook"' in config and "gradebook.db" in config
    assert (course / "gradebook.db").exists()


def test_source_metadata(course):
    nb = nbformat.read(course / "source" / "ch90" / "90_fixture.ipynb", as_version=4)
    assert all(c.cell_type != "code" or (not c.outputs and c.execution_count is None) for c in nb.cells)
    cells = _by_grade_id(nb)
    assert len(cells) == len(nb.cells), "every cell carries nbgrader metadata with its own grade_id"
    meta = {g: c.metadata.nbgrader for g, c in cells.items()}
    assert meta["char_counts"] == {"grade": True, "solution": False, "locked": True, "points": 2.0,
                                   "grade_id": "char_counts", "schema_version": 3}
    assert meta["answer_char_counts"] == {"grade": False, "solution": True, "locked": False,
                                          "grade_id": "answer_char_counts", "schema_version": 3}
    readonly = [m for g, m in meta.items() if g.startswith("cell-")]
    assert len(readonly) == 10 and all(m["locked"] and not m["grade"] and not m["solution"] for m in readonly)
    assert not any("hide-input" in c.metadata.get("tags", []) for c in nb.cells)


def test_release_hides_solutions_and_hidden_tests(course):
    check_release(course / "source" / "ch90" / "90_fixture.ipynb", course / "release" / "ch90" / "90_fixture.ipynb")


def test_instructor_solutions_score_full_marks(course, tmp_path):
    submission = solved_release(course, "ch90", "90_fixture.ipynb", tmp_path / "instructor")
    result = assignments.autograde(course, "ch90", "instructor", submission)
    check_full_marks(result)
    assert result["score"] == 5.0
    graded = nbformat.read(result["notebook"], as_version=4)
    assert "profile: test" in graded.cells[1].outputs[0].text, "the autograder runs at LMBOOK_PROFILE"
    assert "### BEGIN HIDDEN TESTS" in _by_grade_id(graded)["char_counts"].source, "hidden tests are run"


@pytest.fixture(scope="module")
def students(course, tmp_path_factory):
    """Three more submissions, autograded together by one `nbgrader autograde` (one start-up):
    blank (the untouched release), wrong (one wrong answer), tamperer (rewrote tests and set-up)."""
    name = "90_fixture.ipynb"
    release = course / "release" / "ch90" / name
    assignments.submit(course, "ch90", "blank", release)

    wrong = solved_release(course, "ch90", name, tmp_path_factory.mktemp("wrong"))
    nb = nbformat.read(wrong, as_version=4)
    answer = _by_grade_id(nb)["answer_bigram_counts"]
    answer.source = answer.source.replace("zip(text, text[1:])", "zip(text, text)")
    nbformat.write(nb, wrong)
    assignments.submit(course, "ch90", "wrong", wrong)

    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if notebooks.autograded_test(cell):
            cell.source = cell.source.splitlines()[0] + "\npass"
        elif cell.source.startswith("from collections import Counter"):
            cell.source += "\nchar_counts = bigram_counts = lambda text: 0"
    tampered = tmp_path_factory.mktemp("tamperer") / name
    nbformat.write(nb, tampered)
    assignments.submit(course, "ch90", "tamperer", tampered)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMBOOK_PROFILE", "test")
        assignments.nbgrader(course, "autograde", "ch90", "--create", "--force")
    return {s: assignments.results(course, "ch90", s, name) for s in ("blank", "wrong", "tamperer")}


def test_untouched_release_scores_zero_with_actionable_messages(students):
    check_zero_with_messages(students["blank"])
    assert students["blank"]["tests"]["char_counts"]["message"].startswith("NotImplementedError")


def test_wrong_answers_get_the_assert_message(students):
    result = students["wrong"]
    assert result["score"] == 2.0
    assert "bigram_counts('abab') should be" in result["tests"]["bigram_counts"]["message"]


def test_edited_tests_and_setup_are_put_back(students):
    """A student who rewrites the tests (or the chapter's own code) gains nothing."""
    assert students["tamperer"]["score"] == 0
    graded = nbformat.read(students["tamperer"]["notebook"], as_version=4)
    assert "lambda text: 0" not in graded.cells[1].source


# ---------------------------------------------------------------------------------------------
# Every real chapter (each autograde runs the whole chapter at the test profile)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_assignment(chapter, tmp_path):
    course = tmp_path / "course"
    [release] = assignments.build([chapter], course)
    assignment = assignments.assignment_name(chapter)
    check_release(course / "source" / assignment / chapter.name, release)
    submission = solved_release(course, assignment, chapter.name, tmp_path / "instructor")
    check_full_marks(assignments.autograde(course, assignment, "instructor", submission))
    check_zero_with_messages(assignments.autograde(course, assignment, "blank", release))
