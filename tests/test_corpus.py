"""lmbook.corpus: normalisation against unicodedata, the mojibake repair against the damage it undoes,
streaming reads in constant memory, language identification on held-out lines, the Gopher and C4
rules on documents built to pass or fail each one, personal-data redaction, and bad input."""

import codecs
import random

import pytest

from lmbook import corpus, data


def _data_or_skip(name: str) -> str:
    try:
        return data.load_text(name)
    except Exception as err:  # noqa: BLE001 - offline without a mirror
        pytest.skip(f"{name} is not available here (set LMBOOK_DATA_DIR): {err}")


# ---- normalisation and mojibake -----------------------------------------------------------------------


def test_normalize_forms():
    assert corpus.normalize("Ｈｅｌｌｏ，\u00a0 world\n") == "Hello, world"
    assert corpus.normalize("ﬁne café", "NFC") == "ﬁne café", "NFC keeps compatibility characters"
    assert corpus.normalize("ﬁne", "NFKC") == "fine", "NFKC folds the ligature"
    assert corpus.normalize("e\u0301", "NFC") == "\u00e9", "NFC composes e + combining acute"
    assert corpus.normalize("A  B\tC", whitespace=False) == "A  B\tC"
    assert corpus.normalize("ÀB", lowercase=True) == "àb"


def _mojibake(text: str) -> str:
    """What a UTF-8 text becomes when read as Windows-1252, the undecodable bytes dropped."""
    return text.encode("utf-8").decode("cp1252", errors="ignore")


@pytest.mark.parametrize("text", [
    "I\u2019m here, \u201cshe said\u201d \u2014 and left\u2026",
    "na\u00efve caf\u00e9 \u00fcber \u00a3 \u20ac 5",
    "a \u2018quote\u2019 and an en \u2013 dash",
])
def test_fix_mojibake_undoes_the_damage(text):
    broken = _mojibake(text)
    assert broken != text
    fixed, count = corpus.fix_mojibake(broken)
    assert fixed == text
    assert count == sum(ord(c) > 127 for c in text)


def test_fix_mojibake_leaves_clean_text_alone():
    for text in ["plain ASCII.", "na\u00efve caf\u00e9", "\u767d\u65e5\u4f9d\u5c71\u76e1", "\u00c2 alone", "\u00e2 alone"]:
        assert corpus.fix_mojibake(text) == (text, 0)


def test_fix_mojibake_repairs_every_occurrence_in_the_tinystories_sample():
    text = _data_or_skip("tinystories_valid_sample")
    fixed, count = corpus.fix_mojibake(text)
    assert text.count("\u00e2\u20ac") == 234 and count == 234, "the README counts 234 occurrences of the damage"
    assert "\u00e2\u20ac" not in fixed and not corpus.MOJIBAKE.search(fixed)
    assert len(text) - len(fixed) == sum(len(m.group(0)) - 1 for m in corpus.MOJIBAKE.finditer(text)), \
        "each damaged sequence (three characters, or two when the last byte was lost) becomes one character"


# ---- streaming ------------------------------------------------------------------------------------------


def test_read_documents_streams_in_chunks(tmp_path):
    docs = ["first doc\nwith two lines", "\u767d\u65e5\u4f9d\u5c71\u76e1 \u2014 second", "third \u2019 doc"]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n\n\n\n", encoding="utf-8")
    for chunk_size in (1, 2, 3, 7, 1 << 16):  # multi-byte characters cut by every chunk boundary
        assert list(corpus.read_documents(path, chunk_size=chunk_size)) == docs


