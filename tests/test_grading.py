"""lmbook.grading.without: references are unavailable inside the block, everywhere they are looked
up, and all back afterwards, even when the block fails."""

import math

import pytest
import torch
import torch.nn.functional as F

import lmbook.bpe
from lmbook import grading
from lmbook.bpe import merge


def copycat(ids, pair, new_id):
    return merge(ids, pair, new_id)  # looks `merge` up in this module's globals


def test_dotted_and_plain_names_and_aliases_are_blocked_then_restored():
    alias = merge
    namespace = {"merge": merge, "alias": alias, "F": F}
    with grading.without("lmbook.bpe.merge", "torch.nn.functional.layer_norm", "merge", namespace=namespace):
        for fn in (lmbook.bpe.merge, namespace["merge"], namespace["alias"]):
            with pytest.raises(AssertionError, match="merge is not available"):
                fn([1, 2], (1, 2), 3)
        with pytest.raises(AssertionError, match="layer_norm is not available"):
            namespace["F"].layer_norm(torch.ones(2, 3), (3,))
    assert lmbook.bpe.merge is merge and namespace["merge"] is merge and namespace["alias"] is merge
    assert F.layer_norm(torch.ones(2, 3), (3,)).abs().max() == 0


def test_the_callers_globals_are_the_default_namespace():
    with grading.without("copycat"):
        with pytest.raises(AssertionError, match="copycat is not available"):
            globals()["copycat"]([1, 2], (1, 2), 3)
    assert copycat([1, 2], (1, 2), 3) == [3]


def test_a_method_is_blocked_on_its_class():
    tok = lmbook.bpe.Tokenizer(None, {(97, 98): 256})
    with grading.without("lmbook.bpe.Tokenizer.encode"):
        with pytest.raises(AssertionError):
            tok.encode("ab")
    assert tok.encode("ab") == [256]
    cls = lmbook.bpe.Tokenizer
    with grading.without("lmbook.bpe.Tokenizer", "lmbook.bpe.Tokenizer.decode"):  # the class and its method
        with pytest.raises(AssertionError):
            tok.decode([256])
        with pytest.raises(AssertionError):
            lmbook.bpe.Tokenizer(None, {})
    assert lmbook.bpe.Tokenizer is cls and tok.decode([256]) == "ab"


def test_restored_after_a_failure_and_a_student_computation_still_works():
    with pytest.raises(ZeroDivisionError):
        with grading.without("math.sqrt"):
            assert sum(x * x for x in (3, 4)) == 25
            1 / 0
    assert math.sqrt(4) == 2


def test_bad_names_say_what_is_wrong():
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        with grading.without("lmbook.bpe.nope"):
            pass
    with pytest.raises(ValueError, match="one or more names"):
        grading.without()
    with grading.without("not_defined_here", namespace={}):  # a name the notebook lacks: nothing to do
        pass
