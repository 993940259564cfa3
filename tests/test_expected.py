"""book/expected.md, the "what you should see" page, is what tools/expected.py writes from the committed
notebooks and results: every headline pattern still matches its chapter's outputs, and the page is up to date."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import expected  # noqa: E402


def test_every_headline_is_in_its_chapter_outputs():
    cpu = expected.cpu_column()
    for chapter, headlines in expected.HEADLINES.items():
        assert set(cpu[chapter]) == {label for label, _ in headlines}


def test_the_page_is_up_to_date():
    assert expected.main(["check"]) == 0, "run python tools/expected.py write"


def test_a_changed_output_is_caught():
    text = "best character model: Kneser-Ney n=6, validation 1.5387 nats/char"
    assert expected.extract("01_ngram", text, strict=False) == {
        "tinyshakespeare: Kneser-Ney character n-gram, val nats/char": "1.5387"}
    try:
        expected.extract("01_ngram", text.replace("validation", "val"))
    except ValueError as e:
        assert "is not in the outputs" in str(e)
    else:
        raise AssertionError("a headline that no longer matches must be an error")
