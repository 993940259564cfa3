"""lmbook.dedup against datasketch (MinHash signatures bit for bit, the LSH parameters and candidates),
against exact Jaccard similarity (the estimator's error, the all-pairs join), and on planted duplicates."""

import doctest
import math
import random

import numpy as np
import pytest

from lmbook import corpus, dedup

datasketch = pytest.importorskip("datasketch")


def _docs(n: int, seed: int = 0, words: int = 60) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)] + "the a of and to in it was she he they".split()
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def _edit(text: str, changes: int, rng: random.Random) -> str:
    words = text.split()
    for _ in range(changes):
        words[rng.randrange(len(words))] = f"x{rng.randrange(10**6)}"
    return " ".join(words)


def test_docstring_examples():
    for module in (dedup, corpus):
        assert doctest.testmod(module).failed == 0


# ---- MinHash --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_perm, seed", [(128, 1), (64, 7), (256, 12345)])
def test_signature_equals_datasketch_bit_for_bit(num_perm, seed):
    for text in ["Once upon a time there was a girl named Lily.", "白日依山盡，黃河入海流。", "ab", ""]:
        shingles = dedup.shingles(text, 5)
        reference = datasketch.MinHash(num_perm=num_perm, seed=seed)
        reference.update_batch([s.encode("utf-8") for s in shingles])
        ours = dedup.MinHasher(num_perm, seed).signature(dedup.shingle_hashes(text, 5))
        assert ours.dtype == reference.hashvalues.dtype == np.uint32
        assert np.array_equal(ours, reference.hashvalues), text


def test_long_documents_are_signed_in_chunks_with_the_same_result():
    text = " ".join(_docs(30))
    hasher, hashes = dedup.MinHasher(64), dedup.shingle_hashes(text, 5)
    assert len(hashes) > 3 * 100
    assert np.array_equal(hasher.signature(hashes, chunk=100), hasher.signature(hashes))


@pytest.mark.parametrize("hash", ["sha1", "fast"])
def test_minhash_estimates_jaccard_within_its_standard_error(hash):
    """Property: over many pairs of known Jaccard similarity J, the estimate's error divided by
    sqrt(J(1-J)/k) behaves like a standard normal: at most a few beyond 3 and none beyond 5."""
    rng, k = random.Random(0), 128
    hasher = dedup.MinHasher(k, seed=3)
    z = []
    for _ in range(200):
        base = _docs(1, seed=rng.randrange(10**6), words=120)[0]
        other = _edit(base, rng.randrange(0, 60), rng)
        a, b = dedup.shingles(base, 5), dedup.shingles(other, 5)
        J = dedup.jaccard(a, b)
        est = dedup.estimated_jaccard(hasher.signature(dedup.shingle_hashes(base, 5, hash)),
                                      hasher.signature(dedup.shingle_hashes(other, 5, hash)))
        if 0 < J < 1:
            z.append((est - J) / math.sqrt(J * (1 - J) / k))
    z = np.array(z)
    assert len(z) > 150
    assert abs(z.mean()) < 0.35, "the estimator is unbiased: the mean error is near 0"
    assert np.mean(np.abs(z) > 3) < 0.02 and np.abs(z).max() < 5


def test_fast_hashes_are_a_set_of_distinct_shingle_hashes():
    text = "abcabcabc"
    assert len(dedup.shingle_hashes(text, 3, "fast")) == len(dedup.shingles(text, 3)) == 3
    assert np.array_equal(dedup.shingle_hashes("ab", 5, "fast"), dedup.shingle_hashes("ab", 5, "fast"))


# ---- LSH ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold, num_perm", [(0.5, 64), (0.8, 128), (0.9, 128), (0.7, 256)])
def test_optimal_bands_equal_datasketch(threshold, num_perm):
    from datasketch.lsh import _optimal_param

    assert dedup.optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_lsh_error_areas_equal_datasketch_integrals():
    from datasketch.lsh import _false_negative_probability, _false_positive_probability

    for b, r in [(9, 13), (20, 5), (1, 1)]:
        fp, fn = dedup.lsh_error_areas(0.8, b, r)
        assert math.isclose(fp, _false_positive_probability(0.8, b, r), abs_tol=1e-9)
        assert math.isclose(fn, _false_negative_probability(0.8, b, r), abs_tol=1e-9)


def test_lsh_queries_equal_datasketch():
    docs = _docs(120, seed=1)
    rng = random.Random(2)
    docs += [_edit(d, rng.randrange(1, 12), rng) for d in docs[:60]]
    hasher = dedup.MinHasher(128)
    sigs = hasher.signatures(docs)
    b, r = dedup.optimal_bands(0.8, 128)
    ours = dedup.LSHIndex(b, r)
    theirs = datasketch.MinHashLSH(num_perm=128, params=(b, r))
    for i, (doc, sig) in enumerate(zip(docs, sigs)):
        ours.insert(i, sig)
        theirs.insert(i, datasketch.MinHash(num_perm=128, hashvalues=sig, scheme="affine32"))
    for sig in sigs:
        assert ours.query(sig) == set(theirs.query(datasketch.MinHash(num_perm=128, hashvalues=sig, scheme="affine32")))
    pairs = ours.candidate_pairs()
    assert all((i, i + 120) in pairs for i in range(60) if dedup.jaccard(dedup.shingles(docs[i]), dedup.shingles(docs[i + 120])) > 0.9)


def test_candidate_probability_is_the_s_curve():
    assert math.isclose(float(dedup.candidate_probability(0.8, 20, 5)), 1 - (1 - 0.8**5) ** 20)
    assert float(dedup.candidate_probability(0.0, 9, 13)) == 0 and float(dedup.candidate_probability(1.0, 9, 13)) == 1


