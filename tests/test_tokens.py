"""lmbook.tokens: uint16 token files round-trip, batches are shifted windows, the global batch does not
depend on how it is split over processes and micro-batches, sampler state resumes, errors."""

import numpy as np
import pytest
import torch

from lmbook.tokens import (BatchSampler, char_vocab, decode_chars, encode_chars, prepare_chars, read_meta,
                           read_tokens, windows, write_tokens)


def test_write_read_round_trip(tmp_path):
    ids = np.array([0, 1, 65535, 7, 300])
    path = write_tokens(ids, tmp_path / "x.bin")
    got = read_tokens(path)
    assert got.dtype == np.uint16 and got.tolist() == ids.tolist()
    assert path.stat().st_size == 2 * len(ids)
    assert not list(tmp_path.glob("*.part"))  # the temporary file was renamed


def test_char_encoding_and_prepare(tmp_path):
    text = "to be or not to be\n" * 20
    chars = char_vocab(text)
    assert chars == sorted(set(text))
    assert decode_chars(encode_chars(text, chars), chars) == text
    meta = prepare_chars(text, tmp_path)
    assert meta == read_meta(tmp_path) and meta["vocab_size"] == len(chars)
    train, val = read_tokens(tmp_path / "train.bin"), read_tokens(tmp_path / "val.bin")
    n = int(0.9 * len(text))  # nanoGPT's split: the first 90%, then the rest
    assert decode_chars(train, chars) == text[:n] and decode_chars(val, chars) == text[n:]


def test_windows_are_shifted_by_one():
    data = np.arange(100, dtype=np.uint16)
    x, y = windows(data, np.array([0, 10, 90]), block_size=9)
    assert x.shape == y.shape == (3, 9) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and x[1, 0] == 10 and y[2, -1] == 99


def test_global_batch_is_the_same_however_it_is_split():
    data = np.arange(1000, dtype=np.uint16)
    whole = BatchSampler(data, 8, 12, seed=3).next_step()[0][0]  # one process, one micro-batch of 12
    parts = [BatchSampler(data, 8, 3, grad_accum=2, rank=r, world_size=2, seed=3).next_step() for r in range(2)]
    # micro-batch k of process r is slice (k * world_size + r) of the global batch
    pieces = [parts[r][k][0] for k in range(2) for r in range(2)]
    assert torch.equal(torch.cat(pieces), whole)


def test_sampler_state_resumes_the_same_batches():
    data = np.arange(500, dtype=np.uint16)
    a = BatchSampler(data, 4, 5, seed=0)
    a.next_step()
    state = {k: v.clone() for k, v in a.state_dict().items()}
    expected = a.next_step()[0][0]
    b = BatchSampler(data, 4, 5, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.next_step()[0][0], expected)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_tokens([1, 70000], tmp_path / "x.bin")
    with pytest.raises(ValueError, match="1-D integer"):
        write_tokens(np.array([0.5, 1.0]), tmp_path / "x.bin")
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="truncated"):
        read_tokens(tmp_path / "odd.bin")
    with pytest.raises(FileNotFoundError, match="prepare_chars"):
        read_tokens(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        encode_chars("abz", ["a", "b"])
    with pytest.raises(ValueError, match="fewer than block_size"):
        BatchSampler(np.arange(5, dtype=np.uint16), block_size=8, batch_size=2)
    with pytest.raises(ValueError, match="rank"):
        BatchSampler(np.arange(50, dtype=np.uint16), 4, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(np.arange(50, dtype=np.uint16), 4, 0)


def test_prepare_char_split_keeps_the_whole_vocabulary(tmp_path):
    from lmbook import tokens

    meta = tokens.prepare_char_split("abab", "abcb", tmp_path, vocab_text="abcdz")
    assert meta["chars"] == list("abcdz") and meta["train_tokens"] == 4 and meta["val_tokens"] == 4
    assert tokens.read_tokens(tmp_path / "val.bin").tolist() == [0, 1, 2, 1]
    with pytest.raises(ValueError, match="val_text must be a string of at least 2 characters"):
        tokens.prepare_char_split("abab", "", tmp_path)
