"""lmbook.attention: scaled dot-product attention equals F.scaled_dot_product_attention (bool,
additive and causal masks, 3-D and 4-D, values and gradients), multi-head attention equals
nn.MultiheadAttention with copied weights, causal outputs ignore the future, softmax stays finite,
fully masked rows give zeros, and bad input gets a clear error.

Tolerances: float64 results agree with torch to 1e-6 (in practice ~1e-15); float32 results to
1e-5 absolute (the two compute the same sums in a different order: ~1e-7 relative rounding per
operation over a few hundred terms)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.attention import (AdditiveAttention, MultiHeadAttention, causal_mask, padding_mask,
                              scaled_dot_product_attention, sinusoidal_positions, softmax)

torch.set_num_threads(1)
TOL = {torch.float64: 1e-6, torch.float32: 1e-5}
SHAPES = {"3-D": (4,), "4-D": (2, 3)}  # leading dims: (B,) or (B, heads)


def qkv(lead, T_q, T_k, d, d_v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, T_q, d, generator=g, dtype=dtype), torch.randn(*lead, T_k, d, generator=g, dtype=dtype),
            torch.randn(*lead, T_k, d_v, generator=g, dtype=dtype))


def assert_close(a, b, dtype):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < TOL[dtype]


# ---- parity with F.scaled_dot_product_attention ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("T_q, T_k", [(7, 7), (5, 9), (1, 6)])
def test_no_mask_equals_torch(dtype, dims, T_q, T_k):
    q, k, v = qkv(SHAPES[dims], T_q, T_k, 16, 8, dtype)
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dims", SHAPES)
def test_bool_mask_true_means_attend_equals_torch(dtype, dims):
    q, k, v = qkv(SHAPES[dims], 6, 8, 16, 8, dtype, seed=1)
    g = torch.Generator().manual_seed(2)
    for mask in (torch.rand(6, 8, generator=g) < 0.7,  # (T_q, T_k), shared by the batch
                 torch.rand(*SHAPES[dims], 6, 8, generator=g) < 0.7,  # one per sequence (and head)
                 torch.rand(*SHAPES[dims][:1], *[1] * (len(SHAPES[dims]) - 1), 1, 8, generator=g) < 0.7):  # padding
        mask[..., 0] = True  # every query may attend to something (fully masked rows are tested below)
        assert_close(scaled_dot_product_attention(q, k, v, attn_mask=mask),
                     F.scaled_dot_product_attention(q, k, v, attn_mask=mask), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dims", SHAPES)
def test_additive_float_mask_equals_torch(dtype, dims):
    q, k, v = qkv(SHAPES[dims], 6, 8, 16, 8, dtype, seed=3)
    g = torch.Generator().manual_seed(4)
    bias = torch.randn(6, 8, generator=g, dtype=dtype)  # any real numbers are added to the scores (ALiBi-like)
    bias[torch.rand(6, 8, generator=g) < 0.3] = float("-inf")
    bias[:, 0] = 0.0
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=bias),
                 F.scaled_dot_product_attention(q, k, v, attn_mask=bias), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("T_q, T_k", [(7, 7), (4, 9), (9, 4)])
def test_causal_flag_equals_torch(dtype, dims, T_q, T_k):
    """Also for T_q != T_k, where torch aligns the causal triangle top-left (query i sees keys 0..i)."""
    q, k, v = qkv(SHAPES[dims], T_q, T_k, 16, 8, dtype, seed=5)
    assert_close(scaled_dot_product_attention(q, k, v, is_causal=True),
                 F.scaled_dot_product_attention(q, k, v, is_causal=True), dtype)


def test_causal_flag_equals_causal_mask_and_scale_equals_torch():
    q, k, v = qkv((2, 3), 7, 7, 16, 8, torch.float64, seed=6)
    flag = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(flag, scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(7)), torch.float64)
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.3),
                 F.scaled_dot_product_attention(q, k, v, scale=0.3), torch.float64)


def test_broadcast_leading_dims_equal_torch():
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64)
    k, v = torch.randn(2, 1, 6, 8, generator=g, dtype=torch.float64), torch.randn(2, 1, 6, 3, generator=g, dtype=torch.float64)
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), torch.float64)


def test_gradients_equal_torch():
    q, k, v = (t.requires_grad_() for t in qkv((2, 3), 5, 6, 8, 4, torch.float64, seed=8))
    mask = torch.rand(5, 6, generator=torch.Generator().manual_seed(9)) < 0.6
    mask[:, 0] = True
    w = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    ours = torch.autograd.grad((scaled_dot_product_attention(q, k, v, attn_mask=mask) * w).sum(), (q, k, v))
    theirs = torch.autograd.grad((F.scaled_dot_product_attention(q, k, v, attn_mask=mask) * w).sum(), (q, k, v))
    for a, b in zip(ours, theirs):
        assert_close(a, b, torch.float64)


def test_returned_weights_are_the_softmax_of_the_scaled_scores():
    q, k, v = qkv((3,), 4, 5, 8, 2, torch.float64, seed=10)
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    assert_close(weights, expected, torch.float64)
    assert_close(out, weights @ v, torch.float64)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4, dtype=torch.float64))


def test_dropout_drops_weights_and_rescales_the_rest():
    q, k, _ = qkv((64,), 8, 8, 8, 8, torch.float64, seed=11)
    v = torch.ones(64, 8, 1, dtype=torch.float64)  # out = sum of the kept weights / (1 - p)
    torch.manual_seed(0)
    out = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.allclose(out, torch.ones_like(out))  # something was dropped
    assert abs(out.mean().item() - 1.0) < 0.05  # but the expectation is unchanged
    assert torch.equal(scaled_dot_product_attention(q, k, v, dropout_p=0.0), scaled_dot_product_attention(q, k, v))


# ---- softmax: large logits and fully masked rows ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_is_finite_for_huge_logits(dtype):
    x = torch.tensor([[1000.0, 1000.0, 0.0], [1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0]], dtype=dtype)
    p = softmax(x)
    assert torch.isfinite(p).all()
    assert_close(p, torch.softmax(x, dim=-1), dtype)
    assert torch.allclose(p[0], torch.tensor([0.5, 0.5, 0.0], dtype=dtype))
    assert torch.isnan(torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)).any()  # the naive formula overflows


def test_attention_is_finite_for_huge_scores():
    q, k, v = qkv((2,), 4, 5, 8, 3, torch.float32, seed=12)
    q = q * 1000.0  # scores of order 1000 s
    out = scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(out).all()
    assert_close(out, F.scaled_dot_product_attention(q, k, v), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fully_masked_rows_give_zeros_not_nan_like_torch(dtype):
    q, k, v = (t.requires_grad_() for t in qkv((2,), 4, 5, 8, 3, dtype, seed=13))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1])) and torch.equal(weights[:, 1], torch.zeros(2, 5, dtype=dtype))
    assert torch.isfinite(out).all()
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), dtype)  # torch does the same
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)  # no NaN leaks backwards either
    additive = torch.zeros(4, 5, dtype=dtype).masked_fill(~mask, float("-inf"))
    assert torch.equal(scaled_dot_product_attention(q, k, v, attn_mask=additive), out)
    assert torch.equal(softmax(torch.full((3,), float("-inf"))), torch.zeros(3))


# ---- masks --------------------------------------------------------------------------------------


def test_causal_and_padding_masks():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    assert torch.equal(padding_mask(torch.tensor([2, 3, 0]), 4),
                       torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ValueError, match="T must be an int >= 1"):
        causal_mask(0)
    with pytest.raises(ValueError, match="lengths must lie in 0..T=4"):
        padding_mask(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        padding_mask(torch.tensor([2.0]), 4)


def test_padding_mask_makes_padded_keys_irrelevant():
    """Attention with a padding mask gives the same output as attention on the unpadded keys."""
    q, k, v = qkv((1,), 3, 6, 8, 4, torch.float64, seed=14)
    k_padded = torch.cat([k[:, :4], torch.randn(1, 2, 8, dtype=torch.float64) * 50], 1)  # junk after position 4
    mask = padding_mask(torch.tensor([4]), 6)[:, None, :]  # (B, 1, T_k)
    assert_close(scaled_dot_product_attention(q, k_padded, v, attn_mask=mask),
                 scaled_dot_product_attention(q, k[:, :4], v[:, :4]), torch.float64)


# ---- multi-head attention against nn.MultiheadAttention -----------------------------------------


def copied_pair(d_model, n_heads, bias=True, dtype=torch.float64):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=dtype).eval()
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).to(dtype).eval()
    with torch.no_grad():
        for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):  # in_proj_weight stacks W_q, W_k, W_v
            proj.weight.copy_(theirs.in_proj_weight[i * d_model:(i + 1) * d_model])
            if bias:
                proj.bias.copy_(theirs.in_proj_bias[i * d_model:(i + 1) * d_model])
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        if bias:
            ours.out_proj.bias.copy_(theirs.out_proj.bias)
            for p in (ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias, ours.out_proj.bias):
                p.add_(0.1 * torch.randn_like(p))  # nn.MultiheadAttention initialises its biases to zero:
            theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            theirs.out_proj.bias.copy_(ours.out_proj.bias)  # make them non-zero so that they are tested
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_self_attention_equals_torch(dtype, bias):
    ours, theirs = copied_pair(32, 4, bias=bias, dtype=dtype)
    x = torch.randn(3, 7, 32, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out, weights = ours(x, x, x, return_weights=True)
    ref, ref_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    assert_close(out, ref, dtype)
    assert_close(weights, ref_weights, dtype)  # (B, n_heads, T, T)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multihead_masks_equal_torch_whose_bool_mask_is_inverted(dtype):
    """nn.MultiheadAttention's bool attn_mask is True where attention is *not* allowed: ~ours."""
    ours, theirs = copied_pair(24, 3, dtype=dtype)
    g = torch.Generator().manual_seed(2)
    query = torch.randn(2, 5, 24, dtype=dtype, generator=g)
    memory = torch.randn(2, 8, 24, dtype=dtype, generator=g)  # cross-attention: T_q = 5, T_k = 8
    allowed = torch.rand(5, 8, generator=g) < 0.6
    allowed[:, 0] = True
    assert_close(ours(query, memory, memory, attn_mask=allowed),
                 theirs(query, memory, memory, attn_mask=~allowed, need_weights=False)[0], dtype)
    lengths = torch.tensor([8, 3])
    keep = padding_mask(lengths, 8)  # (B, T_k), True at real keys
    assert_close(ours(query, memory, memory, attn_mask=keep[:, None, :]),
                 theirs(query, memory, memory, key_padding_mask=~keep, need_weights=False)[0], dtype)
    x = query
    causal = causal_mask(5)
    assert_close(ours(x, x, x, is_causal=True), theirs(x, x, x, attn_mask=~causal, need_weights=False)[0], dtype)
    additive = torch.randn(5, 5, dtype=dtype, generator=g)
    assert_close(ours(x, x, x, attn_mask=additive), theirs(x, x, x, attn_mask=additive, need_weights=False)[0], dtype)