def test_read_documents_names_the_offset_of_bad_bytes(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text\n\nbad \xff byte")
    with pytest.raises(ValueError, match="not UTF-8 at byte 15"):
        list(corpus.read_documents(path, chunk_size=4))
    assert list(corpus.read_documents(path, errors="replace")) == ["good text", "bad \ufffd byte"]
    assert list(corpus.read_documents(path, errors="ignore")) == ["good text", "bad  byte"]


# ---- language identification ------------------------------------------------------------------------------


def test_language_id_on_held_out_lines():
    shakespeare = _data_or_skip("tinyshakespeare")
    _data_or_skip("tang_poems")
    train, val, _ = data.tang_poems_split()
    en = [line for line in shakespeare.splitlines() if len(line) >= 10]
    zh = [line for p in train for line in p.text.splitlines() if line]
    zh_val = [line for p in val for line in p.text.splitlines() if line][:2000]
    rng = random.Random(0)
    rng.shuffle(en)
    lid = corpus.LanguageID(order=3).fit({"en": en[:20000], "zh": zh})
    held_out = {"en": en[20000:22000], "zh": zh_val}
    for lang, lines in held_out.items():
        accuracy = sum(p == lang for p in lid.predict(lines)) / len(lines)
        assert accuracy >= 0.995, f"{lang}: {accuracy:.4f}"
    lid.calibrate({"en": en[22000:23000], "zh": zh_val[:1000]}, quantile=0.99)
    code = ["def f(x): return {k: v for k, v in x.items()}", "SELECT id FROM users WHERE id = 42;",
            "0x9E3779B97F4A7C15 >> 33", "<div class='nav'></div>"]
    assert lid.predict(code).count("other") >= 3, lid.bits_per_char(code)
    assert lid.predict([""]) == ["other"], "an empty line belongs to no language"


def test_language_id_bits_per_char_by_hand():
    lid = corpus.LanguageID(order=1).fit({"a": ["ab"], "b": ["ba"]})
    # order 1 (unigram, Kneser-Ney reduces to the counts' continuation): every line costs a finite amount
    bits = lid.bits_per_char(["ab", "", "ba"])
    assert bits.shape == (3, 2) and (bits[1] == float("inf")).all() and bits[0, 0] < float("inf")


# ---- quality filters --------------------------------------------------------------------------------------

GOOD = ("The old man walked to the village every morning, and he always stopped at the baker's shop to buy "
        "a loaf of bread. The baker knew him well and kept the warmest loaf aside for him. They talked about "
        "the weather, the harvest and the news from the city, and then the old man went home with his bread "
        "under his arm.")


def test_gopher_quality_passes_prose_and_names_each_failure():
    assert len(GOOD.split()) >= 50 and corpus.gopher_quality(GOOD) == []
    assert "50 to 100,000 words" in corpus.gopher_quality("The cat and the dog.")
    assert "at least 2 stop words" in corpus.gopher_quality(" ".join(["lorem"] * 60))
    assert "# or ... per word at most 0.1" in corpus.gopher_quality(GOOD + " #tag" * 20)
    bullets = "\n".join(f"- the item {i} of the list and more" for i in range(12))
    assert "at most 90% of lines start with a bullet" in corpus.gopher_quality(bullets)
    ellipses = "\n".join(f"the story {i} goes on and on to the end ..." for i in range(12))
    assert "at most 30% of lines end with an ellipsis" in corpus.gopher_quality(ellipses)
    numbers = GOOD + " " + " ".join(str(i) for i in range(40))
    assert "80% of words have a letter" in corpus.gopher_quality(numbers)
    assert "mean word length 3 to 10" in corpus.gopher_quality(" ".join(["a", "I", "the", "to"] * 20))


def test_gopher_repetition():
    assert corpus.gopher_repetition(GOOD) == []
    repeated = "\n".join(["Click here to subscribe to the newsletter."] * 5 + ["The end of the page."])
    failed = corpus.gopher_repetition(repeated)
    assert "duplicate lines at most 30%" in failed and "characters in duplicate lines at most 20%" in failed
    assert corpus.top_ngram_char_fraction("a b a b a b".split(), 2) == 1.0
    assert corpus.top_ngram_char_fraction("a b c d".split(), 2) == 0.0, "an n-gram seen once is no repetition"
    spam = GOOD + " " + "buy cheap pills " * 30
    assert "top 3-gram at most 18% of characters" in corpus.gopher_repetition(spam)


def test_c4_clean_keeps_sentences_and_drops_pages():
    page = "\n".join([GOOD, "Menu", "Please enable JavaScript to view the comments, thank you.",
                      "This site uses cookies to improve your experience of it.", "Short line."])
    kept, reasons = corpus.c4_clean(page)
    assert kept == GOOD and reasons == []
    assert corpus.c4_clean(GOOD + "\nfunction f() { return 1; }")[1] == ["curly bracket"]
    assert "lorem ipsum" in corpus.c4_clean("Lorem ipsum dolor sit amet. " + GOOD)[1]
    kept, reasons = corpus.c4_clean("One short sentence here ends well.")
    assert kept == "" and reasons == ["fewer than 3 sentences"]


def test_redact_pii():
    text, n = corpus.redact_pii("Write to ann.lee+books@mail.example.co.uk or call (555) 014-2233; card 4111 1111 1111 1111.")
    assert text == "Write to <EMAIL> or call <NUMBER>; card <NUMBER>." and n == 3
    assert corpus.redact_pii("In 1999 he was 42; act 3, scene 2.") == ("In 1999 he was 42; act 3, scene 2.", 0), \
        "years and small numbers are not personal data"
    assert corpus.redact_pii("the secret is 48213.")[0] == "the secret is <NUMBER>."


# ---- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors_or_documented_results():
    with pytest.raises(TypeError, match="decode bytes first"):
        corpus.normalize(b"bytes")
    with pytest.raises(ValueError, match="form must be one of"):
        corpus.normalize("x", "NFX")
    with pytest.raises(TypeError, match="decode bytes first"):
        corpus.gopher_quality(b"bytes")
    with pytest.raises(TypeError, match="must be a str"):
        corpus.fix_mojibake(None)
    assert "50 to 100,000 words" in corpus.gopher_quality(""), "an empty document fails the length rule"
    assert corpus.gopher_repetition("") == []
    assert corpus.c4_clean("") == ("", ["fewer than 3 sentences"])
    assert corpus.redact_pii("") == ("", 0)
    with pytest.raises(ValueError, match="order must be an int >= 1"):
        corpus.LanguageID(order=0)
    with pytest.raises(ValueError, match="fit the LanguageID first"):
        corpus.LanguageID().predict(["x"])
    with pytest.raises(ValueError, match="'other' is the label"):
        corpus.LanguageID().fit({"other": ["x"]})
    with pytest.raises(ValueError, match="no non-empty lines"):
        corpus.LanguageID().fit({"en": ["", ""]})
    with pytest.raises(TypeError, match="not one str"):
        corpus.LanguageID(1).fit({"en": ["ab"]}).predict("ab")
    with pytest.raises(ValueError, match="separator must be a non-empty str"):
        list(corpus.read_documents("x", separator=""))
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        list(corpus.read_documents("x", chunk_size=0))
    assert codecs.lookup("cp1252")  # the codec the repair relies on ships with Python
