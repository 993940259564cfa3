"""Recurrent networks from scratch: RNN, LSTM and GRU layers, and a character-level recurrent LM (chapter 3).

A recurrent layer reads a sequence one step at a time and carries a state from step to step; the
same weights are used at every step. Three cells, each a few lines after its equations:

    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM  i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), split in four
          c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
    GRU   r, z = σ(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
          n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn)),   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

`RNN`, `LSTM` and `GRU` stack those cells into layers with the signature, parameter names, gate
order, initialisation, input/state layout and return values of `torch.nn.RNN` / `nn.LSTM` /
`nn.GRU`, so a state_dict moves between the two unchanged (the tests check outputs, final states
and gradients agree to 1e-5). They are for reading and checking; torch's versions compute the same
thing faster (and with cuDNN on a GPU), so `CharRNN` uses those by default.

`CharRNN` is the language model: embedding -> recurrent layers -> dropout -> linear layer over the
vocabulary. `tbptt_batches` and `TruncatedBPTT` train it with truncated backpropagation through
time on one long text (the state carried from batch to batch, detached), using chapter 2's
`lmbook.train.train`; `evaluate_stream` scores a held-out text with the state carried throughout.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]  # (h,) for RNN and GRU, (h, c) for LSTM; each (B, H) inside a layer


# ---- the cells: one time step each ---------------------------------------------------------------
# Each cell receives xg = W_ih x_t + b_ih, the input's share of the pre-activations, already computed:
# it does not depend on the previous step, so a layer computes it for all time steps in one matrix
# product before the loop. Only the W_hh h_{t-1} half is sequential.


def rnn_cell(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """One step of an Elman RNN: xg (B, H) = W_ih x_t + b_ih, h (B, H) = h_{t-1} -> h_t (B, H)."""
    pre = xg + F.linear(h, w_hh, b_hh)                          # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(xg: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTM step: xg (B, 4H) = W_ih x_t + b_ih, state (h, c) each (B, H) -> (h_t, c_t).

    The four blocks of the pre-activations are, in torch's order, the input gate i, the forget
    gate f, the candidate g and the output gate o.
    """
    h, c = state
    i, f, g, o = (xg + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)  # 4 × (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget some of the old, add some new
    h = torch.sigmoid(o) * torch.tanh(c)                         # show some of the cell
    return h, c