def test_causal_output_at_t_ignores_tokens_after_t():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2).double().eval()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    out = mha(x, x, x, is_causal=True)
    for t in range(9):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(2, 9 - t, 16, dtype=torch.float64) * 10
        new = mha(changed, changed, changed, is_causal=True)
        assert torch.equal(new[:, : t + 1], out[:, : t + 1]), f"position {t} saw the future"
        assert not torch.allclose(new[:, t + 1:], out[:, t + 1:])  # the later positions do see it
    # without the mask, position 0 sees everything
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(mha(changed, changed, changed)[:, 0], mha(x, x, x)[:, 0])


def test_self_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double().eval()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    perm = torch.randperm(6)
    assert_close(mha(x[:, perm], x[:, perm], x[:, perm]), mha(x, x, x)[:, perm], torch.float64)
    pe = sinusoidal_positions(6, 16).double()
    y = x + pe
    y_perm = x[:, perm] + pe  # the same tokens in another order get other positions
    assert not torch.allclose(mha(y_perm, y_perm, y_perm), mha(y, y, y)[:, perm])


def test_multihead_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 5, 16)
    mha.eval()
    assert torch.equal(mha(x, x, x), mha(x, x, x))
    mha.train()
    assert not torch.equal(mha(x, x, x), mha(x, x, x))


