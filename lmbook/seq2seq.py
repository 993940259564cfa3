"""Sequence to sequence: an LSTM encoder, an LSTM decoder, with or without attention (chapter 4).

The encoder reads the source characters and leaves one hidden state per position, h_1 … h_S.
The decoder writes the target one character at a time, starting from <s>; at step t it sees the
previous character y_{t-1} and its own state s_{t-1}, and predicts y_t, until </s>.

- Without attention (Sutskever et al. 2014) the decoder starts from the encoder's *last* state
  h_S and never sees the source again: everything it needs must squeeze through one vector.
- With attention (Bahdanau et al. 2015) the decoder also starts from h_S, but at every step it
  scores every h_j against s_{t-1} (`lmbook.attention.AdditiveAttention`), takes the weighted
  average c_t = Σ_j α_tj h_j, and feeds c_t in with y_{t-1} (and to the output layer).

Training uses *teacher forcing*: the decoder's input at step t is the true y_{t-1}, so all T steps
are trained at once from one forward pass. `forward(x)` takes the source and that decoder input
side by side in one tensor, ``x = [source ids | <s> y_0 … y_{T-2}]`` (B, S + T), built by
`encode_pairs`, so that chapter 2's `lmbook.train.train` and `evaluate` work unchanged.
At test time `greedy_decode` feeds each prediction back in instead. Both encoder and decoder are
torch's LSTM (chapter 3 explains why one uses torch's version rather than one's own in practice).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmbook.attention import AdditiveAttention
from lmbook.batching import Vocab

PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # ids 0, 1, 2 of the target vocabulary; PAD is 0 in the source too


def make_vocabs(pairs: list[tuple[str, str]]) -> tuple[Vocab, Vocab]:
    """Character vocabularies (source, target) of (source text, target text) pairs; the source
    vocabulary starts with PAD, the target one with PAD, BOS, EOS."""
    _check_pairs(pairs)
    return (Vocab("".join(s for s, _ in pairs), specials=[PAD]),
            Vocab("".join(t for _, t in pairs), specials=[PAD, BOS, EOS]))


def encode_sources(texts: list[str], src_vocab: Vocab) -> Tensor:
    """Source ids (B, S), right-padded with PAD (0) to the longest text."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts \
            or not all(isinstance(t, str) and t for t in texts):
        raise ValueError(f"texts must be a non-empty list of non-empty strings, got {texts!r:.60}")
    if not isinstance(src_vocab, Vocab):
        raise TypeError(f"src_vocab must be a Vocab (see make_vocabs), got {type(src_vocab).__name__}")
    S = max(len(t) for t in texts)
    return torch.tensor([src_vocab.encode(t) + [0] * (S - len(t)) for t in texts])


def encode_pairs(pairs: list[tuple[str, str]], src_vocab: Vocab, tgt_vocab: Vocab) -> tuple[Tensor, Tensor]:
    """X (N, S + T) = [source ids padded to S | <s> y_0 … y_{T-2}], Y (N, T) = [y_0 … y_{T-2} </s>],
    with T = target length + 1. Every target must have the same length (ISO dates do)."""
    _check_pairs(pairs)
    if not isinstance(tgt_vocab, Vocab) or any(s not in tgt_vocab.stoi for s in (PAD, BOS, EOS)):
        raise ValueError(f"tgt_vocab must be a Vocab whose specials are {[PAD, BOS, EOS]} (see make_vocabs)")
    lengths = {len(t) for _, t in pairs}
    if len(lengths) != 1:
        raise ValueError(f"every target must have the same length; got lengths {sorted(lengths)}")
    src = encode_sources([s for s, _ in pairs], src_vocab)  # (N, S)
    bos, eos = tgt_vocab.stoi[BOS], tgt_vocab.stoi[EOS]
    tgt = torch.tensor([tgt_vocab.encode(t) for _, t in pairs])  # (N, T - 1)
    N = len(pairs)
    dec_in = torch.cat([torch.full((N, 1), bos), tgt], dim=1)  # (N, T): <s> y_0 … y_{T-2}
    Y = torch.cat([tgt, torch.full((N, 1), eos)], dim=1)  # (N, T): y_0 … y_{T-2} </s>
    return torch.cat([src, dec_in], dim=1), Y


