"""lmbook.seq2seq: the packed source/decoder-input layout, padding that changes nothing, greedy
decoding consistent with teacher forcing, attention weights that live on the real characters, a
model that learns a small task through lmbook.train, and clear errors."""

import pytest
import torch

from lmbook import dates
from lmbook.batching import random_batches
from lmbook.seq2seq import EOS, Seq2Seq, encode_pairs, encode_sources, exact_match, make_vocabs, translate
from lmbook.train import train

torch.set_num_threads(1)
PAIRS = [("3rd of March 1999", "1999-03-03"), ("19990303", "1999-03-03"), ("12/31/00", "2000-12-31")]


def tiny_model(attention=True, seed=0):
    src_vocab, tgt_vocab = make_vocabs(dates.make_splits(2000, 0, 0, seed=0)["train"])
    torch.manual_seed(seed)
    return Seq2Seq(len(src_vocab), len(tgt_vocab), 11, emb_dim=8, hidden=16, attention=attention), src_vocab, tgt_vocab


def test_encode_pairs_layout():
    src_vocab, tgt_vocab = make_vocabs(PAIRS)
    assert src_vocab.itos[0] == "<pad>" and tgt_vocab.itos[:3] == ["<pad>", "<s>", "</s>"]
    X, Y = encode_pairs(PAIRS, src_vocab, tgt_vocab)
    S, T = 17, 11  # the longest source; 10 target characters + </s>
    assert X.shape == (3, S + T) and Y.shape == (3, T)
    assert "".join(src_vocab.decode(X[1, :8])) == "19990303" and (X[1, 8:S] == 0).all()
    assert X[0, S] == tgt_vocab.stoi["<s>"] and torch.equal(X[:, S + 1:], Y[:, :-1])  # shifted by one
    assert "".join(tgt_vocab.decode(Y[2, :-1])) == "2000-12-31" and Y[2, -1] == tgt_vocab.stoi[EOS]


@pytest.mark.parametrize("attention", [True, False])
def test_padding_changes_nothing(attention):
    """A source decoded alone and in a batch with a longer source (so with padding) gives the same
    logits: the packed LSTM stops at the last real character and attention ignores the padding."""
    model, src_vocab, tgt_vocab = tiny_model(attention)
    model.eval()
    X, _ = encode_pairs(PAIRS, src_vocab, tgt_vocab)
    X_alone, _ = encode_pairs(PAIRS[1:2], src_vocab, tgt_vocab)  # "19990303", no padding
    assert torch.allclose(model(X)[1], model(X_alone)[0], atol=1e-6)
    ids, weights = model.greedy_decode(encode_sources(["19990303", "Wednesday, March 3, 1999"], src_vocab))
    ids_alone, weights_alone = model.greedy_decode(encode_sources(["19990303"], src_vocab))
    assert torch.equal(ids[0], ids_alone[0])
    if attention:
        assert weights.shape == (2, 11, 24)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 11), atol=1e-6)
        assert (weights[0, :, 8:] == 0).all()  # nothing on the padding
        assert torch.allclose(weights[0, :, :8], weights_alone[0], atol=1e-6)
    else:
        assert weights is None


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_decoding_equals_teacher_forcing_on_its_own_outputs(attention):
    """Feeding the greedy output back as the teacher-forced input reproduces the same argmaxes."""
    model, src_vocab, tgt_vocab = tiny_model(attention, seed=1)
    model.eval()
    src = encode_sources([s for s, _ in PAIRS], src_vocab)
    ids, _ = model.greedy_decode(src)  # (3, 11)
    dec_in = torch.cat([torch.full((3, 1), tgt_vocab.stoi["<s>"]), ids[:, :-1]], 1)
    logits = model(torch.cat([src, dec_in], 1))
    assert torch.equal(logits.argmax(-1), ids)


def test_learns_numeric_dates_with_lmbook_train():
    """Two numeric formats, 400 small steps of lmbook.train: held-out exact match far above chance."""
    formats = ("compact", "dmy_dots")
    import random
    rng = random.Random(0)
    days = dates.all_dates()
    rng.shuffle(days)
    train_pairs = [dates.random_example(rng.choice(days[2000:]), rng, formats) for _ in range(4000)]
    test_pairs = [dates.random_example(rng.choice(days[:2000]), rng, formats) for _ in range(300)]
    src_vocab, tgt_vocab = make_vocabs(train_pairs)
    X, Y = encode_pairs(train_pairs, src_vocab, tgt_vocab)
    torch.manual_seed(0)
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), Y.shape[1], emb_dim=16, hidden=32)
    history = train(model, random_batches(X, Y, 32, torch.Generator().manual_seed(0)), steps=400, lr=1e-2,
                    grad_clip=1.0, progress=False, device="cpu", eval_sets={"train": (X[:500], Y[:500])}, eval_every=200)
    assert history.eval_loss["train"][-1] < 0.2 * history.eval_loss["train"][0]
    accuracy = exact_match(translate(model, [s for s, _ in test_pairs], src_vocab, tgt_vocab), [t for _, t in test_pairs])
    assert accuracy > 0.5, accuracy


def test_translate_and_exact_match():
    model, src_vocab, tgt_vocab = tiny_model()
    out = translate(model, ["19990303", "3/3/1999"], src_vocab, tgt_vocab)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert model.training  # translate restores the mode
    assert exact_match(["a", "b"], ["a", "c"]) == 0.5


def test_bad_input():
    model, src_vocab, tgt_vocab = tiny_model()
    with pytest.raises(ValueError, match="every target must have the same length"):
        encode_pairs([("a", "1999-03-03"), ("b", "1999")], src_vocab, tgt_vocab)
    with pytest.raises(ValueError, match="non-empty strings"):
        encode_sources(["19990303", ""], src_vocab)
    with pytest.raises(ValueError, match=r"token '\?' is not in the vocabulary"):
        encode_sources(["1999?03"], src_vocab)
    with pytest.raises(ValueError, match=r"x must be \(B, S \+ T\) with T = target_len = 11"):
        model(torch.zeros(2, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one character"):
        model.encode(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        Seq2Seq(10, 10, 11, hidden=0)
