"""lmbook.bpe: GPT-2's ids exactly (against Hugging Face and tiktoken built from the same local
files), decode(encode(s)) == s for any Unicode string, the fast trainer learns the naive trainer's
merges, deterministic ties, special tokens, streaming, saving and loading, and clear errors."""

import json
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmbook import data
from lmbook.bpe import (ASCII_PATTERNS, ENDOFTEXT, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, Tokenizer, bytes_to_unicode, get_stats,
                        merge, train_merges, train_merges_naive, word_counts)

# Texts that have broken tokenizers before: code, CJK, emoji (astral plane, ZWJ sequences), German,
# contractions, numbers, whitespace runs of every kind, control characters, combining marks.
SAMPLES = [
    "Hello world! It's a beautiful day, isn't it? We'll see; they've gone, I'm here, you'd know.",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\r\n",
    "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。",
    "emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇩🇪 and a lone 🦄",
    "Größenwahn ist Übermut; die Straße heißt Äußere Kanalstraße.",
    "numbers 1234567 3.14159 1,000,000 and ٣٤٥ and Ⅻ",
    "      leading spaces",
    "trailing spaces and newlines   \n\n\n   ",
    " \t \n \r\n \x0b \x0c \u00a0 \u2003 \u3000 ",
    "a" + " " * 200 + "b" + "\n" * 50 + "c",
    "e\u0301 cafe\u0301 \u0301\u0302 lone combining marks \u20dd",
    "'s 'S 'll 'LL don't DON'T",
    "\x00\x01\x02 control \x7f \x1b[31m red \x1b[0m",
    "",
]


@pytest.fixture(scope="module")
def gpt2_files() -> tuple[str, str]:
    try:
        return str(data.path("gpt2_encoder", download=False)), str(data.path("gpt2_vocab", download=False))
    except data.DatasetError:
        pytest.skip("GPT-2's encoder.json and vocab.bpe are not available offline here (set LMBOOK_DATA_DIR)")


@pytest.fixture(scope="module")
def gpt2(gpt2_files) -> Tokenizer:
    return Tokenizer.from_gpt2_files(*gpt2_files)


@pytest.fixture(scope="module")
def tiktoken_gpt2(gpt2_files):
    """tiktoken's GPT-2 encoding built locally from the same two files (its own loader, its own
    split pattern), with no download."""
    tiktoken = pytest.importorskip("tiktoken")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")  # "" = do not cache
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=gpt2_files[1], encoder_json_file=gpt2_files[0])
    return tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256})


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_files):
    """Hugging Face's GPT-2 tokenizer built from the same two files."""
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2Tokenizer(vocab=gpt2_files[0], merges=gpt2_files[1])


@pytest.fixture(scope="module")
def shakespeare() -> str:
    try:
        return data.load_text("tinyshakespeare")
    except data.DatasetError:
        pytest.skip("tinyshakespeare is not available offline here")


@pytest.fixture(scope="module")
def small(shakespeare) -> Tokenizer:
    """A small tokenizer trained on Shakespeare plus some Chinese and emoji."""
    text = shakespeare[:30_000] + "床前明月光，疑是地上霜。" * 5 + "😀👍🏽" * 5
    return Tokenizer().train(text, 256 + 200, special_tokens=[ENDOFTEXT])


# ---- the two steps ----------------------------------------------------------------------------


def test_get_stats_and_merge_by_hand():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_stats([1, 2], {(1, 2): 5}, weight=3) == {(1, 2): 8}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5, 5, 5], (5, 5), 6) == [6, 6, 5]  # left to right, no overlaps
    assert merge([], (1, 2), 3) == [] and merge([1], (1, 2), 3) == [1]


def test_bytes_to_unicode_is_gpt2s():
    m = bytes_to_unicode()
    assert len(set(m.values())) == 256
    assert m[32] == "Ġ" and m[10] == "Ċ" and m[ord("A")] == "A" and m[0] == "Ā"
    assert all(c.isprintable() and not c.isspace() for c in m.values())


# ---- GPT-2 exactly ----------------------------------------------------------------------------