# ---- finding duplicates ------------------------------------------------------------------------------------------


def test_near_duplicate_pairs_find_every_planted_duplicate():
    """Copies with a few words changed (true Jaccard ≥ 0.85): every one is found at threshold 0.8,
    and every pair reported is a near duplicate by exact Jaccard (verify='exact')."""
    rng = random.Random(5)
    originals = _docs(200, seed=4, words=80)
    planted = {}
    docs = list(originals)
    for i in range(0, 200, 2):
        variant = _edit(originals[i], rng.randrange(0, 3), rng)
        if rng.random() < 0.5:
            variant = variant.upper().replace(" ", "  \n")  # normalisation must see through case and spacing
        planted[(i, len(docs))] = None
        docs.append(variant)
    truth = {(i, j) for i, j, _ in dedup.all_pairs_jaccard(docs, 0.8)}
    assert set(planted) <= truth, "the planted copies are near duplicates by construction"
    for verify in ("exact", "minhash"):
        found = {(i, j) for i, j, _ in dedup.near_duplicate_pairs(docs, 0.8, verify=verify)}
        assert set(planted) <= found, f"verify={verify}: missed {set(planted) - found}"
    exact = {(i, j) for i, j, _ in dedup.near_duplicate_pairs(docs, 0.8, verify="exact")}
    assert exact <= truth


def test_all_pairs_jaccard_equals_brute_force():
    rng = random.Random(9)
    docs = _docs(60, seed=8, words=40)
    docs += [_edit(d, rng.randrange(0, 15), rng) for d in docs[:40]] + ["", "ab", "ab", docs[0]]
    sets = [dedup.shingles(corpus.normalize(d, lowercase=True), 5) for d in docs]
    for threshold in (0.3, 0.8, 1.0):
        brute = {(i, j) for i in range(len(docs)) for j in range(i + 1, len(docs))
                 if sets[i] and sets[j] and dedup.jaccard(sets[i], sets[j]) >= threshold}
        assert {(i, j) for i, j, _ in dedup.all_pairs_jaccard(docs, threshold)} == brute


def test_exact_duplicates_see_through_case_space_and_unicode_forms():
    docs = ["The cat sat.", "the  cat\nsat.", "ｔｈｅ cat sat.", "The cat sat!"]
    assert dedup.exact_duplicates(docs) == [0, 0, 0, 3]


def test_streaming_deduplicator_keeps_the_first_copy():
    originals = _docs(50, seed=11, words=80)
    rng = random.Random(3)
    stream = originals + [originals[3], _edit(originals[7], 1, rng), originals[3].upper(), ""]
    dd = dedup.Deduplicator(threshold=0.8)
    kept = list(dd.filter(stream))
    assert kept == originals + [""]
    assert dd.stats == {"kept": 51, "exact": 2, "near": 1}


def test_clusters_are_connected_components():
    assert dedup.clusters(6, [(4, 5), (0, 2), (2, 4)]) == [0, 1, 0, 3, 0, 0]


# ---- decontamination ---------------------------------------------------------------------------------------------


def test_ngram_overlap_by_hand():
    train = ["the quick brown fox jumps over the lazy dog"]
    tests = ["a quick brown fox jumps high", "nothing here at all today", "two words"]
    assert dedup.ngram_overlap(train, tests, n=3) == [2 / 4, 0.0, pytest.approx(math.nan, nan_ok=True)]
    index = dedup.NgramIndex(5, "char")
    index.add("abcdefg")
    assert index.overlap("xxabcdeyy") == 1 / 5 and len(index) == 3


def test_ngram_index_streams_documents():
    one, many = dedup.NgramIndex(4, "char"), dedup.NgramIndex(4, "char")
    docs = ["hello world", "world peace", "hello"]
    one.add("\n".join(docs))
    for d in docs:
        many.add(d)
    assert set(many.freeze().tolist()) <= set(one.freeze().tolist())
    assert many.overlap("hello world peace") > 0.5


# ---- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors_or_documented_results():
    with pytest.raises(TypeError, match="decode it first"):
        dedup.shingles(b"bytes", 5)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        dedup.shingles("text", 0)
    assert dedup.shingles("abc", 5) == {"abc"}, "a text shorter than k is one shingle"
    assert dedup.shingles("", 5) == set()
    empty = dedup.MinHasher(16).signature(dedup.shingle_hashes("", 5))
    assert (empty == dedup.MAX_HASH).all(), "the empty set's signature: nothing lowered any position"
    assert dedup.near_duplicate_pairs(["", "", "   "], 0.8) == [], "documents with no shingles are never near duplicates"
    assert dedup.exact_duplicates(["", " "]) == [0, 0], "but they are exact duplicates of each other"
    with pytest.raises(ValueError, match="threshold must lie strictly between 0 and 1"):
        dedup.optimal_bands(1.0, 128)
    with pytest.raises(ValueError, match="num_perm must be an int >= 1"):
        dedup.MinHasher(0)
    with pytest.raises(TypeError, match="1-D uint32"):
        dedup.MinHasher(8).signature(np.arange(3))
    with pytest.raises(ValueError, match="cannot fill"):
        dedup.LSHIndex(9, 13).insert(0, np.zeros(64, np.uint32))
    with pytest.raises(ValueError, match="hash must be 'sha1'"):
        dedup.shingle_hashes("text", 5, "md5")
    with pytest.raises(ValueError, match="signatures of different lengths"):
        dedup.estimated_jaccard(np.zeros(3, np.uint32), np.zeros(4, np.uint32))
    with pytest.raises(ValueError, match="unit must be"):
        dedup.NgramIndex(5, "byte")
    assert math.isnan(dedup.NgramIndex(5, "char").overlap("abc")), "a document shorter than n has no n-grams"
