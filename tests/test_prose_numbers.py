"""Every number the prose of a chapter states is shown by the chapter's own run.

For each committed chapter notebook, each number with 3 or more significant digits in a markdown
cell (1.5387, 182,625, 98.1%, 124M) must appear in the notebook's stored outputs, as printed or
rounded as the prose rounds it, unless it is marked as quoted from elsewhere: a citation
(``{cite:p}`key```) in its sentence, or an entry in QUOTED below with the reason. Math, code, links,
section numbers and years are not prose numbers (tools/notebooks.py: prose_numbers). The second
half of the file shows that the check catches a planted mismatch.
"""

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

# Numbers the prose quotes rather than measures: chapter -> {number as written: why it is not an output}.
QUOTED = {
    "04_attention": {
        "8601": "the name of the ISO date standard, not a quantity",
    },
    "07_gpu_training": {
        "3.35": "the H100 SXM's memory bandwidth in TB/s, from NVIDIA's data sheet",
        "65,504": "the largest float16 number, a property of the format (the table above prints it rounded, 6.55e+04)",
        "4,096": "the inner dimension of the product, set in the code above",
        "1.45": "the goal set for the reference run, not a measurement",
        "1,750": "the step of nanoGPT's lowest validation loss reported in nanoGPT issue 211, linked in the sentence",
        "211": "the number of the nanoGPT issue linked in the sentence",
    },
}


def _report(problems):
    return "\n".join(problems)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.name)
def test_prose_numbers_are_shown_by_the_outputs(chapter):
    nb = nbformat.read(chapter, as_version=4)
    problems = notebooks.check_prose_numbers(nb, chapter.name, QUOTED.get(chapter.stem, {}))
    assert not problems, _report(problems)


@pytest.mark.parametrize("stem", sorted(QUOTED))
def test_every_quoted_number_is_still_in_the_prose(stem):
    """An allow-list entry whose number left the prose is stale: delete it."""
    nb = nbformat.read(ROOT / "chapters" / f"{stem}.ipynb", as_version=4)
    written = {w for c in nb.cells if c.cell_type == "markdown" for w, *_ in notebooks.prose_numbers(c.source)}
    assert not (stale := set(QUOTED[stem]) - written), f"{stem}: allow-listed but not in the prose: {stale}"


# ---------------------------------------------------------------------------------------------
# The check itself


def _chapter(markdown: str, output: str) -> nbformat.NotebookNode:
    """A two-cell notebook: one code cell printing `output`, then one markdown cell."""
    code = nbformat.v4.new_code_cell("print(...)", execution_count=1)
    code.outputs = [nbformat.v4.new_output("stream", text=output)]
    return nbformat.v4.new_notebook(cells=[code, nbformat.v4.new_markdown_cell(markdown)])


def test_a_planted_mismatch_in_a_real_chapter_is_caught():
    nb = nbformat.read(ROOT / "chapters" / "01_ngram.ipynb", as_version=4)
    assert notebooks.check_prose_numbers(nb, "01_ngram", QUOTED.get("01_ngram")) == []
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and "226,489" in c.source)
    cell.source = cell.source.replace("226,489", "228,000")  # the kind of slip this test exists for
    problems = notebooks.check_prose_numbers(nb, "01_ngram", QUOTED.get("01_ngram"))
    assert len(problems) == 1 and "228,000 is in no output" in problems[0]


@pytest.mark.parametrize("prose, output", [
    ("The loss is 1.4697.", "val 1.4697"),
    ("The loss is 1.47 after rounding.", "val 1.4697"),
    ("It has 226,000 words.", "226,489 word tokens"),
    ("GPT-2 has 124M parameters.", "124,439,808 parameters"),
    ("Exact match is 98.1%.", "exact match 98.10%"),
    ("Exact match is 98.1%.", "accuracy 0.981"),
    ("A drop of −0.329.", "changes the loss by -0.329"),
    ("Tied at 2.45–2.48 in the lecture {cite:p}`karpathy2022makemore`.", "nothing"),
    ("See section 7.10, chapter 4 and the year 1999; only 27 letters, 10% and 32,000 names.", "nothing"),
    ("In math $0.044715 x^3$ and code `lr=3.14159` are not prose.", "nothing"),
])
def test_numbers_shown_or_quoted_pass(prose, output):
    assert notebooks.check_prose_numbers(_chapter(prose, output)) == []


@pytest.mark.parametrize("prose, output", [
    ("The loss is 1.46.", "val 1.4697"),             # rounds to 1.47, not 1.46
    ("It has 228,000 pairs.", "182,625 pairs"),
    ("It took 869 s.", "took 868 s"),
    ("Exact match is 98.2%.", "exact match 98.10%"),
])
def test_numbers_not_shown_fail(prose, output):
    problems = notebooks.check_prose_numbers(_chapter(prose, output))
    assert len(problems) == 1 and "is in no output" in problems[0]


def test_an_allow_list_entry_marks_a_number_as_quoted():
    nb = _chapter("On an H100, with about 3.35 TB/s of memory bandwidth.", "nothing")
    assert notebooks.check_prose_numbers(nb)
    assert notebooks.check_prose_numbers(nb, quoted={"3.35": "the data sheet"}) == []