def test_gpt2_files_load(gpt2):
    assert len(gpt2) == 50257 and len(gpt2.merges) == 50000
    assert gpt2.special_tokens == {ENDOFTEXT: 50256}
    assert gpt2.encode(" the") == [262] and gpt2.decode([15496, 995]) == "Hello world"


@pytest.mark.parametrize("text", SAMPLES)
def test_gpt2_ids_equal_tiktoken_and_hugging_face(gpt2, tiktoken_gpt2, hf_gpt2, text):
    ours = gpt2.encode(text)
    assert ours == tiktoken_gpt2.encode_ordinary(text)
    assert ours == hf_gpt2.encode(text)
    assert gpt2.decode(ours) == text


def test_gpt2_special_tokens_equal_tiktoken_and_hugging_face(gpt2, tiktoken_gpt2, hf_gpt2):
    text = "The end.<|endoftext|>A new one begins<|endoftext|><|endoftext|>  and <|endoftext|>\n"
    ours = gpt2.encode(text, allowed_special="all")
    assert ours.count(50256) == 4
    assert ours == tiktoken_gpt2.encode(text, allowed_special="all")
    assert ours == hf_gpt2.encode(text)  # Hugging Face always treats its special tokens as special
    # as ordinary text, <|endoftext|> is just characters
    assert gpt2.encode(text, allowed_special="none") == tiktoken_gpt2.encode(text, disallowed_special=())


def test_gpt2_ids_on_real_text(gpt2, tiktoken_gpt2, hf_gpt2, shakespeare):
    text = shakespeare[:100_000]
    ours = gpt2.encode(text)
    assert ours == tiktoken_gpt2.encode_ordinary(text) == hf_gpt2.encode(text)
    try:
        poems = data.load_text("tang_poems")[:20_000]
    except data.DatasetError:
        return
    assert gpt2.encode(poems) == tiktoken_gpt2.encode_ordinary(poems) == hf_gpt2.encode(poems)


