"""lmbook.rnn: the from-scratch RNN, LSTM and GRU equal torch's nn.RNN/nn.LSTM/nn.GRU (outputs, final
states and gradients, to 1e-5 in float32), truncated BPTT carries the state without backpropagating
into the previous chunk, the char-level LM learns, and bad input gets a clear error."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook import rnn
from lmbook.rnn import GRU, LSTM, RNN, CharRNN, TruncatedBPTT, evaluate_stream, tbptt_batches

torch.set_num_threads(1)  # tiny models: one thread is faster, and kind to a shared machine

PAIRS = [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]
TOL = 1e-5


def twins(ours_cls, torch_cls, seed: int = 0, **kwargs):
    """A torch layer with its default random initialisation and ours with the same weights."""
    torch.manual_seed(seed)
    reference = torch_cls(**kwargs)
    ours = ours_cls(**kwargs)
    ours.load_state_dict(reference.state_dict())  # same parameter names: loads unchanged
    return ours, reference


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def random_state(cls, L, B, H, g, unbatched=False):
    shape = (L, H) if unbatched else (L, B, H)
    h = 0.5 * torch.randn(shape, generator=g)
    return (h, 0.5 * torch.randn(shape, generator=g)) if cls is LSTM else h


# ---- parity with torch ----------------------------------------------------------------------------


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS, ids=["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers, B, T, batch_first, with_state", [
    (1, 1, 1, False, False),
    (1, 4, 9, False, True),
    (2, 3, 17, True, False),
    (3, 2, 6, True, True),
    (2, 5, 30, False, True),
])
def test_outputs_final_states_and_gradients_equal_torch(ours_cls, torch_cls, num_layers, B, T, batch_first,
                                                       with_state):
    I, H = 5, 7
    ours, reference = twins(ours_cls, torch_cls, input_size=I, hidden_size=H, num_layers=num_layers,
                            batch_first=batch_first)
    g = torch.Generator().manual_seed(B * 100 + T)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=g)
    hx = random_state(ours_cls, num_layers, B, H, g) if with_state else None
    results = []
    for layer in (ours, reference):
        xi = x.clone().requires_grad_()
        hi = None if hx is None else tuple(s.clone().requires_grad_() for s in as_tuple(hx))
        out, final = layer(xi, None if hi is None else (hi if ours_cls is LSTM else hi[0]))
        final = as_tuple(final)
        # a loss that weighs every output and every final state differently
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        loss = (w * out).sum() + sum((k + 1) * s.pow(2).sum() for k, s in enumerate(final))
        loss.backward()
        grads = {"input": xi.grad, **{name: p.grad for name, p in layer.named_parameters()}}
        if hi is not None:
            grads |= {f"state{k}": s.grad for k, s in enumerate(hi)}
        results.append((out, final, grads))
    (out, final, grads), (ref_out, ref_final, ref_grads) = results
    assert out.shape == ref_out.shape == ((B, T, H) if batch_first else (T, B, H))
    assert (out - ref_out).abs().max() < TOL
    assert len(final) == len(ref_final) == (2 if ours_cls is LSTM else 1)
    for s, r in zip(final, ref_final):
        assert s.shape == r.shape == (num_layers, B, H)
        assert (s - r).abs().max() < TOL
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert (grads[name] - ref_grads[name]).abs().max() < TOL, name


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS, ids=["rnn", "lstm", "gru"])
def test_unbatched_input_and_no_bias_equal_torch(ours_cls, torch_cls):
    ours, reference = twins(ours_cls, torch_cls, input_size=3, hidden_size=4, num_layers=2, bias=False)
    assert not any("bias" in name for name, _ in ours.named_parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g)                      # (T, input_size): one sequence
    hx = random_state(ours_cls, 2, None, 4, g, unbatched=True)
    out, final = ours(x, hx)
    ref_out, ref_final = reference(x, hx)
    assert out.shape == ref_out.shape == (6, 4)
    assert (out - ref_out).abs().max() < TOL
    for s, r in zip(as_tuple(final), as_tuple(ref_final)):
        assert s.shape == r.shape == (2, 4) and (s - r).abs().max() < TOL


def test_relu_rnn_equals_torch():
    ours, reference = twins(RNN, nn.RNN, input_size=3, hidden_size=4, nonlinearity="relu")
    x = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(0))
    assert (ours(x)[0] - reference(x)[0]).abs().max() < TOL


def test_long_sequence_in_float64_agrees_to_rounding():
    ours, reference = twins(LSTM, nn.LSTM, input_size=4, hidden_size=8, num_layers=2)
    ours.double(), reference.double()
    x = torch.randn(200, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (ours(x)[0] - reference(x)[0]).abs().max() < 1e-12


@pytest.mark.parametrize("cell", rnn.CELLS)
def test_char_rnn_state_dicts_move_between_implementations(cell):
    torch.manual_seed(0)
    fast = CharRNN(11, emb_dim=4, hidden_size=6, num_layers=2, cell=cell, impl="torch")
    scratch = CharRNN(11, emb_dim=4, hidden_size=6, num_layers=2, cell=cell, impl="lmbook")
    scratch.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(1))
    logits, state = fast(idx, return_state=True)
    logits2, state2 = scratch(idx, return_state=True)
    assert logits.shape == (3, 10, 11)
    assert (logits - logits2).abs().max() < TOL
    for s, r in zip(as_tuple(state), as_tuple(state2)):
        assert (s - r).abs().max() < TOL


def test_dropout_acts_between_layers_in_training_only():
    layer = LSTM(3, 16, num_layers=2, dropout=0.5)
    x = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0))
    layer.eval()
    assert torch.equal(layer(x)[0], layer(x)[0])                    # deterministic in eval mode
    no_dropout = LSTM(3, 16, num_layers=2)
    no_dropout.load_state_dict(layer.state_dict())
    assert (layer(x)[0] - no_dropout(x)[0]).abs().max() == 0        # and equal to no dropout
    layer.train()
    torch.manual_seed(0)
    assert (layer(x)[0] - no_dropout(x)[0]).abs().max() > 1e-3      # in training it changes the output


# ---- truncated BPTT ---------------------------------------------------------------------------------


def test_tbptt_batches_continue_each_row():
    ids = torch.arange(101)
    batches = tbptt_batches(ids, batch_size=4, seq_len=5)           # rows of 25: 0..24, 25..49, ...
    first, second = next(batches), next(batches)
    assert first[0][:, 0].tolist() == [0, 25, 50, 75]
    assert torch.equal(second[0][:, 0], first[0][:, -1] + 1)        # row b continues where it stopped
    for x, y in (first, second):
        assert torch.equal(y, x + 1)
    for _ in range(3):
        x, _ = next(batches)
    assert x[:, 0].tolist() == [20, 45, 70, 95]                     # the last full chunk of each row
    assert next(batches)[0][:, 0].tolist() == [0, 25, 50, 75]       # then it starts over


def test_truncated_bptt_carries_the_state_and_cuts_the_gradient():
    torch.manual_seed(0)
    model = CharRNN(7, emb_dim=3, hidden_size=5, num_layers=2)
    wrapped = TruncatedBPTT(model).train()
    batches = tbptt_batches(torch.randint(0, 7, (400,), generator=torch.Generator().manual_seed(0)), 3, 8)
    (x1, y1), (x2, y2) = next(batches), next(batches)

    F.cross_entropy(wrapped(x1).flatten(0, 1), y1.flatten()).backward()
    _, expected_state = model(x1, return_state=True)
    for carried, expected in zip(wrapped.state, expected_state):   # carried: the end state of chunk 1
        assert carried.grad_fn is None and torch.allclose(carried, expected)
    carried = tuple(s.clone() for s in wrapped.state)

    model.zero_grad()
    F.cross_entropy(wrapped(x2).flatten(0, 1), y2.flatten()).backward()  # raises if the graph reached chunk 1
    got = {name: p.grad.clone() for name, p in model.named_parameters()}
    # the gradient of chunk 2 alone, started from chunk 1's final state taken as a constant
    model.zero_grad()
    logits = model(x2, carried)
    F.cross_entropy(logits.flatten(0, 1), y2.flatten()).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(got[name], p.grad, atol=1e-7), name
    # and it differs from the gradient from a zero state: the state did carry information
    model.zero_grad()
    F.cross_entropy(model(x2).flatten(0, 1), y2.flatten()).backward()
    assert not torch.allclose(got["rnn.weight_hh_l0"], model.rnn.weight_hh_l0.grad, atol=1e-7)


def test_truncated_bptt_starts_fresh_in_eval_mode_and_on_a_new_batch_size():
    torch.manual_seed(0)
    model = CharRNN(7, emb_dim=3, hidden_size=5, num_layers=1)
    wrapped = TruncatedBPTT(model).train()
    x = torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(0))
    wrapped(x)
    wrapped.eval()
    assert torch.equal(wrapped(x), model(x))
    wrapped.train()
    assert torch.equal(wrapped(x[:2]), model(x[:2]))                # batch size changed: zero state
    wrapped.reset()
    assert wrapped.state is None


def test_evaluate_stream_equals_one_long_pass():
    torch.manual_seed(0)
    model = CharRNN(9, emb_dim=4, hidden_size=8, num_layers=2, dropout=0.3)
    ids = torch.randint(0, 9, (301,), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        full = F.cross_entropy(model(ids[None, :-1])[0], ids[1:]).item()
    model.train()
    assert abs(evaluate_stream(model, ids, num_streams=1, chunk=37) - full) < 1e-5
    assert model.training                                           # the mode is restored


# ---- the language model learns, generates -------------------------------------------------------------


def test_char_rnn_starts_near_ln_v_and_learns_a_pattern():
    torch.manual_seed(0)
    V = 6
    model = CharRNN(V, emb_dim=8, hidden_size=32, num_layers=1, cell="lstm")
    ids = torch.arange(600) % V                                     # 0 1 2 3 4 5 0 1 ...: fully predictable
    x, y = ids[:-1].view(1, -1), ids[1:].view(1, -1)
    loss0 = F.cross_entropy(model(x)[0], y[0]).item()
    assert abs(loss0 - math.log(V)) < 0.05 * math.log(V)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        loss = F.cross_entropy(model(x)[0], y[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    out = model.generate([0], 12, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert out == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0]


def test_generate_is_reproducible_stops_and_restores_mode():
    torch.manual_seed(0)
    model = CharRNN(5, emb_dim=4, hidden_size=8).train()
    a = model.generate([0, 1], 50, generator=torch.Generator().manual_seed(3))
    b = model.generate([0, 1], 50, generator=torch.Generator().manual_seed(3))
    assert a == b and model.training
    stopped = model.generate([0], 200, stop_id=2, generator=torch.Generator().manual_seed(3))
    assert 2 not in stopped and len(stopped) < 200


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_wrong_input_width_is_a_clear_error(cls):
    layer = cls(4, 6, num_layers=2, batch_first=True)
    with pytest.raises(ValueError, match=r"input has 5 features .* input_size=4 .*\(B, T, input_size\)"):
        layer(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"input must be 3-D, \(B, T, input_size\), or 2-D"):
        layer(torch.randn(2, 3, 4, 1))
    with pytest.raises(TypeError, match="token ids go through an nn.Embedding"):
        layer(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="float64 but the layer's weights are torch.float32"):
        layer(torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="input is empty"):
        layer(torch.zeros(2, 0, 4))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        layer([[0.0] * 4])


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_wrong_hidden_state_shape_is_a_clear_error(cls):
    layer = cls(4, 6, num_layers=2)
    x = torch.randn(3, 5, 4)                                        # T=3, B=5
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 5, 6\) \(num_layers=2, batch=5, "
                                         r"hidden_size=6\), got \(1, 5, 6\)"):
        layer(x, torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 5, 6\).*got \(2, 3, 6\)"):
        layer(x, torch.zeros(2, 3, 6))
    with pytest.raises(TypeError, match="hx must be a tensor h_0"):
        layer(x, (torch.zeros(2, 5, 6),))


def test_wrong_lstm_state_is_a_clear_error():
    layer = LSTM(4, 6)
    x = torch.randn(3, 5, 4)
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        layer(x, torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(1, 5, 6\).*got \(1, 5, 7\)"):
        layer(x, (torch.zeros(1, 5, 6), torch.zeros(1, 5, 7)))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 6\) \(num_layers=1, hidden_size=6\)"):
        layer(torch.randn(3, 4), (torch.zeros(1, 5, 6), torch.zeros(1, 5, 6)))  # unbatched input


@pytest.mark.parametrize("kwargs, error, match", [
    ({"input_size": 0, "hidden_size": 4}, ValueError, "input_size must be >= 1"),
    ({"input_size": 3, "hidden_size": 4.0}, TypeError, "hidden_size must be an int"),
    ({"input_size": 3, "hidden_size": 4, "num_layers": 0}, ValueError, "num_layers must be >= 1"),
    ({"input_size": 3, "hidden_size": 4, "dropout": 1.0}, ValueError, r"dropout .* in \[0, 1\)"),
    ({"input_size": 3, "hidden_size": 4, "batch_first": 1}, TypeError, "batch_first must be True or False"),
])
def test_bad_layer_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LSTM(**kwargs)


def test_bad_rnn_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        RNN(3, 4, nonlinearity="sigmoid")


def test_char_rnn_bad_input():
    model = CharRNN(5, emb_dim=4, hidden_size=8)
    with pytest.raises(ValueError, match=r"token id 5 is out of range for a vocabulary of 5 \(ids 0..4\)"):
        model(torch.tensor([[1, 5]]))
    with pytest.raises(ValueError, match=r"2-D tensor \(B, T\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="cell must be one of"):
        CharRNN(5, cell="transformer")
    with pytest.raises(ValueError, match="impl must be 'torch'"):
        CharRNN(5, impl="keras")
    with pytest.raises(ValueError, match="prompt must hold at least one token id"):
        model.generate([], 3)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        model.generate([0], 3, temperature=0)


def test_tbptt_batches_bad_input():
    with pytest.raises(ValueError, match="fewer than seq_len=8"):
        tbptt_batches(torch.arange(20), batch_size=4, seq_len=8)
    with pytest.raises(TypeError, match="1-D tensor of token ids"):
        tbptt_batches(torch.zeros(10, 2, dtype=torch.long), batch_size=1, seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        tbptt_batches(torch.arange(20), batch_size=1, seq_len=0)