class Seq2Seq(nn.Module):
    """Encoder-decoder over characters; `attention=False` is the fixed-vector baseline.

    target_len T: the number of decoder steps (target characters + </s>), which tells forward(x)
    where the source ends. emb_dim and hidden size both LSTMs; the attention has width hidden.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, target_len: int, emb_dim: int = 32,
                 hidden: int = 128, attention: bool = True, bos_id: int = 1):
        super().__init__()
        _check_model_args(src_vocab_size, tgt_vocab_size, target_len, emb_dim, hidden, attention, bos_id)
        self.target_len, self.bos_id, self.use_attention = target_len, bos_id, attention
        self.src_emb = nn.Embedding(src_vocab_size, emb_dim, padding_idx=0)
        self.encoder = nn.LSTM(emb_dim, hidden, batch_first=True)
        self.tgt_emb = nn.Embedding(tgt_vocab_size, emb_dim)
        self.attention = AdditiveAttention(hidden, hidden, hidden) if attention else None
        self.decoder = nn.LSTMCell(emb_dim + (hidden if attention else 0), hidden)
        self.out = nn.Linear(2 * hidden if attention else hidden, tgt_vocab_size)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """src (B, S), right-padded with 0 -> (states h_1..h_S (B, S, H), mask (B, S) True at real
        characters, the last real state and cell (h_S, c_S), each (B, H)). Packing the sequences
        makes the LSTM stop at each row's last real character instead of reading the padding."""
        _check_ids(src, "src", self.src_emb.num_embeddings, "(B, S)")
        mask = src != 0  # (B, S)
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise ValueError("every source must have at least one character (a row of src is all padding)")
        packed = pack_padded_sequence(self.src_emb(src), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, (h, c) = self.encoder(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])  # (B, S, H)
        return states, mask, (h[0], c[0])

    def decode_step(self, y_prev: Tensor, state: tuple[Tensor, Tensor], states: Tensor, mask: Tensor,
                    projected: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """One decoder step: y_prev (B,) -> (logits (B, V), new (s, c), attention weights (B, S) or None)."""
        x = self.tgt_emb(y_prev)  # (B, E)
        weights = None
        if self.attention is not None:
            context, weights = self.attention(state[0], states, mask, projected)  # (B, H), (B, S)
            x = torch.cat([x, context], dim=-1)  # (B, E + H)
        s, c = self.decoder(x, state)  # (B, H) each
        logits = self.out(torch.cat([s, context], dim=-1) if self.attention is not None else s)
        return logits, (s, c), weights

    def forward(self, x: Tensor) -> Tensor:
        """Teacher forcing: x (B, S + T) from `encode_pairs` -> logits (B, T, V) for every step."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] <= self.target_len:
            raise ValueError(f"x must be (B, S + T) with T = target_len = {self.target_len} decoder inputs after "
                             f"the source (see encode_pairs), got "
                             f"{f'shape {tuple(x.shape)}' if isinstance(x, Tensor) else type(x).__name__}")
        src, dec_in = x[:, : -self.target_len], x[:, -self.target_len:]  # (B, S), (B, T)
        _check_ids(dec_in, "the decoder inputs (the last target_len columns of x)", self.tgt_emb.num_embeddings,
                   "(B, T)")
        states, mask, state = self.encode(src)
        projected = self.attention.project_keys(states) if self.attention is not None else None
        logits = []
        for t in range(self.target_len):
            step_logits, state, _ = self.decode_step(dec_in[:, t], state, states, mask, projected)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor) -> tuple[Tensor, Tensor | None]:
        """Feed back the most likely character at each step: src (B, S) -> (ids (B, T), attention
        weights (B, T, S), or None without attention)."""
        states, mask, state = self.encode(src)
        projected = self.attention.project_keys(states) if self.attention is not None else None
        y = torch.full((src.shape[0],), self.bos_id, dtype=torch.long, device=src.device)
        ids, all_weights = [], []
        for _ in range(self.target_len):
            logits, state, weights = self.decode_step(y, state, states, mask, projected)
            y = logits.argmax(-1)  # (B,)
            ids.append(y)
            all_weights.append(weights)
        return torch.stack(ids, 1), (torch.stack(all_weights, 1) if self.attention is not None else None)


def translate(model: Seq2Seq, texts: list[str], src_vocab: Vocab, tgt_vocab: Vocab,
              batch_size: int = 1024) -> list[str]:
    """Greedy translations of `texts`, each cut at its first </s>; the model is put in eval mode
    (and back)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(tgt_vocab, Vocab) or EOS not in tgt_vocab.stoi:
        raise ValueError(f"tgt_vocab must be the target Vocab, with {EOS!r} among its specials (see make_vocabs)")
    device = next(model.parameters()).device
    was_training, out = model.training, []
    model.eval()
    try:
        for i in range(0, len(texts), batch_size):
            ids, _ = model.greedy_decode(encode_sources(texts[i : i + batch_size], src_vocab).to(device))
            for row in ids.tolist():
                tokens = tgt_vocab.decode(row)
                out.append("".join(tokens[: tokens.index(EOS)] if EOS in tokens else tokens))
    finally:
        model.train(was_training)
    return out


def exact_match(predictions: list[str], targets: list[str]) -> float:
    """The fraction of predictions equal to their target, character for character."""
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"need as many predictions as targets, at least 1; got {len(predictions)} and {len(targets)}")
    return sum(p == t for p, t in zip(predictions, targets)) / len(targets)


# ---- input checks: clear errors instead of "index out of range in self" -------------------------------

def _check_pairs(pairs) -> None:
    if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)) or not pairs:
        raise ValueError(f"pairs must be a non-empty list of (source text, target text), got {pairs!r:.60}")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) and t for t in pair)):
            raise ValueError(f"pair {i} must be (source text, target text), two non-empty strings, got {pair!r:.60}")


def _check_model_args(src_vocab_size, tgt_vocab_size, target_len, emb_dim, hidden, attention, bos_id) -> None:
    for name, value in {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size,
                        "target_len": target_len, "emb_dim": emb_dim, "hidden": hidden}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(attention, bool):
        raise TypeError(f"attention must be True or False, got {attention!r}")
    if isinstance(bos_id, bool) or not isinstance(bos_id, int) or not 0 <= bos_id < tgt_vocab_size:
        raise ValueError(f"bos_id must be a target token id in 0..{tgt_vocab_size - 1}, got {bos_id!r}")


def _check_ids(ids, name: str, vocab_size: int, layout: str) -> None:
    if not isinstance(ids, Tensor) or ids.dtype != torch.long or ids.dim() != 2:
        got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a LongTensor {layout} of token ids, got {got}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)})")
    low, high = torch.stack(torch.aminmax(ids)).tolist()
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name}: token id {low if low < 0 else high} is out of range for a vocabulary of "
                         f"{vocab_size} (ids 0..{vocab_size - 1})")