# Arbitrary Unicode (no lone surrogates, which have no UTF-8 form), with extra weight on what
# breaks tokenizers: combining marks alone, astral-plane characters, whitespace, apostrophes.
# Code points that this Python's Unicode database (unicodedata.unidata_version) calls unassigned
# are left out, except two that every version leaves unassigned: the `regex` module and tiktoken's
# Rust regex carry newer, different Unicode versions, so a character assigned since then (U+18D80,
# a letter since Unicode 16) is a letter to one engine and not to the other, and the two splits
# differ through no fault of the tokenizer.
unicode_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cn"]),
        st.characters(categories=["Mn", "Me"]),
        st.characters(min_codepoint=0x10000, codec="utf-8", exclude_categories=["Cn"]),
        st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "'", "'s", "e", "the", "1", "\u00a0",
                         "\u0378", "\uffff"]),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_gpt2_matches_tiktoken_on_any_text(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode_ordinary(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.decode(ids) == text


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_round_trip_any_unicode(small, text):
    ids = small.encode(text, allowed_special="none")
    assert small.decode(ids) == text
    assert small.decode_bytes(ids) == text.encode("utf-8")


def test_gpt4_pattern_splits_like_tiktoken(gpt2_files, tiktoken_gpt2):
    """GPT-4's split pattern, checked through tiktoken with GPT-2's merges and GPT-4's pattern."""
    import tiktoken

    tok = Tokenizer.from_gpt2_files(*gpt2_files)
    tok = Tokenizer("gpt4", tok.merges, tok.special_tokens, tok.byte_ids)
    ref = tiktoken.Encoding("gpt4-split", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=tiktoken_gpt2._mergeable_ranks,
                            special_tokens={})
    for text in SAMPLES + ["12345678 x 1234", "HELLO'S world!!!\n\n\nnext", "a\r\n\r\nb  \n"]:
        assert tok.encode(text) == ref.encode_ordinary(text), text


@settings(max_examples=1000, deadline=None)
@given(text=st.lists(st.one_of(st.characters(max_codepoint=127), st.sampled_from(["'s", "'S", "'ll", "  ", "\r\n", "123456"])),
                     max_size=40).map("".join))
def test_ascii_patterns_split_ascii_text_exactly_as_the_originals(text):
    """The fast path for pure-ASCII text (Python's re) against the real patterns (regex)."""
    import re

    import regex

    for pattern, ascii_pattern in ASCII_PATTERNS.items():
        assert re.findall(ascii_pattern, text) == regex.findall(pattern, text)


# ---- training ---------------------------------------------------------------------------------


def test_fast_trainer_learns_the_naive_trainers_merges(shakespeare):
    words = word_counts(shakespeare[:30_000])
    assert train_merges(words, 120) == train_merges_naive(words, 120)


@settings(max_examples=300, deadline=None)
@given(words=st.dictionaries(st.text("abc ", min_size=1, max_size=8), st.integers(1, 5), max_size=12),
       num_merges=st.integers(0, 20))
def test_fast_equals_naive_on_random_corpora(words, num_merges):
    """Many ties, repeated letters ("aaaa"), words that run out of pairs."""
    assert train_merges(words, num_merges) == train_merges_naive(words, num_merges)


def test_training_is_deterministic_and_ties_go_to_the_smallest_pair():
    # every pair occurs exactly twice: the smallest pair, (97, 98) = "ab", wins; then (99, 100)
    assert train_merges({"ab": 2, "cd": 2, "ba": 2}, 2) == [(97, 98), (98, 97)]
    text = "to be or not to be, that is the question " * 20
    a = Tokenizer().train(text, 300)
    b = Tokenizer().train(text, 300)
    assert a.merges == b.merges
    # the word order of the input changes nothing (a dict's insertion order must not matter)
    words = word_counts(text)
    shuffled = dict(random.Random(0).sample(sorted(words.items()), len(words)))
    assert train_merges(shuffled, 44) == train_merges(words, 44)


def test_trained_tokenizer_matches_tiktoken_with_its_merges(small, shakespeare):
    """Our encoder on our own merges, against tiktoken given the same ranks."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {small.vocab[i]: i for i in range(256 + len(small.merges))}
    ref = tiktoken.Encoding("small", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
    for text in SAMPLES + [shakespeare[500_000:520_000]]:
        assert small.encode(text) == ref.encode_ordinary(text)


def test_training_compresses_and_stops_when_pairs_run_out(shakespeare):
    text = shakespeare[:20_000]
    tok = Tokenizer().train(text, 512)
    assert len(tok) == 512 and len(tok.merges) == 256
    assert len(tok.encode(text)) < 0.6 * len(text.encode("utf-8"))
    tiny = Tokenizer().train("abab", 1000)  # only "ab" then "abab" can be merged
    assert len(tiny.merges) == 2 and len(tiny) == 258


def test_specials_are_never_merged_across():
    text = "aaa<|endoftext|>aaa<|endoftext|>" * 50
    tok = Tokenizer(pattern=None).train(text, 300, special_tokens=[ENDOFTEXT])
    assert all(b"<|" not in tok.vocab[i] and b"|>a" not in tok.vocab[i] for i in tok.merges.values())
    assert tok.special_tokens == {ENDOFTEXT: 256 + len(tok.merges)}


def test_pattern_none_is_plain_bpe():
    tok = Tokenizer(pattern=None).train("aaabdaaabac", 259)  # Wikipedia's example
    # Z = aa, then "ZabdZabac": "ab" and "Za" tie at 2, the smaller pair (97, 98) wins: Y = ab; X = ZY
    assert [tok.vocab[i] for i in tok.merges.values()] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


# ---- special tokens ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_specials(small) -> Tokenizer:
    specials = {"<|a|>": 1000, "<|a|><|b|>": 1001, "<|b|>": 1002, ENDOFTEXT: 1003}
    return Tokenizer("gpt2", small.merges, specials)


def test_overlapping_special_tokens_resolve_to_the_longest(with_specials):
    assert with_specials.encode("<|a|><|b|>", allowed_special="all") == [1001]
    assert with_specials.encode("<|a|><|a|><|b|>", allowed_special="all") == [1000, 1001]
    assert with_specials.encode("<|a|><|b|>", allowed_special={"<|a|>", "<|b|>"}) == [1000, 1002]


def test_text_around_special_tokens_is_encoded_normally(with_specials):
    left, right = "Hello, world. ", " Goodbye!\n"
    ids = with_specials.encode(left + ENDOFTEXT + right, allowed_special="all")
    assert ids == with_specials.encode(left) + [1003] + with_specials.encode(right)


def test_special_tokens_only_when_allowed(with_specials):
    text = "user text with <|endoftext|> inside"
    with pytest.raises(ValueError, match=r"contains the special token.*allowed_special='all'"):
        with_specials.encode(text)  # the default: refuse rather than silently choose
    as_text = with_specials.encode(text, allowed_special="none")
    assert 1003 not in as_text and with_specials.decode(as_text) == text
    assert 1003 not in with_specials.encode(text, allowed_special={"<|a|>"})
    assert 1003 in with_specials.encode(text, allowed_special={ENDOFTEXT})
    assert with_specials.decode(with_specials.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="not special tokens of this tokenizer"):
        with_specials.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(TypeError, match="allowed_special must be"):
        with_specials.encode(text, allowed_special="some")


# ---- streaming, saving, loading -----------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(list("ab1!' \n\t\ré") + ["\r\n", "<|endoftext|>", "  ", "x\ny"]),
                     max_size=30).map("".join),
       cuts=st.lists(st.integers(0, 60), max_size=6), pattern=st.sampled_from(["gpt2", "gpt4"]))
def test_streaming_equals_encoding_the_whole_text(small, text, cuts, pattern):
    tok = Tokenizer(pattern, small.merges, small.special_tokens)
    bounds = [0] + sorted(min(c, len(text)) for c in cuts) + [len(text)]
    chunks = [text[i:j] for i, j in zip(bounds, bounds[1:])]
    assert list(tok.encode_stream(chunks, allowed_special="all")) == tok.encode(text, allowed_special="all")


def test_encode_file_streams_exactly(small, shakespeare, tmp_path):
    text = shakespeare[:20_000].replace("\n\n", "\r\n\r\n") + "<|endoftext|>" + shakespeare[-5_000:]
    f = tmp_path / "t.txt"
    f.write_bytes(text.encode("utf-8"))
    streamed = list(small.encode_file(f, allowed_special="all", block_chars=777))
    assert streamed == small.encode(text, allowed_special="all")


def test_save_and_load_round_trip(small, gpt2, tmp_path):
    for tok in (small, gpt2):
        tok.save(tmp_path / "tok.json")
        back = Tokenizer.load(tmp_path / "tok.json")
        assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
        assert back.byte_ids == tok.byte_ids and back.pattern == tok.pattern
        assert back.encode(SAMPLES[0] + SAMPLES[3]) == tok.encode(SAMPLES[0] + SAMPLES[3])


# ---- bad input ----------------------------------------------------------------------------------


def test_vocab_size_too_small_is_refused():
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 256 .* \+ 2 special tokens = 258, got 257"):
        Tokenizer().train("hello", 257, special_tokens=["<|a|>", "<|b|>"])
    for bad in (100, 300.0, True, "300"):
        with pytest.raises(ValueError, match="vocab_size"):
            Tokenizer().train("hello", bad)
    with pytest.raises(TypeError, match="collection of strings"):
        Tokenizer().train("hello", 300, special_tokens=ENDOFTEXT)
    with pytest.raises(ValueError, match="distinct non-empty"):
        Tokenizer().train("hello", 300, special_tokens=["<|a|>", "<|a|>"])
    with pytest.raises(ValueError, match="algorithm must be"):
        Tokenizer().train("hello", 300, algorithm="fastest")
    with pytest.raises(TypeError, match="text must be a str"):
        Tokenizer().train(b"hello", 300)
    with pytest.raises(ValueError, match="nor a valid regex"):
        Tokenizer(pattern="(unclosed")


def _write_gpt2_copy(tmp_path, gpt2_files, vocab_lines):
    enc = tmp_path / "encoder.json"
    enc.write_bytes(open(gpt2_files[0], "rb").read())
    bpe = tmp_path / "vocab.bpe"
    bpe.write_text("\n".join(vocab_lines), encoding="utf-8")
    return enc, bpe


def test_corrupt_or_truncated_merges_file(gpt2_files, tmp_path):
    lines = open(gpt2_files[1], encoding="utf-8").read().split("\n")
    cases = {
        "truncated in a line": (lines[:1000] + [lines[1000].split(" ")[0]], r"line 1001: expected two tokens"),
        "cut short at a line": (lines[:40_000], r"made by no merge .* truncated"),
        "unknown token": (lines[:5] + ["Ġ xyzzy"] + lines[6:], r"line 6: token 'xyzzy' is not in"),
        "three tokens": (lines[:5] + ["a b c"] + lines[6:], r"line 6: expected two tokens"),
        "used before made": ([lines[0], lines[40_000]] + lines[1:40_000] + lines[40_001:], r"line 2: token .* used before"),
        "blank line": (lines[:5] + [""] + lines[5:], r"line 6: empty line"),
    }
    for name, (vocab_lines, message) in cases.items():
        enc, bpe = _write_gpt2_copy(tmp_path, gpt2_files, vocab_lines)
        with pytest.raises(ValueError, match=message):
            Tokenizer.from_gpt2_files(enc, bpe)
    enc, bpe = _write_gpt2_copy(tmp_path, gpt2_files, lines)
    enc.write_text('{"!": 0, "\\"": 1', encoding="utf-8")  # a truncated encoder.json
    with pytest.raises(ValueError, match="not a valid encoder.json"):
        Tokenizer.from_gpt2_files(enc, bpe)
    bpe.write_bytes(b"#version: 0.2\n\xff\xfe a\n")
    enc.write_bytes(open(gpt2_files[0], "rb").read())
    with pytest.raises(ValueError, match="not valid UTF-8"):
        Tokenizer.from_gpt2_files(enc, bpe)


def test_corrupt_saved_tokenizer(small, tmp_path):
    f = tmp_path / "tok.json"
    small.save(f)
    good = json.loads(f.read_text(encoding="utf-8"))
    f.write_text(f.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    with pytest.raises(ValueError, match="not a JSON file written by Tokenizer.save"):
        Tokenizer.load(f)
    for change, message in [
        ({"format": "something else"}, "not a saved lmbook tokenizer"),
        ({"merges": [[1, 2]]}, r"merge 0 must be a list \[id_a, id_b, new_id\]"),
        ({"merges": [[1, 2, 256], [1, 2, 257]]}, "repeats the pair"),
        ({"merges": [[1, 999, 256]]}, "uses an id that no byte or earlier merge defines"),
        ({"merges": [[1, 2, 65]]}, "already taken"),
        ({"byte_ids": list(range(255))}, "256 distinct ids"),
        ({"special_tokens": {ENDOFTEXT: 3}}, "already taken"),
        ({"pattern": "(("}, "nor a valid regex"),
    ]:
        f.write_text(json.dumps(good | change), encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            Tokenizer.load(f)


def test_decode_invalid_utf8_and_unknown_ids(gpt2):
    euro = gpt2.encode("你")  # 3 bytes, 2 GPT-2 tokens: the first ends mid-character
    assert len(euro) == 2 and gpt2.decode_bytes(euro) == "你".encode()
    assert gpt2.decode(euro[:1]) == "\ufffd"  # documented: invalid UTF-8 becomes U+FFFD
    assert gpt2.decode(euro[:1] + gpt2.encode(" ok")) == "\ufffd ok"
    with pytest.raises(UnicodeDecodeError):
        gpt2.decode(euro[:1], errors="strict")
    for bad in ([50257], [-1], [1.5], ["a"]):
        with pytest.raises(ValueError, match="cannot decode"):
            gpt2.decode(bad)


def test_encode_refuses_non_text(gpt2):
    with pytest.raises(TypeError, match="text must be a str"):
        gpt2.encode(b"bytes")
    with pytest.raises(ValueError, match="lone surrogate"):
        gpt2.encode("abc \ud800 def")
    with pytest.raises(TypeError, match="chunks must be strings"):
        list(gpt2.encode_stream([b"abc"]))
    with pytest.raises(ValueError, match="needs a split pattern"):
        list(Tokenizer(pattern=None).encode_stream(["abc"]))