def gru_cell(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """One GRU step: xg (B, 3H) = W_ih x_t + b_ih, h (B, H) -> h_t (B, H).

    Blocks in torch's order: reset gate r, update gate z, candidate n. The reset gate scales the
    recurrent part of the candidate *including its bias* b_hn, as torch (and cuDNN) compute it.
    """
    x_r, x_z, x_n = xg.chunk(3, dim=1)                            # 3 × (B, H)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)      # 3 × (B, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h                                   # z = 1 keeps the old state


# ---- the layers: cells unrolled in time, stacked -----------------------------------------------------


class _Recurrent(nn.Module):
    """The loop shared by RNN, LSTM and GRU; subclasses set `gates`, `state_names` and `step`."""

    gates: int = 1                        # blocks of H rows in W_ih and W_hh
    state_names: tuple[str, ...] = ("h",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0):
        super().__init__()
        self.input_size = _check_int("input_size", input_size, minimum=1)
        self.hidden_size = _check_int("hidden_size", hidden_size, minimum=1)
        self.num_layers = _check_int("num_layers", num_layers, minimum=1)
        for name, flag in [("bias", bias), ("batch_first", batch_first)]:
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout is the probability of zeroing an output of every layer but the last, "
                             f"in [0, 1), got {dropout!r}")
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        G, H = self.gates, hidden_size
        for k in range(num_layers):  # torch's names, so that state_dicts are interchangeable
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(G * H, input_size if k == 0 else H)))
            setattr(self, f"weight_hh_l{k}", nn.Parameter(torch.empty(G * H, H)))
            if bias:
                setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(G * H)))
                setattr(self, f"bias_hh_l{k}", nn.Parameter(torch.empty(G * H)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias ~ U(-1/√H, 1/√H)."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def step(self, xg: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
        raise NotImplementedError

    def forward(self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        """input (T, B, input_size), or (B, T, input_size) with batch_first, or (T, input_size) unbatched.

        hx: the initial state, (num_layers, B, H) each ((num_layers, H) unbatched); zeros when None.
        Returns (output, h_n), or (output, (h_n, c_n)) for the LSTM: output holds the last layer's h_t
        for every t, in the layout of the input with H features; h_n / c_n the final state of every layer.
        """
        x, batched = self._checked_input(input)                       # (T, B, input_size)
        T, B, _ = x.shape
        initial = self._checked_state(hx, B, batched, x)              # each (num_layers, B, H)
        finals: list[State] = []
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b_ih, b_hh = (getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")) if self.bias else (None, None)
            xg = F.linear(x, w_ih, b_ih)                              # (T, B, G·H), all steps at once
            state = tuple(s[k] for s in initial)                      # each (B, H)
            outputs = []
            for t in range(T):                                        # the sequential part
                state = self.step(xg[t], state, w_hh, b_hh)
                outputs.append(state[0])                              # h_t (B, H)
            x = torch.stack(outputs)                                  # (T, B, H): the next layer's input
            finals.append(state)
            if k < self.num_layers - 1 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)         # between layers, not after the last
        output = x.transpose(0, 1) if self.batch_first else x          # (B, T, H) or (T, B, H)
        final = tuple(torch.stack(s) for s in zip(*finals))           # each (num_layers, B, H)
        if not batched:
            output, final = output.squeeze(1), tuple(s.squeeze(1) for s in final)
        return output, (final if len(final) > 1 else final[0])

    def _checked_input(self, input) -> tuple[Tensor, bool]:
        """`input` as (T, B, input_size), and whether it had a batch dimension; or a clear error."""
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor of shape {layout}, got {type(input).__name__}")
        if not input.dtype.is_floating_point:
            raise TypeError(f"input must be a float tensor (embeddings or features), got dtype {input.dtype}; "
                            f"token ids go through an nn.Embedding first")
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise TypeError(f"input has dtype {input.dtype} but the layer's weights are {weight.dtype}; "
                            f"convert one of them (input.to({weight.dtype}) or layer.to({input.dtype}))")
        if input.dim() not in (2, 3):
            raise ValueError(f"input must be 3-D, {layout}, or 2-D (T, input_size) for one unbatched sequence; "
                             f"got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input has {input.shape[-1]} features in its last dimension, but this layer was "
                             f"built with input_size={self.input_size} (input shape {tuple(input.shape)}, "
                             f"expected {layout})")
        batched = input.dim() == 3
        x = input if not batched else (input.transpose(0, 1) if self.batch_first else input)
        x = x if batched else x.unsqueeze(1)                          # (T, B, input_size)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input is empty (shape {tuple(input.shape)}): need at least one step and one sequence")
        return x, batched

    def _checked_state(self, hx, B: int, batched: bool, x: Tensor) -> State:
        """The initial state as a tuple of (num_layers, B, H) tensors (zeros when hx is None)."""
        L, H, names = self.num_layers, self.hidden_size, self.state_names
        expected = (L, B, H) if batched else (L, H)
        if hx is None:
            return tuple(x.new_zeros(L, B, H) for _ in names)
        if len(names) == 1:
            if not isinstance(hx, Tensor):
                raise TypeError(f"hx must be a tensor h_0 of shape {expected} (num_layers, batch, hidden_size), "
                                f"got {type(hx).__name__}")
            hx = (hx,)
        elif not (isinstance(hx, tuple) and len(hx) == 2 and all(isinstance(s, Tensor) for s in hx)):
            raise TypeError(f"the LSTM's hx must be a tuple (h_0, c_0) of two tensors of shape {expected}, "
                            f"got {type(hx).__name__}")
        for name, s in zip(names, hx):
            if tuple(s.shape) != expected:
                raise ValueError(f"{name}_0 must have shape {expected} (num_layers={L}, "
                                 f"{f'batch={B}, ' if batched else ''}hidden_size={H}), got {tuple(s.shape)}")
            if s.dtype != x.dtype:
                raise TypeError(f"{name}_0 has dtype {s.dtype} but the input is {x.dtype}")
        return tuple(s if batched else s.unsqueeze(1) for s in hx)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in [("num_layers", self.num_layers), ("bias", self.bias),
                                                 ("batch_first", self.batch_first), ("dropout", self.dropout)]
                        if v != {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0}[k])
        return f"{self.input_size}, {self.hidden_size}{extra}"


class RNN(_Recurrent):
    """An Elman RNN with `torch.nn.RNN`'s interface: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    >>> out, h_n = RNN(4, 8, num_layers=2)(torch.randn(5, 3, 4))  # 5 steps, 3 sequences
    >>> out.shape, h_n.shape
    (torch.Size([5, 3, 8]), torch.Size([2, 3, 8]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout)

    def step(self, xg: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
        return (rnn_cell(xg, state[0], w_hh, b_hh, self.nonlinearity),)


class LSTM(_Recurrent):
    """A long short-term memory layer with `torch.nn.LSTM`'s interface; returns (output, (h_n, c_n)).

    >>> out, (h_n, c_n) = LSTM(4, 8, batch_first=True)(torch.randn(3, 5, 4))  # 3 sequences of 5 steps
    >>> out.shape, h_n.shape, c_n.shape
    (torch.Size([3, 5, 8]), torch.Size([1, 3, 8]), torch.Size([1, 3, 8]))
    """

    gates, state_names = 4, ("h", "c")

    def step(self, xg: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
        return lstm_cell(xg, state, w_hh, b_hh)


class GRU(_Recurrent):
    """A gated recurrent unit layer with `torch.nn.GRU`'s interface; returns (output, h_n)."""

    gates = 3

    def step(self, xg: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None) -> State:
        return (gru_cell(xg, state[0], w_hh, b_hh),)


# ---- the language model --------------------------------------------------------------------------------

CELLS = ("rnn", "lstm", "gru")
IMPLEMENTATIONS = {"torch": {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU},
                   "lmbook": {"rnn": RNN, "lstm": LSTM, "gru": GRU}}


class CharRNN(nn.Module):
    """A recurrent language model: embedding -> `num_layers` recurrent layers -> dropout -> logits.

        e_t = C[x_t]                       (B, T, emb_dim)
        h_t = cell(e_t, h_{t-1})           (B, T, hidden_size)   the top layer's output
        z_t = W dropout(h_t) + b           (B, T, V)             logits for x_{t+1}

    `cell` is "rnn", "lstm" or "gru"; `impl` is "torch" (nn.LSTM & co., fast, cuDNN on a GPU) or
    "lmbook" (this module's from-scratch layers). Both have the same parameter names, so a
    state_dict trained with one loads into the other. `dropout` applies between recurrent layers
    and before the output layer.

    forward(idx) returns the logits, so `lmbook.train.train` and `evaluate` work unchanged;
    forward(idx, state, return_state=True) also returns the final state, to continue from it.

    >>> model = CharRNN(27, emb_dim=8, hidden_size=16)
    >>> model(torch.zeros(2, 5, dtype=torch.long)).shape  # 2 sequences of 5 tokens
    torch.Size([2, 5, 27])
    """

    def __init__(self, vocab_size: int, emb_dim: int = 64, hidden_size: int = 256, num_layers: int = 2,
                 cell: str = "lstm", dropout: float = 0.0, impl: str = "torch"):
        super().__init__()
        _check_model_args(vocab_size, emb_dim, hidden_size, num_layers, cell, dropout, impl)
        self.vocab_size, self.cell, self.impl = vocab_size, cell, impl
        self.embedding = nn.Embedding(vocab_size, emb_dim)                       # C: (V, emb_dim)
        self.rnn = IMPLEMENTATIONS[impl][cell](emb_dim, hidden_size, num_layers, batch_first=True,
                                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        # torch's default initialisation throughout. (Shrinking the output layer, as chapter 2 did for
        # the MLP, made the first Shakespeare steps markedly slower here: it also shrinks the gradient
        # that reaches the recurrent layers.)

    def forward(self, idx: Tensor, state=None, return_state: bool = False):
        """idx (B, T) token ids -> logits (B, T, V); with return_state, (logits, final state)."""
        out, state = self.rnn(self.embedding(_checked_ids(idx, self.vocab_size)), state)  # (B, T, H)
        logits = self.head(self.dropout(out))                                   # (B, T, V)
        return (logits, state) if return_state else logits

    def hidden_states(self, idx: Tensor, state=None) -> Tensor:
        """The top layer's outputs h_t (B, T, H) for a batch of sequences, without dropout."""
        out, _ = self.rnn(self.embedding(_checked_ids(idx, self.vocab_size)), state)
        return out

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, *, temperature: float = 1.0,
                 stop_id: int | None = None, generator: torch.Generator | None = None) -> list[int]:
        """Read `prompt` (at least one id), then sample up to `max_new_tokens` ids one at a time,
        carrying the state: each step costs one cell update, however long the text so far.

        `temperature` divides the logits (below 1 greedier, above 1 more random); sampling stops
        when `stop_id` is drawn (not returned). Runs in eval mode (no dropout), then restores the mode.

        >>> model = CharRNN(27, emb_dim=8, hidden_size=16)
        >>> out = model.generate([0], 5, generator=torch.Generator().manual_seed(0))
        >>> len(out), all(0 <= t < 27 for t in out)
        (5, True)
        """
        prompt = _checked_prompt(prompt, max_new_tokens, temperature, stop_id, self.vocab_size)
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        new: list[int] = []
        try:
            logits, state = self(torch.tensor([prompt], device=device), return_state=True)  # (1, P, V)
            for _ in range(max_new_tokens):
                probs = torch.softmax(logits[0, -1].float() / temperature, dim=0)         # (V,)
                if generator is not None:
                    probs = probs.to(generator.device)
                token = int(torch.multinomial(probs, 1, generator=generator))
                if token == stop_id:
                    break
                new.append(token)
                logits, state = self(torch.tensor([[token]], device=device), state, return_state=True)
        finally:
            self.train(was_training)
        return new


# ---- truncated backpropagation through time -------------------------------------------------------------


def tbptt_batches(ids: Tensor, batch_size: int, seq_len: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive chunks of one long stream, forever: the stream is cut into `batch_size` rows of
    equal length, and batch k holds columns k·seq_len … (k+1)·seq_len - 1 of every row. So row b of
    batch k+1 continues row b of batch k, and a model can carry its state across (truncated BPTT).
    x (B, seq_len), y (B, seq_len) = the next token of each. After the last full chunk it starts over.

    >>> batches = tbptt_batches(torch.arange(13), batch_size=2, seq_len=3)
    >>> [x.tolist() for x, _ in [next(batches), next(batches)]]
    [[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9, 10, 11]]]
    """
    _check_int("batch_size", batch_size, minimum=1)
    _check_int("seq_len", seq_len, minimum=1)
    _check_stream(ids, "ids")
    n = (len(ids) - 1) // batch_size                                    # columns per row
    if n < seq_len:
        raise ValueError(f"a stream of {len(ids)} tokens cut into batch_size={batch_size} rows gives rows of "
                         f"{n} tokens, fewer than seq_len={seq_len}; use a smaller batch_size or seq_len")
    X = ids[: n * batch_size].view(batch_size, n).long()                # (B, n)
    Y = ids[1 : n * batch_size + 1].view(batch_size, n).long()          # (B, n), shifted by one in the stream

    def batches():
        while True:
            for start in range(0, n - seq_len + 1, seq_len):
                yield X[:, start : start + seq_len], Y[:, start : start + seq_len]

    return batches()


def detach_state(state):
    """The state (a tensor or a tuple of tensors) cut from the graph that computed it."""
    return state.detach() if isinstance(state, Tensor) else tuple(s.detach() for s in state)


class TruncatedBPTT(nn.Module):
    """Wraps a `CharRNN` so that, in training mode, each call starts from the final state of the
    previous call, detached: gradients flow back through the current chunk only (truncated BPTT),
    while the state carries information from all the text before it. Feed it `tbptt_batches`.
    In eval mode every call starts from zeros (so `lmbook.train.evaluate` is unaffected);
    `reset()` forgets the carried state, as does a change of batch size.
    """

    def __init__(self, model: CharRNN):
        super().__init__()
        self.model = model
        self.state = None

    def forward(self, idx: Tensor) -> Tensor:
        if not self.training:
            return self.model(idx)
        if self.state is not None and _batch_size(self.state) != len(idx):
            self.state = None
        logits, state = self.model(idx, self.state, return_state=True)
        self.state = detach_state(state)     # without this, backward would run into the previous chunk
        return logits

    def reset(self) -> None:
        self.state = None


@torch.no_grad()
def evaluate_stream(model: CharRNN, ids: Tensor, num_streams: int = 16, chunk: int = 256) -> float:
    """Mean cross-entropy (nats per token) of a recurrent LM on one long stream, every token
    predicted from all the tokens before it in its part of the stream: the stream is cut into
    `num_streams` equal parts read in parallel, `chunk` tokens at a time, carrying the state.
    (Up to num_streams tokens at the end are left out to make the parts equal.)"""
    _check_int("num_streams", num_streams, minimum=1)
    _check_int("chunk", chunk, minimum=1)
    if not isinstance(model, nn.Module) or not hasattr(model, "head"):  # a CharRNN (or the chapter's copy of it)
        raise TypeError(f"model must be a CharRNN (evaluate_stream carries its state), got {type(model).__name__}")
    _check_stream(ids, "ids")
    if len(ids) < 2 * num_streams:
        raise ValueError(f"ids must hold at least 2·num_streams = {2 * num_streams} token ids, got {len(ids)}")
    n = len(ids) // num_streams
    rows = ids[: n * num_streams].view(num_streams, n).long().to(model.head.weight.device)  # (S, n)
    was_training, total, state = model.training, 0.0, None
    model.eval()
    try:
        for start in range(0, n - 1, chunk):
            x = rows[:, start : min(start + chunk, n - 1)]                      # (S, t)
            y = rows[:, start + 1 : start + 1 + x.shape[1]]                     # (S, t)
            logits, state = model(x, state, return_state=True)                 # (S, t, V)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    finally:
        model.train(was_training)
    return total / (num_streams * (n - 1))


def _check_model_args(vocab_size, emb_dim, hidden_size, num_layers, cell, dropout, impl) -> None:
    """The arguments of `CharRNN`, or an error that names the wrong one."""
    _check_int("vocab_size", vocab_size, minimum=2)
    _check_int("emb_dim", emb_dim, minimum=1)
    _check_int("hidden_size", hidden_size, minimum=1)
    _check_int("num_layers", num_layers, minimum=1)
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    if not isinstance(impl, str) or impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be 'torch' (nn.LSTM & co.) or 'lmbook' (from scratch), got {impl!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout is the probability of zeroing an output, in [0, 1), got {dropout!r}")


def _checked_ids(idx, vocab_size: int) -> Tensor:
    """`idx` as a (B, T) int64 tensor of ids in 0..vocab_size-1, or an error that says what is wrong."""
    if not isinstance(idx, Tensor):
        raise TypeError(f"idx must be a torch.Tensor of token ids with shape (B, T), got {type(idx).__name__}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}")
    if idx.dim() != 2 or idx.numel() == 0:
        raise ValueError(f"idx must be a non-empty 2-D tensor (B, T): B sequences of T token ids, "
                         f"got shape {tuple(idx.shape)}")
    low, high = torch.stack(torch.aminmax(idx)).tolist()
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token id {low if low < 0 else high} is out of range for a vocabulary of "
                         f"{vocab_size} (ids 0..{vocab_size - 1})")
    return idx.long()


def _checked_prompt(prompt, max_new_tokens, temperature, stop_id, vocab_size: int) -> list[int]:
    """The prompt as a list of ids, after checking every argument of `CharRNN.generate`."""
    if isinstance(prompt, (str, bytes)):
        raise TypeError(f"prompt must be a list of int token ids, got the {type(prompt).__name__} "
                        f"{prompt!r:.40}; encode it first")
    try:
        prompt = [operator.index(t) for t in prompt]
    except TypeError:
        raise TypeError(f"prompt must be a list of int token ids, got {prompt!r:.80}") from None
    if not prompt:
        raise ValueError("prompt must hold at least one token id (e.g. the boundary id) to start from")
    bad = [t for t in prompt if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"prompt: token id {bad[0]} is out of range for a vocabulary of {vocab_size} "
                         f"(ids 0..{vocab_size - 1})")
    _check_int("max_new_tokens", max_new_tokens, minimum=0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if stop_id is not None and (isinstance(stop_id, bool) or not isinstance(stop_id, int)
                                or not 0 <= stop_id < vocab_size):
        raise ValueError(f"stop_id must be None or a token id in 0..{vocab_size - 1}, got {stop_id!r}")
    return prompt


def _check_stream(ids, name: str) -> None:
    """`ids` must be one long stream: a 1-D integer tensor of token ids >= 0."""
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex \
            or ids.dtype == torch.bool:
        got = f"dtype {ids.dtype}, shape {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be a 1-D tensor of token ids (integers: one long stream), got {got}")
    if len(ids) and int(ids.min()) < 0:
        raise ValueError(f"{name} holds the negative token id {int(ids.min())}; token ids are >= 0")


def _batch_size(state) -> int:
    return (state if isinstance(state, Tensor) else state[0]).shape[1]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