# ---- positions ----------------------------------------------------------------------------------


def test_sinusoidal_positions_follow_the_formula():
    T, d = 50, 16
    pe = sinusoidal_positions(T, d)
    assert pe.shape == (T, d) and pe.dtype == torch.float32
    for p in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert abs(pe[p, 2 * i].item() - math.sin(angle)) < 1e-6
            assert abs(pe[p, 2 * i + 1].item() - math.cos(angle)) < 1e-6
    assert torch.equal(pe[0, 0::2], torch.zeros(d // 2)) and torch.equal(pe[0, 1::2], torch.ones(d // 2))
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # odd widths: the last column is a sine


def test_sinusoidal_shift_is_a_rotation():
    """PE[p + k] = R_k PE[p] for a fixed block-diagonal rotation R_k (one 2x2 block per frequency)."""
    d, k = 8, 3
    pe = sinusoidal_positions(40, d).double()
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    for p in (0, 5, 20):
        for i, w in enumerate(freq):
            c, s = math.cos(k * w), math.sin(k * w)
            sin_p, cos_p = pe[p, 2 * i], pe[p, 2 * i + 1]
            assert abs(pe[p + k, 2 * i] - (c * sin_p + s * cos_p)) < 1e-6
            assert abs(pe[p + k, 2 * i + 1] - (c * cos_p - s * sin_p)) < 1e-6
    with pytest.raises(ValueError, match="d must be an int >= 1"):
        sinusoidal_positions(4, 0)


# ---- additive attention -------------------------------------------------------------------------


def test_additive_attention_equals_a_loop_and_respects_the_mask():
    torch.manual_seed(0)
    att = AdditiveAttention(d_query=6, d_key=5, d_attn=7).double()
    s, h = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    context, weights = att(s, h, mask)
    for b in range(2):
        n = int(mask[b].sum())
        scores = torch.stack([att.v.weight[0] @ torch.tanh(att.W_q.weight @ s[b] + att.W_k.weight @ h[b, j] + att.W_k.bias)
                              for j in range(n)])
        expected = torch.softmax(scores, 0)
        assert_close(weights[b, :n], expected, torch.float64)
        assert torch.equal(weights[b, n:], torch.zeros(4 - n, dtype=torch.float64))
        assert_close(context[b], expected @ h[b, :n], torch.float64)
    assert torch.equal(att(s, h, mask, projected_keys=att.project_keys(h))[0], context)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \(B, T\) = \(2, 4\)"):
        att(s, h, mask[:, :3])


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make, kwargs, error, match", [
    (lambda: qkv((2,), 4, 5, 8, 3, torch.float32)[:1] + (torch.randn(2, 5, 6), torch.randn(2, 5, 3)), {},
     ValueError, r"same head dimension.*q \(2, 4, 8\) has 8, k \(2, 5, 6\) has 6"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 6, 3)), {}, ValueError, "same T_k"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 3)), {}, ValueError, "do not broadcast"),
    (lambda: (torch.randn(8), torch.randn(5, 8), torch.randn(5, 3)), {}, ValueError, "at least 2 dimensions"),
    (lambda: (torch.randint(0, 3, (2, 4, 8)), torch.randn(2, 5, 8), torch.randn(2, 5, 3)), {}, TypeError,
     "q must be a float tensor"),
    (lambda: (torch.randn(2, 4, 8), torch.randn(2, 5, 8).double(), torch.randn(2, 5, 3)), {}, TypeError, "one dtype"),
    (lambda: qkv((2,), 4, 5, 8, 3, torch.float32), {"attn_mask": torch.ones(5, 4, dtype=torch.bool)}, ValueError,
     r"attn_mask of shape \(5, 4\) does not broadcast to the scores \(\.\.\., T_q, T_k\) = \(2, 4, 5\)"),
    (lambda: qkv((2,), 4, 5, 8, 3, torch.float32), {"attn_mask": torch.ones(3, 4, 5, dtype=torch.bool)}, ValueError,
     "does not broadcast"),
    (lambda: qkv((2,), 4, 5, 8, 3, torch.float32), {"attn_mask": torch.ones(4, 5, dtype=torch.long)}, TypeError,
     "bool tensor.*or a float tensor"),
    (lambda: qkv((2,), 4, 4, 8, 3, torch.float32), {"attn_mask": causal_mask(4), "is_causal": True}, ValueError,
     "either attn_mask or is_causal"),
    (lambda: qkv((2,), 4, 4, 8, 3, torch.float32), {"dropout_p": 1.0}, ValueError, r"dropout_p must lie in \[0, 1\)"),
])
def test_attention_rejects_bad_input(make, kwargs, error, match):
    q, k, v = make()
    with pytest.raises(error, match=match):
        scaled_dot_product_attention(q, k, v, **kwargs)


def test_multihead_rejects_bad_input():
    with pytest.raises(ValueError, match="d_model must be a positive multiple of n_heads=5"):
        MultiHeadAttention(32, 5)
    with pytest.raises(ValueError, match="n_heads must be an int >= 1"):
        MultiHeadAttention(32, 0)
    mha = MultiHeadAttention(32, 4)
    x = torch.randn(2, 5, 32)
    with pytest.raises(ValueError, match=r"query must be \(B, T, d_model=32\), got \(2, 5, 16\)"):
        mha(torch.randn(2, 5, 16), x, x)
    with pytest.raises(ValueError, match="must share B"):
        mha(x, torch.randn(2, 6, 32), x)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(2, 1, 5, 4\) does not broadcast"):
        mha(x, x, x, attn_mask=torch.ones(2, 5, 4, dtype=torch.bool))
