"""Training a GPT on a GPU: the full recipe (chapter 7).

Chapter 2's `lmbook.train` is four lines in a loop. This module is the same loop with everything a
practitioner adds before trusting a run that costs GPU hours:

- AdamW with decoupled weight decay on the weight matrices only (not on biases, norms or
  embeddings), fused into one kernel on CUDA; a linear warm-up then a cosine decay of the rate;
  gradient accumulation; gradient clipping.
- Mixed precision: bf16 autocast where the GPU supports it (fp16 with loss scaling otherwise),
  TF32 matrix products, `torch.compile` (by default on CUDA, and on CPUs for runs long enough to
  earn back the compilation), flash attention through
  ``F.scaled_dot_product_attention`` (the GPT's ``attention="sdpa"``).
- Tokens pre-encoded in a memory-mapped uint16 file (`lmbook.tokens`), batches pinned and copied
  asynchronously.
- Evaluation on held-out text every `eval_every` steps; a metrics.json per run (every step's loss,
  each evaluation, tokens/second and MFU), a tqdm bar, optional TensorBoard.
- Checkpoints through `lmbook.checkpoint` (safetensors, no pickle, atomic) every `checkpoint_every`
  steps, the newest `keep_checkpoints` kept; `resume` continues a run exactly (on a CPU bit for
  bit), and refuses settings or token data that differ from the checkpoint's in a way that would
  change the run, unless `resume_allow_changes` (every change is recorded in metrics.json). Ctrl-C
  (SIGINT) or SIGTERM saves a checkpoint of the current step and stops, saying how to resume.
- A NaN/inf loss stops the run naming the step; running out of GPU memory says what to lower.
- The model is chapter 5's GPT, or chapter 9's Llama-style decoder with ``model="llama"`` (and
  ``n_kv_head`` for grouped-query attention): any model with forward(idx, targets) -> (logits, loss).
- The same entry point runs under ``torchrun`` with DistributedDataParallel (NCCL on GPUs, gloo on
  CPUs); each process takes its slice of the same global batch.

The command line reads a JSON config and lets flags override it::

    python -m lmbook.trainer --config configs/shakespeare_char_gpu.json --max_steps 2000 --dtype float32
    torchrun --nproc_per_node 8 -m lmbook.trainer --config configs/shakespeare_char_gpu.json

Steps count from 0; the loss of step t is recorded as ``train_loss[t]``, and an evaluation at
step s sees the model after s updates.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import json
import math
import os
import shutil
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from lmbook import checkpoint, tokens
from lmbook.data import sha256_of
from lmbook.train import decay_split  # chapter 2's weight-decay rule, the one every loop of the book uses

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Settings that change the course of a run: resuming with another value would not continue the same
# run (other batches, another schedule, another model), so it needs resume_allow_changes. The others
# change what is logged or where and how the arithmetic runs (device, compile, tf32, fused_adamw:
# the last bits of the numbers, not the run).
RUN_SETTINGS = ("model", "n_kv_head", "n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "attention",
                "batch_size", "grad_accum", "max_steps", "lr", "min_lr", "warmup_steps", "weight_decay", "beta1", "beta2",
                "grad_clip", "dtype", "seed")


@dataclass
class TrainConfig:
    """Everything a run depends on; defaults are nanoGPT's shakespeare-char run (6 layers, 6 heads,
    width 384, context 256, batch 64, 5,000 steps at lr 1e-3)."""

    # data and output
    dataset: str = "tinyshakespeare"       # an lmbook.data dataset, encoded character by character
    data_dir: str = "data/shakespeare_char"  # train.bin, val.bin, meta.json (written from `dataset` if missing)
    out_dir: str = "runs/shakespeare_char"
    # model (lmbook.gpt.GPTConfig, or lmbook.llama.LlamaConfig; vocab_size comes from the data)
    model: str = "gpt"                     # "gpt" (chapter 5) or "llama" (chapter 9: RMSNorm, SwiGLU, rotary positions)
    n_kv_head: int | None = None           # llama: key/value heads (None: n_head; fewer: grouped-query attention)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    block_size: int = 256
    dropout: float = 0.2
    bias: bool = False
    attention: str = "sdpa"                # "sdpa" (flash attention on GPUs) or "lmbook" (chapter 4's)
    # optimisation
    batch_size: int = 64                   # sequences per micro-batch per process
    grad_accum: int = 1                    # micro-batches per optimizer step
    max_steps: int = 5000
    lr: float = 1e-3
    min_lr: float = 1e-4                   # the cosine decays to this at max_steps
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0                 # 0 turns clipping off
    # evaluation, logging, checkpoints
    eval_every: int = 250
    eval_windows: int = 4096               # at most this many block_size windows per split, spread evenly
    log_every: int = 10
    checkpoint_every: int = 250            # 0: only at the end (and on Ctrl-C/SIGTERM)
    keep_checkpoints: int = 2              # the newest ones; one more than 1 survives a corrupted newest
    resume: str = ""                       # "": a new run; "latest": the run's latest checkpoint; or a checkpoint folder
    resume_allow_changes: bool = False     # resume even if settings or data that change the run's course differ
    export_dtype: str = "bfloat16"         # dtype of the final out_dir/model.safetensors
    progress: bool = True
    tensorboard: bool = False
    # system
    device: str = "auto"                   # "auto" (cuda if present), "cpu", "cuda"
    dtype: str = "auto"                    # "auto" (bfloat16 on GPUs and CPUs with bf16 instructions, else float32), "float32", "bfloat16", "float16"
    tf32: bool = True                      # TF32 matrix products for float32 work on Ampere and newer GPUs
    compile: bool | None = None            # None: on for CUDA; on a CPU for runs of COMPILE_MIN_STEPS or more (see resolve_compile)
    fused_adamw: bool | None = None        # None: on for CUDA, off for CPU
    peak_tflops: float | None = None       # the device's peak for MFU; None: looked up (see PEAK_TFLOPS)
    seed: int = 1337

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A validated config from a dict (e.g. a JSON file); unknown keys and wrong types are errors."""
        if not isinstance(values, dict):
            raise TypeError(f"a config must be a JSON object of settings, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ValueError(f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; the settings are: {', '.join(known)}")
            _check_type(key, value, known[key].type)
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise a ValueError that names the setting, the value and what is allowed."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        at_least = {"n_layer": 1, "n_head": 1, "n_embd": 1, "block_size": 1, "batch_size": 1, "grad_accum": 1,
                    "max_steps": 1, "warmup_steps": 0, "eval_every": 1, "eval_windows": 1, "log_every": 1,
                    "checkpoint_every": 0, "keep_checkpoints": 1}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head} (each head gets n_embd/n_head)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0 < self.lr < math.inf or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must not exceed max_steps={self.max_steps}")
        for name in ("weight_decay", "grad_clip"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0 (grad_clip 0 turns clipping off), "
                                 f"got {getattr(self, name)}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {self.beta1} and {self.beta2}")
        if self.model not in ARCHITECTURES:
            raise ValueError(f"model must be one of {list(ARCHITECTURES)}, got {self.model!r}")
        if self.n_kv_head is not None and (self.model != "llama" or self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            raise ValueError(f"n_kv_head={self.n_kv_head} needs model 'llama' and must divide n_head={self.n_head}; "
                             f"null (None) gives every query head its own key/value head")
        if self.attention not in ("sdpa", "lmbook"):
            raise ValueError(f"attention must be 'sdpa' or 'lmbook', got {self.attention!r}")
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype must be one of {['auto', *DTYPES]}, got {self.dtype!r}")
        if self.export_dtype not in DTYPES:
            raise ValueError(f"export_dtype must be one of {list(DTYPES)}, got {self.export_dtype!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.peak_tflops is not None and not 0 < self.peak_tflops < math.inf:
            raise ValueError(f"peak_tflops must be a finite number > 0 or null (look it up), got {self.peak_tflops}")
        if not self.out_dir:
            raise ValueError("out_dir must name a folder for the run's metrics and checkpoints")


def _check_type(name: str, value: Any, annotation: str) -> None:
    """The config's annotations are strings ('int', 'bool | None', …): check `value` against one."""
    allowed = [a.strip() for a in str(annotation).split("|")]
    ok = ((value is None and "None" in allowed)
          or (isinstance(value, bool) and "bool" in allowed)
          or (not isinstance(value, bool) and isinstance(value, int) and ("int" in allowed or "float" in allowed))
          or (isinstance(value, float) and "float" in allowed)
          or (isinstance(value, str) and "str" in allowed))
    if not ok:
        raise TypeError(f"setting {name!r} must be {' or '.join(allowed)}, got {type(value).__name__} {value!r}")


# ---- the learning rate and the optimizer ------------------------------------------------------------

def lr_schedule(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warm-up to `lr`, then a cosine decay to `min_lr` at `max_steps` (and `min_lr` after):

        step < W:        lr · (step + 1) / W
        W <= step <= S:  min_lr + ½ (1 + cos(π (step − W) / (S − W))) (lr − min_lr)

    >>> [round(lr_schedule(s, lr=1.0, min_lr=0.1, warmup_steps=2, max_steps=4), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over two groups: decay (weight_decay) and no_decay (0); fused into one kernel on CUDA."""
    decay, no_decay = decay_split(model)
    params = dict(model.named_parameters())
    fused = device.type == "cuda" if config.fused_adamw is None else config.fused_adamw
    return torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": config.weight_decay},
                              {"params": [params[n] for n in no_decay], "weight_decay": 0.0}],
                             lr=config.lr, betas=(config.beta1, config.beta2), fused=fused or None)


# ---- devices, precision and MFU ----------------------------------------------------------------------

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets: (bf16/fp16 tensor cores, tf32, fp32).
# Matched in this order against torch.cuda.get_device_name(); unknown devices get no MFU unless
# `peak_tflops` is given.
PEAK_TFLOPS: list[tuple[str, tuple[float, float, float]]] = [
    ("H200", (989.4, 494.7, 66.9)),    # H200 SXM
    ("GH200", (989.4, 494.7, 66.9)),
    ("H100 PCIe", (756.5, 378.0, 51.2)),
    ("H100 NVL", (835.5, 417.5, 60.0)),
    ("H100", (989.4, 494.7, 66.9)),    # H100 SXM ("NVIDIA H100 80GB HBM3")
    ("A100", (312.0, 156.0, 19.5)),    # SXM and PCIe
    ("L40S", (362.1, 183.0, 91.6)),
    ("L4", (121.0, 60.0, 30.3)),
    ("A10G", (70.0, 35.0, 31.2)),
]


def peak_tflops(device: torch.device, precision: str = "bfloat16") -> float | None:
    """The device's dense peak TFLOP/s for `precision` ('bfloat16'/'float16', 'tf32', 'float32'),
    or None when the device is not in PEAK_TFLOPS (every CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    column = {"bfloat16": 0, "float16": 0, "tf32": 1, "float32": 2}[precision]
    for key, peaks in PEAK_TFLOPS:
        if key in name:
            return peaks[column]
    return None


def resolve_device(config: TrainConfig, local_rank: int = 0) -> torch.device:
    if config.device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} but torch sees no CUDA GPU; use device 'cpu' or 'auto'")
    if config.device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(config.device)


def bf16_native(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (a CPU without bf16 instructions emulates it,
    slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The autocast dtype for 'auto': bfloat16 on GPUs that support it and on CPUs with bf16
    instructions (AVX512-BF16 or AMX), float32 otherwise."""
    if config.dtype == "auto":
        return torch.bfloat16 if bf16_native(device) else torch.float32
    dtype = DTYPES[config.dtype]
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError("dtype float16 (with loss scaling) is for CUDA GPUs; on a CPU use float32 or bfloat16")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no bfloat16 support; use float16 or float32")
    return dtype


COMPILE_MIN_STEPS = 500  # a CPU run this long earns back compilation (its first step took 3 to 27 s here, by cache)


def resolve_compile(config: TrainConfig, device: torch.device) -> bool:
    """Whether to torch.compile the model: `config.compile` when set; for None, always on CUDA, and on
    a CPU when the run has at least COMPILE_MIN_STEPS steps and a C++ compiler is installed (inductor
    writes C++ for the CPU; without a compiler, compilation fails)."""
    if config.compile is not None:
        return config.compile
    if device.type == "cuda":
        return True
    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return config.max_steps >= COMPILE_MIN_STEPS and any(c and shutil.which(c) for c in compilers)


# ---- the trainer -------------------------------------------------------------------------------------

@dataclass
class Metrics:
    """What a run records (saved as out_dir/metrics.json)."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)     # of each step's global batch
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "val": []})
    log_step: list[int] = field(default_factory=list)          # the last step of each timed interval
    tokens_per_second: list[float] = field(default_factory=list)
    mfu: list[float | None] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)         # training seconds up to the end of each interval
    train_seconds: float = 0.0                                 # time in training steps (compilation included)
    info: dict[str, Any] = field(default_factory=dict)         # device, dtype, sizes, peak memory, …


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run; a checkpoint of the step it reached was saved first
    (`path`, None when it stopped before the first step)."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        saved = (f"checkpoint saved in {path}; resume with resume='latest'" if path is not None
                 else "no checkpoint (it had not trained a step yet); start it again")
        super().__init__(f"{signal.Signals(signum).name} stopped the run at step {step}: {saved}")


class Trainer:
    """One training run. `Trainer(config).fit()` is what the command line does.

    model: an nn.Module with forward(idx, targets) -> (logits, loss); default lmbook.gpt.GPT built
    from the config. data: (train_tokens, val_tokens) 1-D integer arrays; default the token files in
    config.data_dir. flops_per_token: for MFU; default lmbook.gpt.flops_per_token for the GPT, else 6N.
    """

    def __init__(self, config: TrainConfig, model: nn.Module | None = None,
                 data: tuple[np.ndarray, np.ndarray] | None = None, flops_per_token: float | None = None):
        config.validate()
        self.config = c = config
        self.rank, self.world_size, local_rank, self._owns_group = _setup_distributed(c)
        self.is_main = self.rank == 0
        self.device = resolve_device(c, local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = c.tf32
            torch.backends.cudnn.allow_tf32 = c.tf32
        self.dtype = resolve_dtype(c, self.device)
        self.out_dir = Path(c.out_dir)
        if not c.resume and self.is_main and checkpoint.list_checkpoints(self.out_dir):
            raise ValueError(f"{self.out_dir} already holds checkpoints: continue that run with resume='latest', "
                             f"or give this one another out_dir")
        if self.is_main:  # what writes that crashed left behind
            checkpoint.remove_leftovers(self.out_dir)
            checkpoint.remove_leftovers(self.out_dir / "checkpoints")

        if data is None:
            data, self.meta = _load_data(c, self.is_main, self.world_size)
            _check_data(data, c.block_size, where=f"the token files in {c.data_dir}")
        else:
            _check_data(data, c.block_size, where="data")
            self.meta = {"vocab_size": int(max(np.max(data[0]), np.max(data[1]))) + 1}
        self.train_tokens, self.val_tokens = data
        torch.manual_seed(c.seed)  # the same initial weights on every process
        if model is None:
            module = architecture(c.model)
            extra = {"n_kv_head": c.n_kv_head} if c.model == "llama" else {}
            self.model_config = module.Config(vocab_size=self.meta["vocab_size"], block_size=c.block_size,
                                              n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
                                              dropout=c.dropout, bias=c.bias, attention=c.attention, **extra)
            model = module.Model(self.model_config)
            flops_per_token = flops_per_token or module.flops_per_token(self.model_config, c.block_size)
        else:
            self.model_config = None
        self.raw_model = model.to(self.device)
        if hasattr(self.raw_model, "check_inputs"):  # lmbook's GPT: check every token id once, here,
            _check_token_ids(self.train_tokens, self.val_tokens, self.raw_model.config.vocab_size)
            self.raw_model.check_inputs = False     # rather than with a GPU sync on every forward
        self.n_params = sum(p.numel() for p in self.raw_model.parameters())
        self.flops_per_token = flops_per_token or 6 * self.n_params
        self.optimizer = make_optimizer(self.raw_model, c, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.sampler = tokens.BatchSampler(self.train_tokens, c.block_size, c.batch_size, grad_accum=c.grad_accum,
                                           rank=self.rank, world_size=self.world_size, seed=c.seed, device=self.device)
        self.step, self.metrics = 0, Metrics()
        self._signal: int | None = None    # a SIGINT/SIGTERM received during fit()
        self._stop_agreed = False          # distributed: every process saw the stop request
        self._saved_step: int | None = None
        self._fingerprints: dict | None = None
        self._resume_note: str | None = None
        if c.resume:
            self._resume(self._resume_path())
        torch.manual_seed(c.seed + 1 + self.rank + 1000 * self.step)  # dropout: its own stream per process
        if c.resume:
            self._restore_rng()

        self.model = self.raw_model
        use_compile = resolve_compile(c, self.device)
        if use_compile:
            self.model = torch.compile(self.model)
        self.distributed = dist.is_available() and dist.is_initialized()
        if self.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.tokens_per_step = c.batch_size * c.grad_accum * self.world_size * c.block_size
        peak = c.peak_tflops or peak_tflops(self.device, "bfloat16")
        self.peak_flops = peak * 1e12 if peak else None
        self.metrics.info |= {"device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                              "dtype": str(self.dtype).removeprefix("torch."), "tf32": c.tf32 and self.device.type == "cuda",
                              "compile": bool(use_compile), "fused_adamw": bool(self.optimizer.defaults.get("fused")),
                              "world_size": self.world_size, "backend": dist.get_backend() if self.distributed else None,
                              "params": self.n_params,
                              "flops_per_token": self.flops_per_token, "tokens_per_step": self.tokens_per_step,
                              "peak_tflops_bf16": peak, "torch": torch.__version__, "cuda": torch.version.cuda,
                              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        self._pending: list[tuple[int, float, Tensor]] = []  # (step, lr, loss on the device): checked at each flush
        self._writer = _tensorboard(self.out_dir) if c.tensorboard and self.is_main else None

    # ---- one step -----------------------------------------------------------------------------------

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def train_step(self, micro_batches: list[tuple[Tensor, Tensor]]) -> Tensor:
        """One optimizer step over this process's micro-batches; returns the mean loss (on the device,
        not synchronised: reading it would make the CPU wait for the GPU)."""
        c = self.config
        lr = lr_schedule(self.step, lr=c.lr, min_lr=c.min_lr, warmup_steps=c.warmup_steps, max_steps=c.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for k, (x, y) in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            # under DDP, average the gradients across processes only after the last micro-batch
            no_sync = self.model.no_sync() if self.distributed and not last else contextlib.nullcontext()
            with no_sync:
                with self.autocast():
                    _, loss = self.model(x, y)
                loss = loss / len(micro_batches)
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
        if c.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw_model.parameters(), c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending.append((self.step, lr, total))
        self.step += 1
        return total

    def benchmark(self, steps: int = 20, warmup: int = 5) -> dict[str, float | None]:
        """Tokens/second, milliseconds a step, MFU and peak memory (CUDA) over `steps` training steps
        after `warmup` steps (which absorb compilation and the allocator's first requests). The steps
        train the model; the metrics are left alone."""
        def wait() -> list[float]:  # read the losses: the CPU waits for the device to finish
            values = torch.stack([loss for _, _, loss in self._pending]).tolist()
            self._pending.clear()
            if not all(map(math.isfinite, values)):
                raise FloatingPointError(f"non-finite training loss while benchmarking: {values}")
            return values

        for _ in range(warmup):
            self.train_step(self.sampler.next_step())
        if warmup:
            wait()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.train_step(self.sampler.next_step())
        wait()
        seconds = time.perf_counter() - start
        tps = steps * self.tokens_per_step / seconds
        return {"tokens_per_second": tps, "step_ms": 1000 * seconds / steps,
                "mfu": tps * self.flops_per_token / (self.peak_flops * self.world_size) if self.peak_flops else None,
                "peak_memory_gb": torch.cuda.max_memory_allocated(self.device) / 1e9 if self.device.type == "cuda" else None}

    # ---- evaluation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss per token on up to `eval_windows` windows of each split, spread evenly over it
        (all non-overlapping windows of a small split): the same windows at every evaluation."""
        c, model = self.config, self.raw_model
        was_training = model.training
        model.eval()
        result = {}
        for split, data in (("train", self.train_tokens), ("val", self.val_tokens)):
            n = min(c.eval_windows, (len(data) - 1) // c.block_size)
            offsets = np.linspace(0, len(data) - c.block_size - 1, n).astype(np.int64)[self.rank :: self.world_size]
            total = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of losses, tokens)
            for i in range(0, len(offsets), c.batch_size):
                x, y = tokens.windows(data, offsets[i : i + c.batch_size], c.block_size)
                x, y = tokens.to_device(x, self.device), tokens.to_device(y, self.device)
                with self.autocast():
                    _, loss = model(x, y)
                total += torch.stack([loss.double() * y.numel(), torch.tensor(float(y.numel()), device=self.device, dtype=torch.float64)])
            if self.world_size > 1:
                dist.all_reduce(total)
            result[split] = (total[0] / total[1]).item()
        model.train(was_training)
        return result

    # ---- the run ------------------------------------------------------------------------------------

    def fit(self) -> Metrics:
        """Train from the current step to max_steps; evaluate, log and checkpoint on the way. Ctrl-C
        (SIGINT) or SIGTERM saves a checkpoint of the current step, then raises TrainingInterrupted."""
        from tqdm.auto import tqdm

        c = self.config
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not (c.progress and self.is_main), dynamic_ncols=True)
        self.raw_model.train()
        try:
            with self._signals_stop_the_run():
                if self.step == 0:
                    self._evaluate_and_log(bar)
                timer = time.perf_counter()
                first = True
                while self.step < c.max_steps:
                    self.train_step(self.sampler.next_step())
                    if first:  # the first step includes compilation: wait for it and record how long it took
                        first = False
                        self._pending[-1][2].item()
                        self.metrics.info["first_step_seconds"] = time.perf_counter() - timer
                    bar.update()
                    step = self.step  # steps done
                    boundary = step == c.max_steps or step % c.eval_every == 0 or (
                        c.checkpoint_every and step % c.checkpoint_every == 0)
                    if step % c.log_every == 0 or boundary:
                        timer = self._flush(timer, bar)
                    if boundary:
                        if step % c.eval_every == 0 or step == c.max_steps:
                            self._evaluate_and_log(bar)
                        if (c.checkpoint_every and step % c.checkpoint_every == 0) or step == c.max_steps:
                            self.save()
                        timer = time.perf_counter()
                    if self._stop_requested() and step < c.max_steps:
                        self._stop(timer, bar)
        except torch.OutOfMemoryError as e:
            if self.device.type != "cuda":
                raise
            raise RuntimeError(self._oom_message()) from e
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.close()
        if self.is_main:
            self._write_metrics()
            if self.model_config is not None:
                self.export()
        return self.metrics

    @contextlib.contextmanager
    def _signals_stop_the_run(self):
        """While training, SIGINT and SIGTERM only ask the loop to stop after the current step (it
        then saves a checkpoint); a second one stops at once. Only the main thread can do this."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask_to_stop(signum, frame):
            if self._signal is not None:
                raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
            self._signal = signum

        previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_requested(self) -> bool:
        """One process: a signal came. Distributed: every process learnt of it at the last flush (the
        request rides on the all-reduce of the losses), so that all stop at the same step."""
        return self._signal is not None if self.world_size == 1 else self._stop_agreed

    def _stop(self, timer: float, bar) -> None:
        if self._pending:
            self._flush(timer, bar)
        path = None
        if self.step > 0:
            path = self.save() if self._saved_step != self.step else self.out_dir / "checkpoints" / f"step-{self.step:06d}"
        if self.is_main:
            self._write_metrics()
        if self.world_size > 1:
            dist.barrier()  # the other processes wait for the checkpoint (torchrun stops all when one exits)
        raise TrainingInterrupted(self._signal or signal.SIGTERM, self.step, path)

    def _flush(self, timer: float, bar) -> float:
        """Read the pending losses from the device (one synchronisation), stop on a NaN/inf naming
        its step, record tokens/second and MFU of the interval; returns the new timer start."""
        steps, lrs, losses = zip(*self._pending)
        values = torch.stack(losses)
        if self.world_size > 1:  # the mean over processes, and whether any was asked to stop
            stop = torch.tensor([float(self._signal is not None)], device=values.device)
            values = torch.cat([values, stop])
            dist.all_reduce(values)
            self._stop_agreed = values[-1].item() > 0
            values = values[:-1] / self.world_size
        values = values.tolist()  # waits for the GPU
        now = time.perf_counter()
        self._pending.clear()
        for step, lr, value in zip(steps, lrs, values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss is {value} at step {step} (lr {lr:.3g}): the run was stopped. Lower lr "
                    f"(now {self.config.lr:g}), lengthen warmup_steps, keep grad_clip on (1.0), or use bfloat16 "
                    f"rather than float16; resume from the last checkpoint with resume='latest'")
        m = self.metrics
        m.step += list(steps)
        m.lr += list(lrs)
        m.train_loss += values
        seconds = now - timer
        m.train_seconds += seconds
        tps = len(steps) * self.tokens_per_step / seconds
        mfu = tps * self.flops_per_token / (self.peak_flops * self.world_size) if self.peak_flops else None  # per GPU
        m.log_step.append(steps[-1])
        m.tokens_per_second.append(tps)
        m.mfu.append(mfu)
        m.elapsed.append(m.train_seconds)
        bar.set_postfix({"loss": f"{values[-1]:.4f}", "tok/s": f"{tps:,.0f}"} | ({"mfu": f"{mfu:.1%}"} if mfu else {}),
                        refresh=False)
        if self._writer is not None:
            self._writer.add_scalar("loss/train_batch", values[-1], steps[-1])
            self._writer.add_scalar("perf/tokens_per_second", tps, steps[-1])
        return time.perf_counter()

    def _evaluate_and_log(self, bar) -> None:
        losses = self.evaluate()
        m = self.metrics
        m.eval_step.append(self.step)
        for split, value in losses.items():
            m.eval_loss[split].append(value)
            if self._writer is not None:
                self._writer.add_scalar(f"loss/{split}", value, self.step)
        if self.device.type == "cuda":
            m.info["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        if self.is_main:
            if self.config.progress:
                bar.write(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            self._write_metrics()

    def _oom_message(self) -> str:
        c = self.config
        torch.cuda.empty_cache()  # give back what the failed step held, so the caller can go on
        return (f"out of GPU memory at step {self.step} with batch_size={c.batch_size}, block_size={c.block_size}, "
                f"n_layer={c.n_layer}, n_embd={c.n_embd}, dtype {self.dtype}. Lower batch_size and raise grad_accum "
                f"to keep the global batch ({c.batch_size * c.grad_accum} sequences per process), use dtype "
                f"bfloat16, turn compile on, or train a smaller model. Memory allocated at peak: "
                f"{torch.cuda.max_memory_allocated(self.device) / 1e9:.1f} GB of "
                f"{torch.cuda.get_device_properties(self.device).total_memory / 1e9:.1f} GB")

    # ---- saving and resuming ------------------------------------------------------------------------

    def save(self) -> Path | None:
        """A checkpoint of the run at the current step (by the main process)."""
        if not self.is_main:
            return None
        opt_tensors, opt_state = checkpoint.optimizer_to_save(self.optimizer)
        rng_tensors, rng_state = checkpoint.rng_to_save()
        sampler = {f"sampler.{k}": v for k, v in self.sampler.state_dict().items()}
        state = {"config": self.config.to_dict(), "optimizer": opt_state, "rng": rng_state,
                 "scaler": self.scaler.state_dict(), "metrics": dataclasses.asdict(self.metrics),
                 "world_size": self.world_size, "data": self._data_fingerprints()}
        path = checkpoint.save_checkpoint(self.out_dir, self.step, self.raw_model, opt_tensors | rng_tensors | sampler,
                                          state, keep=self.config.keep_checkpoints)
        self._saved_step = self.step
        return path

    def _resume_path(self) -> Path:
        """The checkpoint to resume from: `resume` itself, or for 'latest' the one checkpoints/latest
        names; when that pointer is missing (a run stopped between writing a checkpoint and updating
        it), the newest checkpoint that verifies, saying so."""
        c = self.config
        if c.resume != "latest":
            return Path(c.resume)
        latest = checkpoint.latest_checkpoint(self.out_dir)
        if latest is not None and latest.is_dir():
            return latest
        newest = checkpoint.newest_verified_checkpoint(self.out_dir)
        found = checkpoint.list_checkpoints(self.out_dir)
        if newest is None:
            raise checkpoint.CheckpointError(
                f"resume='latest', but {self.out_dir} holds no complete checkpoint to resume from"
                + (f" (none of {', '.join(p.name for p in found)} passes verification)" if found else "")
                + "; start the run without resume, or give resume a checkpoint folder")
        pointer = self.out_dir / "checkpoints" / "latest"
        why = "is missing" if latest is None else f"names {latest.name}, which does not exist"
        self._resume_note = (f"{pointer} {why}; resuming from the newest checkpoint that verifies, {newest.name}")
        if self.is_main:
            print(self._resume_note, file=sys.stderr)
        return newest

    def _data_fingerprints(self) -> dict[str, dict]:
        """Length and sha256 of each split's token ids (computed once), to recognise the data on resume."""
        if self._fingerprints is None:
            self._fingerprints = {"train": _fingerprint(self.train_tokens), "val": _fingerprint(self.val_tokens)}
        return self._fingerprints

    def _check_resume(self, state: dict, path: Path) -> None:
        """Compare the checkpoint's settings and data with this run's: a change that alters the run's
        course is refused unless resume_allow_changes; every change is recorded in the metrics."""
        saved, current = state.get("config", {}), self.config.to_dict()
        ignored = ("resume", "resume_allow_changes")
        changed = {k: [saved[k], v] for k, v in current.items() if k in saved and k not in ignored and saved[k] != v}
        if state.get("world_size", self.world_size) != self.world_size:
            changed["world_size"] = [state["world_size"], self.world_size]
        for split, print_ in (state.get("data") or {}).items():
            if print_ != self._data_fingerprints().get(split):
                changed[f"{split} data"] = [print_, self._data_fingerprints().get(split)]
        breaking = [k for k in changed if k in RUN_SETTINGS or k == "world_size" or k.endswith(" data")]
        if breaking and not self.config.resume_allow_changes:
            def show(k):
                old, new = changed[k]
                if k.endswith(" data"):
                    return (f"the {k} ({old['tokens']:,} tokens, sha256 {old['sha256'][:12]}… in the checkpoint; "
                            f"{new['tokens']:,} tokens, sha256 {new['sha256'][:12]}… now)")
                return f"{k} {old!r} -> {new!r}"
            raise ValueError(f"cannot resume {path} exactly: {'; '.join(map(show, breaking))}. Resume with the "
                             f"checkpoint's settings and data, start a new run in another out_dir, or set "
                             f"resume_allow_changes=true (--resume_allow_changes true) to continue with the "
                             f"change (it is recorded in metrics.json)")
        if changed:
            self.metrics.info.setdefault("resume_changes", []).append(
                {"step": state["step"], "from": str(path), "changed": changed, "allowed": bool(breaking)})

    def _resume(self, path: Path) -> None:
        tensors, state = checkpoint.load_checkpoint(path, self.raw_model)
        self.metrics = Metrics(**state["metrics"])
        self._check_resume(state, path)
        if self._resume_note:
            self.metrics.info.setdefault("resume_notes", []).append(self._resume_note)
        checkpoint.optimizer_from_saved(self.optimizer, tensors, state["optimizer"])
        self.sampler.load_state_dict({k.removeprefix("sampler."): v for k, v in tensors.items() if k.startswith("sampler.")})
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self._saved_step = self.step
        self._saved_rng = (tensors, state["rng"])

    def _restore_rng(self) -> None:
        checkpoint.rng_from_saved(*self._saved_rng)

    def export(self) -> Path:
        """Write the trained weights (in export_dtype) and what is needed to use them into out_dir:
        model.safetensors, config.json (model, tokenizer, settings, the weights' sha256 and a check
        value), samples.txt. The check value is the exported model's loss on a fixed slice of the
        validation tokens, on the CPU in float32: `lmbook.models.check` recomputes it."""
        from lmbook import models

        dtype = DTYPES[self.config.export_dtype]
        path = checkpoint.save_weights(self.raw_model, self.out_dir / "model.safetensors", dtype=dtype)
        # the weights as a reader loads them: cast to export_dtype and back
        exported = architecture(self.config.model).Model(self.model_config)
        checkpoint.load_weights(exported, path)
        exported.eval()
        windows = min(models.CHECK_WINDOWS, (len(self.val_tokens) - 1) // self.config.block_size)
        check = {"windows": windows, "loss": models.check_loss(exported, self.val_tokens, self.config.block_size, windows)}
        info = {"model": self.model_config.to_dict(), "tokenizer": self.meta, "train": self.config.to_dict(),
                "weights_dtype": self.config.export_dtype, "weights_sha256": sha256_of(path), "check": check}
        _write_json(self.out_dir / "config.json", info)
        if self.meta.get("tokenizer") == "char":
            self._write_samples(exported)
        return path

    def _write_samples(self, model: nn.Module, n: int = 3, length: int = 500) -> None:
        """samples.txt: `n` samples of `length` characters, each started from a newline (or id 0)."""
        chars = self.meta["chars"]
        start = torch.tensor([[chars.index("\n") if "\n" in chars else 0]])
        generator = torch.Generator().manual_seed(self.config.seed)
        texts = [tokens.decode_chars(model.generate(start, length, temperature=0.8, generator=generator)[0].tolist(), chars)
                 for _ in range(n)]
        header = (f"{n} samples of {length} characters from {self.out_dir.name}/model.safetensors at step {self.step}, "
                  f"each started from a newline; temperature 0.8, torch.Generator seeded with {self.config.seed}.\n")
        checkpoint.write_atomically(self.out_dir / "samples.txt", header + "\n" + "\n\n==========\n".join(texts) + "\n")

    def _write_metrics(self) -> None:
        _write_json(self.out_dir / "metrics.json", dataclasses.asdict(self.metrics))

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()


def load_run(out_dir: str | os.PathLike, device: str = "cpu", verify: bool = True):
    """The trained GPT (float32) and its tokenizer meta from a run's exported model.safetensors and
    config.json. The weights must match the sha256 recorded in config.json at export; verify=False
    skips that check (for a run exported before the hash was recorded)."""
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").is_file() or not (out_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out_dir} holds no exported run (config.json and model.safetensors); "
                                f"train one with python -m lmbook.trainer --config ...")
    info = checkpoint.read_json(out_dir / "config.json")
    if not isinstance(info, dict) or not isinstance(info.get("model"), dict) or "tokenizer" not in info:
        raise checkpoint.CheckpointError(f"{out_dir / 'config.json'} is not the config.json of an exported run "
                                         f"(it needs 'model' and 'tokenizer')")
    if verify:
        checkpoint.verify_weights(
            out_dir / "model.safetensors", info.get("weights_sha256"),
            fix=f"export it again from the run's last checkpoint (python -m lmbook.trainer --config <its config> "
                f"--out_dir {out_dir} --resume latest: a finished run only exports), or, if you trust the file, "
                f"load_run({str(out_dir)!r}, verify=False)")
    module = architecture(info.get("train", {}).get("model", "gpt"))
    model = module.Model(module.Config.from_dict(info["model"]))
    checkpoint.load_weights(model, out_dir / "model.safetensors")
    return model.to(device).eval(), info["tokenizer"]


# ---- helpers -----------------------------------------------------------------------------------------

ARCHITECTURES = ("gpt", "llama")


def architecture(name: str):
    """The model family `name` names: an object with Config, Model and flops_per_token (lmbook.gpt's
    GPT, chapter 5; lmbook.llama's Llama, chapter 9)."""
    from types import SimpleNamespace

    if name == "llama":
        from lmbook import llama
        return SimpleNamespace(Config=llama.LlamaConfig, Model=llama.Llama, flops_per_token=llama.flops_per_token)
    if name == "gpt":
        from lmbook import gpt
        return SimpleNamespace(Config=gpt.GPTConfig, Model=gpt.GPT, flops_per_token=gpt.flops_per_token)
    raise ValueError(f"model must be one of {list(ARCHITECTURES)}, got {name!r}")


def _setup_distributed(config: TrainConfig) -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, whether we created the process group) from torchrun's variables.
    A run started by torchrun is distributed even with one process (as in nanoGPT), so that
    `torchrun --nproc_per_node 1` exercises the same NCCL/DDP path as eight GPUs do."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0, False
    owns = not dist.is_initialized()
    if owns:
        cuda = torch.cuda.is_available() and config.device != "cpu"
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns


def _load_data(config: TrainConfig, is_main: bool, world_size: int) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """The token files in data_dir, written from `dataset` first if they are missing (by one process)."""
    data_dir = Path(config.data_dir)
    if is_main and not (data_dir / "meta.json").is_file():
        from lmbook.data import lm_split, load_text

        tokens.prepare_char_split(*lm_split(config.dataset), data_dir, vocab_text=load_text(config.dataset))
    if world_size > 1:
        dist.barrier()
    meta = tokens.read_meta(data_dir)
    return (tokens.read_tokens(data_dir / "train.bin"), tokens.read_tokens(data_dir / "val.bin")), meta


def _check_data(data, block_size: int, where: str) -> None:
    """(train, val) token ids: two 1-D integer arrays of ids >= 0, each long enough for one window of
    block_size + 1 tokens (evaluation reads at least one), or an error naming what is wrong."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{where} must be a pair (train_tokens, val_tokens), got {type(data).__name__}")
    for split, toks in zip(("train", "val"), data):
        arr = np.asarray(toks) if not isinstance(toks, Tensor) else toks.numpy()
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"the {split} tokens of {where} must be a 1-D array of integer token ids, got dtype "
                            f"{arr.dtype}, shape {arr.shape}")
        if len(arr) < block_size + 1:
            raise ValueError(f"the {split} split of {where} holds {len(arr)} tokens, fewer than block_size + 1 = "
                             f"{block_size + 1} (one window and the token after it): every {split} loss would be "
                             f"NaN. Lower block_size to at most {max(len(arr) - 1, 1)} or give the {split} split "
                             f"more text")
        if np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
            raise ValueError(f"the {split} tokens of {where} hold the negative id {int(arr.min())}; token ids are >= 0")


def _check_token_ids(train_tokens, val_tokens, vocab_size: int) -> None:
    """Every id in the token files is < vocab_size, or a clear error (a stale data folder, say)."""
    for name, toks in (("train", train_tokens), ("val", val_tokens)):
        high = int(np.max(toks)) if len(toks) else -1
        if high >= vocab_size:
            raise ValueError(f"the {name} tokens hold id {high}, but the model's vocabulary has {vocab_size} "
                             f"ids (0..{vocab_size - 1}); re-encode the data or set vocab_size accordingly")


def _fingerprint(toks) -> dict:
    """Length and sha256 of the token ids (as little-endian uint32, whatever the array's dtype)."""
    h = hashlib.sha256()
    for i in range(0, len(toks), 1 << 20):
        h.update(np.asarray(toks[i : i + (1 << 20)]).astype("<u4").tobytes())
    return {"tokens": int(len(toks)), "sha256": h.hexdigest()}


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("tensorboard=true needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _write_json(path: Path, value: Any) -> None:
    checkpoint.write_atomically(path, json.dumps(value, ensure_ascii=False, indent=1))


# ---- the command line --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """`--config FILE.json` then `--<setting> VALUE` flags (which win); returns the validated config."""
    parser = argparse.ArgumentParser(prog="python -m lmbook.trainer", description="Train a GPT (LM Book, chapter 7).")
    parser.add_argument("--config", help="a JSON file of settings (see lmbook.trainer.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{f.name}", type=_flag_parser(f.name, f.type), default=argparse.SUPPRESS,
                            metavar=str(f.type).replace(" ", ""), help=f"default {f.default!r}")
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    if args.get("config"):
        file = Path(args.pop("config"))
        if not file.is_file():
            parser.error(f"--config {file}: no such file")
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as e:
            parser.error(f"--config {file} is not valid JSON: {e}")
        if not isinstance(values, dict):
            parser.error(f"--config {file} must hold a JSON object of settings, such as {{\"max_steps\": 100}}, "
                         f"got a JSON {type(values).__name__}")
    args.pop("config", None)
    try:
        return TrainConfig.from_dict(values | args)
    except (TypeError, ValueError) as e:
        parser.error(str(e))


def _flag_parser(name: str, annotation: str):
    allowed = [a.strip() for a in str(annotation).split("|")]

    def parse(text: str):
        if "None" in allowed and text.lower() in ("none", "null", "auto"):
            return None
        if "bool" in allowed:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"--{name} takes true or false" + (" or auto" if "None" in allowed else ""))
        if "int" in allowed:
            return int(text)
        if "float" in allowed:
            return float(text)
        return text

    parse.__name__ = str(annotation)  # argparse names the type in its error message
    return parse


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    config = parse_args(argv)
    trainer = Trainer(config)
    trainer.metrics.info["command"] = "python -m lmbook.trainer " + " ".join(argv)
    try:
        metrics = trainer.fit()
    except TrainingInterrupted as stop:
        if trainer.is_main:
            again = resume_command(argv) if stop.path is not None else "python -m lmbook.trainer " + shlex.join(argv)
            print(f"{stop}\n{'resume' if stop.path is not None else 'start again'} with: {again}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    finally:
        trainer.close()
    if trainer.is_main:
        val = metrics.eval_loss["val"][-1]
        print(f"done: {trainer.step} steps, val loss {val:.4f}, {metrics.train_seconds:.1f} s of training, "
              f"metrics in {Path(config.out_dir) / 'metrics.json'}", file=sys.stderr)


def resume_command(argv: list[str]) -> str:
    """The command line that continues the run `argv` started: the same flags, with --resume latest."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            args.append(arg)
    return "python -m lmbook.trainer " + shlex.join([*args, "--resume", "latest"])


if __name__ == "__main__":
    main()
