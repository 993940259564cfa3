"""Every CUDA-only path of lmbook.trainer (chapter 7), exercised once in about a minute.

A CPU runs none of these lines, so CI cannot check them; this script does, on any CUDA GPU:

    python bench/gpu_smoke.py        # writes bench/results/gpu_smoke.txt (the log, with the GPU's name)

Each check prints PASS or FAIL and what it measured; the script exits 1 if any failed, and 0 without
doing anything when torch sees no GPU. The checks:

 1. bf16 autocast: a short run learns (the loss falls), the weights stay float32.
 2. fp16 with loss scaling (GradScaler): the scale is in use and the loss falls.
 3. fused AdamW: one step equals the for-each implementation to float32 rounding.
 4. torch.compile: the compiled GPT gives the eager logits (fp32) and trains under bf16.
 5. flash attention: F.scaled_dot_product_attention's flash kernel equals chapter 4's written-out
    attention, forward and backward (bf16 tolerance).
 6. pinned, non-blocking copies: the batch sampler's batches arrive on the GPU equal to the CPU ones.
 7. NCCL: `torchrun --nproc_per_node 1 -m lmbook.trainer` trains through DistributedDataParallel.
 8. a checkpoint saved on the GPU resumes bit for bit (deterministic algorithms on).
 9. out of memory: a run too big for (a capped share of) the GPU stops with the trainer's advice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (check 8); set before CUDA starts

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lmbook import attention, tokens  # noqa: E402
from lmbook.gpt import GPT, GPTConfig  # noqa: E402
from lmbook.trainer import Trainer, TrainConfig  # noqa: E402

TEXT = "".join(f"{w} " for i in range(3000) for w in ("to", "be", "or", "not", "that", "is", "the", str(i % 9)))
lines: list[str] = []
results: dict[str, bool] = {}


def say(text: str = "") -> None:
    print(text, flush=True)
    lines.append(text)


def tiny(out_dir: Path, data_dir: Path, **overrides) -> TrainConfig:
    values = dict(data_dir=str(data_dir), out_dir=str(out_dir), n_layer=2, n_head=2, n_embd=64, block_size=32,
                  dropout=0.1, batch_size=16, max_steps=60, warmup_steps=5, lr=3e-3, min_lr=3e-4, eval_every=30,
                  eval_windows=64, log_every=10, progress=False, seed=0, device="cuda", compile=False)
    return TrainConfig(**(values | overrides))


def check(name: str):
    def wrap(fn):
        def run(*args):
            start = time.perf_counter()
            try:
                detail = fn(*args)
                results[name] = True
                say(f"PASS  {name} ({time.perf_counter() - start:.1f} s): {detail}")
            except Exception as e:  # a failed check is reported and the others still run
                results[name] = False
                say(f"FAIL  {name} ({time.perf_counter() - start:.1f} s): {type(e).__name__}: {e}")
                say("      " + traceback.format_exc().strip().replace("\n", "\n      ")[-1500:])
        return run
    return wrap


def falls(losses: list[float]) -> bool:
    return np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


@check("bf16 autocast")
def bf16(tmp: Path, data: Path) -> str:
    t = Trainer(tiny(tmp / "bf16", data, dtype="bfloat16"))
    m = t.fit()
    assert m.info["dtype"] == "bfloat16" and not t.scaler.is_enabled()
    assert all(p.dtype == torch.float32 for p in t.raw_model.parameters()), "autocast must leave the weights fp32"
    assert falls(m.train_loss), f"loss did not fall: {m.train_loss[:3]} ... {m.train_loss[-3:]}"
    return f"loss {m.train_loss[0]:.3f} -> {m.train_loss[-1]:.3f}, val {m.eval_loss['val'][-1]:.3f}"


@check("fp16 + GradScaler")
def fp16(tmp: Path, data: Path) -> str:
    t = Trainer(tiny(tmp / "fp16", data, dtype="float16"))
    m = t.fit()
    assert t.scaler.is_enabled(), "float16 must scale the loss"
    scale = t.scaler.get_scale()
    assert falls(m.train_loss), f"loss did not fall: {m.train_loss[:3]} ... {m.train_loss[-3:]}"
    return f"loss {m.train_loss[0]:.3f} -> {m.train_loss[-1]:.3f}, loss scale now {scale:g}"


@check("fused AdamW")
def fused(tmp: Path, data: Path) -> str:
    t = Trainer(tiny(tmp / "fused", data))
    assert t.optimizer.defaults.get("fused"), "the trainer must fuse AdamW on CUDA by default"
    # the same weights and the same gradients (random, well above eps: Adam divides by sqrt(v) + eps,
    # which magnifies rounding differences in gradients near zero), three steps of each implementation
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = [torch.randn(256, 256, device="cuda", generator=gen) for _ in range(3)]
    b = [p.clone() for p in a]
    grads = [[torch.randn(256, 256, device="cuda", generator=gen) for _ in a] for _ in range(3)]
    for params, fused_kernel in ((a, True), (b, False)):
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, fused=fused_kernel, foreach=None if fused_kernel else True)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
    diff = max((p - q).abs().max().item() for p, q in zip(a, b))
    assert diff < 1e-6, f"fused and for-each AdamW differ by {diff}"
    return f"3 steps on the same gradients, max |fused - foreach| = {diff:.2e}"


@check("torch.compile")
def compiled(tmp: Path, data: Path) -> str:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=64)).cuda().eval()
    model.check_inputs = False
    x = torch.randint(0, 64, (4, 32), device="cuda")
    with torch.no_grad():
        eager = model(x)[0]
        fast = torch.compile(model)(x)[0]
    diff = (eager - fast).abs().max().item()
    assert diff < 1e-4, f"compiled logits differ from eager by {diff}"
    t = Trainer(tiny(tmp / "compile", data, compile=True, dtype="bfloat16"))
    m = t.fit()
    assert m.info["compile"] and falls(m.train_loss)
    return f"fp32 logits max |compiled - eager| = {diff:.1e}; bf16 compiled run loss {m.train_loss[0]:.3f} -> {m.train_loss[-1]:.3f}, first step {m.info['first_step_seconds']:.1f} s"


@check("flash attention")
def flash(tmp: Path, data: Path) -> str:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # the flash kernel or an error, no silent fallback
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y.float().square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    q2, k2, v2 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = attention.scaled_dot_product_attention(q2, k2, v2, is_causal=True)
    ref.square().sum().backward()
    fwd = (y.float() - ref).abs().max().item()
    bwd = max((g.float() - t.grad).abs().max().item() / t.grad.abs().max().item() for g, t in zip(grads, (q2, k2, v2)))
    assert fwd < 2e-2 and bwd < 5e-2, f"flash vs written-out attention: forward {fwd}, backward (relative) {bwd}"
    return f"bf16 flash kernel vs chapter 4's fp32 attention: forward max diff {fwd:.1e}, backward max relative diff {bwd:.1e}"


@check("pinned non-blocking copies")
def pinned(tmp: Path, data: Path) -> str:
    toks = tokens.read_tokens(data / "train.bin")
    on_gpu = tokens.BatchSampler(toks, 32, 8, seed=5, device="cuda").next_step()
    on_cpu = tokens.BatchSampler(toks, 32, 8, seed=5, device="cpu").next_step()
    assert on_gpu[0][0].is_cuda and torch.equal(on_gpu[0][0].cpu(), on_cpu[0][0]) and torch.equal(on_gpu[0][1].cpu(), on_cpu[0][1])
    x = torch.zeros(4)
    assert x.pin_memory().is_pinned()
    return "GPU batches equal the CPU ones; pin_memory() gives page-locked memory"


@check("NCCL under torchrun")
def nccl(tmp: Path, data: Path) -> str:
    config = tiny(tmp / "ddp", data, max_steps=20, eval_every=10).to_dict()
    file = tmp / "ddp.json"
    file.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           "-m", "lmbook.trainer", "--config", str(file)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads((tmp / "ddp" / "metrics.json").read_text())
    assert got["info"]["backend"] == "nccl" and got["info"]["world_size"] == 1 and len(got["train_loss"]) == 20
    return f"1 process, backend nccl, DistributedDataParallel: val {got['eval_loss']['val'][-1]:.3f} after 20 steps"


@check("checkpoint on GPU resumes bit for bit")
def resume(tmp: Path, data: Path) -> str:
    torch.use_deterministic_algorithms(True)
    try:
        settings = dict(checkpoint_every=30, keep_checkpoints=2, dtype="bfloat16", attention="sdpa")
        straight = Trainer(tiny(tmp / "straight", data, **settings))
        expected = straight.fit()
        resumed = Trainer(tiny(tmp / "resumed", data, resume=str(tmp / "straight" / "checkpoints" / "step-000030"), **settings))
        assert resumed.step == 30
        got = resumed.fit()
    finally:
        torch.use_deterministic_algorithms(False)
    same_loss = got.train_loss == expected.train_loss
    diff = max((p - q).abs().max().item() for p, q in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()))
    assert same_loss and diff == 0, f"resumed run differs: losses equal {same_loss}, max weight diff {diff}"
    return "60 steps straight == 30 steps, checkpoint, 30 resumed steps: every loss and every weight equal"


@check("out-of-memory message")
def oom(tmp: Path, data: Path) -> str:
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 4e9 / total))  # a 4 GB GPU, whatever this one has
    try:
        t = Trainer(tiny(tmp / "oom", data, n_layer=4, n_embd=1024, n_head=8, block_size=1024, batch_size=512,
                         attention="lmbook", dtype="float32", max_steps=2, warmup_steps=1))
        t.fit()
        raise AssertionError("the run did not run out of memory")
    except RuntimeError as e:
        message = str(e)
        assert "out of GPU memory" in message and "Lower batch_size" in message, message
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    return f"the trainer says: {message[:160]}..."


def main() -> None:
    if not torch.cuda.is_available():
        print("gpu_smoke: torch sees no CUDA GPU; nothing to check here")
        return
    props = torch.cuda.get_device_properties(0)
    say(f"device: {props.name}, compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB | "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"bf16 {torch.cuda.is_bf16_supported()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokens.prepare_chars(TEXT, tmp / "data")
        for fn in (bf16, fp16, fused, compiled, flash, pinned, nccl, resume, oom):
            fn(tmp, tmp / "data")
    failed = [n for n, ok in results.items() if not ok]
    say(f"{len(results) - len(failed)} of {len(results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    out = ROOT / "bench" / "results" / "gpu_smoke.txt"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"(written to {out.relative_to(ROOT)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
