"""lmbook.trainer: the schedule at its boundaries, weight-decay groups, gradient accumulation equals one
big batch, resuming reproduces the uninterrupted run bit for bit, NaN detection names the step, the
command line validates its config, MFU peaks, and a run exports a model one can sample from."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from lmbook import checkpoint, trainer
from lmbook.gpt import GPT, GPTConfig
from lmbook.tokens import prepare_chars
from lmbook.trainer import Trainer, TrainConfig, decay_split, lr_schedule, parse_args, peak_tflops


TEXT = "".join(f"{w} " for i in range(400) for w in ("the", "cat", "sat", "on", "a", "mat", str(i % 7)))


@pytest.fixture
def data_dir(tmp_path):
    prepare_chars(TEXT, tmp_path / "data")
    return tmp_path / "data"


def tiny(tmp_path, data_dir, **overrides) -> TrainConfig:
    values = dict(data_dir=str(data_dir), out_dir=str(tmp_path / "run"), n_layer=1, n_head=2, n_embd=16,
                  block_size=16, dropout=0.0, batch_size=4, max_steps=12, warmup_steps=3, lr=3e-3, min_lr=3e-4,
                  eval_every=6, eval_windows=32, log_every=4, progress=False, seed=0,
                  dtype="float32")  # exact comparisons: float32 (auto is bfloat16 on CPUs with bf16 instructions)
    return TrainConfig(**(values | overrides))


# ---- the schedule and the optimizer ------------------------------------------------------------------

def test_lr_schedule_at_its_boundaries():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_schedule(0, **kw) == pytest.approx(0.1)          # the first step already moves (lr / W)
    assert lr_schedule(9, **kw) == 1.0                         # the last warm-up step reaches lr
    assert lr_schedule(10, **kw) == 1.0                        # the cosine starts at lr
    assert lr_schedule(60, **kw) == pytest.approx(0.55)        # halfway: the mean of lr and min_lr
    assert lr_schedule(110, **kw) == pytest.approx(0.1)        # ends at min_lr
    assert lr_schedule(10_000, **kw) == 0.1                    # and stays there
    values = [lr_schedule(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))     # decays monotonically
    assert lr_schedule(0, lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=5) == 1.0  # no warm-up
    assert lr_schedule(4, lr=1.0, min_lr=0.0, warmup_steps=5, max_steps=5) == 1.0   # warm-up only


def test_weight_decay_only_on_weight_matrices():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=True))
    decay, no_decay = decay_split(model)
    params = dict(model.named_parameters())
    assert set(decay) | set(no_decay) == set(params) and not set(decay) & set(no_decay)
    assert all(params[n].dim() == 2 for n in decay)
    assert all(n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) for n in decay)
    assert len(decay) == 2 * 4  # four linear layers a block
    assert {"transformer.wte.weight", "transformer.wpe.weight"} <= set(no_decay)  # embeddings (wte = lm_head)
    assert all(n.endswith("bias") or ".ln_" in n or "wte" in n or "wpe" in n for n in no_decay)
    opt = trainer.make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_params()


# ---- training --------------------------------------------------------------------------------------

def test_a_run_learns_and_exports_a_model_one_can_sample(tmp_path, data_dir):
    config = tiny(tmp_path, data_dir, max_steps=40, eval_every=20, lr=1e-2)
    metrics = Trainer(config).fit()
    assert metrics.step == list(range(40)) and len(metrics.train_loss) == 40
    assert metrics.eval_step == [0, 20, 40]
    assert metrics.eval_loss["val"][-1] < metrics.eval_loss["val"][0] - 0.5
    assert metrics.eval_loss["val"][0] == pytest.approx(math.log(len(set(TEXT))), rel=0.05)  # untrained: ln V
    assert len(metrics.tokens_per_second) == 40 // 4 and metrics.mfu == [None] * 10  # no known peak on a CPU
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["train_loss"] == metrics.train_loss
    model, meta = trainer.load_run(tmp_path / "run")
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 20, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 21) and len(meta["chars"]) == meta["vocab_size"]


def test_gradient_accumulation_equals_one_big_batch(tmp_path, data_dir):
    big = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "a"), batch_size=8, grad_accum=1, max_steps=5))
    acc = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "b"), batch_size=2, grad_accum=4, max_steps=5))
    mb, ma = big.fit(), acc.fit()
    np.testing.assert_allclose(ma.train_loss, mb.train_loss, rtol=1e-5)
    for p, q in zip(big.raw_model.parameters(), acc.raw_model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, data_dir, monkeypatch):
    settings = dict(dropout=0.1, checkpoint_every=6, max_steps=12)  # dropout: the RNG state must resume too
    straight = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "straight"), **settings))
    expected = straight.fit()

    interrupted = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "crash"), **settings))
    real_step = Trainer.train_step

    def crash_at_step_8(self, batches):
        if self.step == 8:
            raise KeyboardInterrupt("the machine went away")
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert checkpoint.latest_checkpoint(tmp_path / "crash").name == "step-000006"

    resumed_trainer = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "crash"), resume="latest", **settings))
    assert resumed_trainer.step == 6
    resumed = resumed_trainer.fit()
    assert resumed.train_loss == expected.train_loss  # exactly, every step
    assert resumed.eval_loss == expected.eval_loss
    for p, q in zip(straight.raw_model.parameters(), resumed_trainer.raw_model.parameters()):
        assert torch.equal(p, q)


def test_token_ids_are_checked_once_not_on_every_forward(tmp_path, data_dir):
    trainer = Trainer(tiny(tmp_path, data_dir))
    assert trainer.raw_model.check_inputs is False  # no GPU sync per step: the data was checked up front
    meta = json.loads((data_dir / "meta.json").read_text())
    (data_dir / "meta.json").write_text(json.dumps(meta | {"vocab_size": meta["vocab_size"] - 3}))
    with pytest.raises(ValueError, match=r"train tokens hold id \d+, but the model's vocabulary has"):
        Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "other")))


def test_a_new_run_refuses_a_folder_with_checkpoints(tmp_path, data_dir):
    Trainer(tiny(tmp_path, data_dir, max_steps=4)).fit()
    with pytest.raises(ValueError, match="already holds checkpoints.*resume='latest'"):
        Trainer(tiny(tmp_path, data_dir, max_steps=4))


class NaNAt(nn.Module):
    """A GPT whose loss becomes NaN on forward call number `bad_call` (counting from 0)."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.gpt, self.calls, self.bad_call = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16)), 0, bad_call

    def forward(self, idx, targets=None):
        logits, loss = self.gpt(idx, targets)
        if self.training:
            if self.calls == self.bad_call:
                loss = loss * float("nan")
            self.calls += 1
        return logits, loss


def test_a_nan_loss_stops_the_run_naming_the_step(tmp_path, data_dir):
    config = tiny(tmp_path, data_dir, max_steps=20, log_every=10, eval_every=10, grad_accum=2)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3\b.*Lower lr"):
        Trainer(config, model=NaNAt(bad_call=7)).fit()  # two micro-batches a step: call 7 is step 3
    assert not checkpoint.list_checkpoints(tmp_path / "run")  # nothing saved from a broken run


def test_float16_needs_a_gpu(tmp_path, data_dir):
    with pytest.raises(ValueError, match="float16.*CUDA"):
        Trainer(tiny(tmp_path, data_dir, dtype="float16"))


def test_peak_flops_lookup(monkeypatch):
    assert peak_tflops(torch.device("cpu")) is None
    names = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756.5, "NVIDIA H200": 989.4,
             "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA L40S": 362.1, "NVIDIA L4": 121.0, "Some New GPU": None}
    for name, peak in names.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert peak_tflops(torch.device("cuda")) == peak, name
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_tflops(torch.device("cuda"), "tf32") == 494.7


# ---- the command line ------------------------------------------------------------------------------

def write_config(tmp_path, **values):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return str(path)


def test_compile_default_is_on_for_cuda_and_for_long_cpu_runs_with_a_compiler(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long, short = trainer.COMPILE_MIN_STEPS, trainer.COMPILE_MIN_STEPS - 1
    monkeypatch.setattr(trainer.shutil, "which", lambda name: "/usr/bin/" + name)
    assert trainer.resolve_compile(TrainConfig(max_steps=long), cpu)
    assert not trainer.resolve_compile(TrainConfig(max_steps=short), cpu)       # compilation would not pay
    assert trainer.resolve_compile(TrainConfig(max_steps=short), cuda)
    assert not trainer.resolve_compile(TrainConfig(max_steps=long, compile=False), cpu)
    assert trainer.resolve_compile(TrainConfig(max_steps=short, compile=True), cpu)
    monkeypatch.setattr(trainer.shutil, "which", lambda name: None)              # no C++ compiler for inductor
    monkeypatch.delenv("CXX", raising=False)
    assert not trainer.resolve_compile(TrainConfig(max_steps=long), cpu)


def test_flags_override_the_config_file(tmp_path):
    path = write_config(tmp_path, max_steps=100, warmup_steps=5, lr=0.01, compile=False)
    config = parse_args(["--config", path, "--max_steps", "7", "--dropout", "0", "--compile", "auto", "--bias", "true"])
    assert (config.max_steps, config.lr, config.dropout, config.compile, config.bias) == (7, 0.01, 0.0, None, True)


@pytest.mark.parametrize("values, flags, message", [
    ({"max_step": 10}, [], "unknown setting 'max_step' \\(did you mean 'max_steps'\\?\\)"),
    ({"lr": "fast"}, [], "'lr' must be float, got str 'fast'"),
    ({"batch_size": 2.5}, [], "'batch_size' must be int"),
    ({"compile": "yes"}, [], "'compile' must be bool or None"),
    ({"n_embd": 10, "n_head": 3}, [], "n_embd=10 must be a multiple of n_head=3"),
    ({"warmup_steps": 50, "max_steps": 10}, [], "warmup_steps=50 must not exceed max_steps=10"),
    ({"dtype": "fp8"}, [], "dtype must be one of"),
    ({"min_lr": 1.0, "lr": 0.1}, [], "min_lr <= lr"),
    ({}, ["--max_steps", "many"], "--max_steps: invalid int value: 'many'"),
    ({}, ["--tf32", "maybe"], "--tf32 takes true or false"),
    ({}, ["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag"),
])
def test_bad_configs_are_clear_errors(tmp_path, capsys, values, flags, message):
    with pytest.raises(SystemExit):
        parse_args(["--config", write_config(tmp_path, **values), *flags])
    assert __import__("re").search(message, capsys.readouterr().err)


def test_config_file_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "missing.json")])
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{max_steps: 10}")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "bad.json")])
    assert "not valid JSON" in capsys.readouterr().err


def test_the_command_line_trains(tmp_path, data_dir, capsys):
    path = write_config(tmp_path, **tiny(tmp_path, data_dir, max_steps=6).to_dict())
    trainer.main(["--config", path, "--max_steps", "4", "--eval_every", "2"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == [0, 1, 2, 3] and metrics["eval_step"] == [0, 2, 4]
    assert "done: 4 steps" in capsys.readouterr().err


def test_the_shipped_configs_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "configs").glob("*.json"))
    assert files, "configs/ holds no JSON config"
    for file in files:
        parse_args(["--config", str(file)])


# ---- runs that are not lost -----------------------------------------------------------------------

def test_a_validation_split_too_short_for_one_window_is_refused_at_start(tmp_path):
    tokens_dir = tmp_path / "short"
    prepare_chars(TEXT[:600], tokens_dir)  # 60 validation characters
    config = tiny(tmp_path, tokens_dir, block_size=64, n_embd=16)
    with pytest.raises(ValueError, match=r"the val split of .* holds 60 tokens, fewer than block_size \+ 1 = 65"):
        Trainer(config)
    Trainer(tiny(tmp_path, tokens_dir, block_size=32))  # 60 tokens hold a window of 33


def test_the_defaults_and_the_shipped_configs_checkpoint_periodically_and_keep_two():
    from pathlib import Path

    assert TrainConfig().checkpoint_every > 0 and TrainConfig().keep_checkpoints >= 2
    for file in sorted((Path(__file__).parent.parent / "configs").glob("*.json")):
        config = parse_args(["--config", str(file)])
        assert 0 < config.checkpoint_every <= config.max_steps // 2, file.name
        assert config.keep_checkpoints >= 2, file.name


def test_resume_falls_back_to_the_newest_verified_checkpoint_when_latest_is_missing(tmp_path, data_dir, capsys):
    settings = dict(checkpoint_every=4, keep_checkpoints=3, max_steps=12, dropout=0.1)
    expected = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "straight"), **settings)).fit()
    crashed = Trainer(tiny(tmp_path, data_dir, **settings | {"max_steps": 12}))
    crashed.fit()
    root = tmp_path / "run" / "checkpoints"
    (root / "latest").unlink()  # as if the run died between renaming step-000012 into place and updating latest
    newest = root / "step-000012" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # and the newest is damaged too: step-000008 is the one to use
    with pytest.raises(ValueError, match="already holds checkpoints"):  # a fresh run still refuses the folder
        Trainer(tiny(tmp_path, data_dir, **settings))
    resumed = Trainer(tiny(tmp_path, data_dir, resume="latest", **settings))
    assert resumed.step == 8
    assert "latest is missing; resuming from the newest checkpoint that verifies, step-000008" in capsys.readouterr().err
    assert resumed.metrics.info["resume_notes"] == [
        f"{root / 'latest'} is missing; resuming from the newest checkpoint that verifies, step-000008"]
    assert resumed.fit().train_loss == expected.train_loss


def test_resume_with_no_checkpoint_at_all_says_so(tmp_path, data_dir):
    with pytest.raises(checkpoint.CheckpointError, match="holds no complete checkpoint to resume from; start the run"):
        Trainer(tiny(tmp_path, data_dir, resume="latest"))


def test_resume_refuses_settings_and_data_that_change_the_run_unless_allowed(tmp_path, data_dir):
    Trainer(tiny(tmp_path, data_dir, checkpoint_every=6, max_steps=6)).fit()
    for change, message in [(dict(batch_size=8), "batch_size 4 -> 8"), (dict(lr=1e-2), "lr 0.003 -> 0.01"),
                            (dict(seed=1), "seed 0 -> 1"), (dict(max_steps=24), "max_steps 6 -> 24"),
                            (dict(grad_clip=0.5), "grad_clip 1.0 -> 0.5")]:
        with pytest.raises(ValueError, match=rf"cannot resume .*step-000006 exactly: {message}.*resume_allow_changes"):
            Trainer(tiny(tmp_path, data_dir, **(dict(checkpoint_every=6, max_steps=6, resume="latest") | change)))
    other = tmp_path / "other_data"
    prepare_chars(TEXT.replace("cat", "act"), other)  # the same characters, other text
    with pytest.raises(ValueError, match=r"the train data \(8,\d+ tokens, sha256 .* in the checkpoint"):
        Trainer(tiny(tmp_path, other, checkpoint_every=6, max_steps=6, resume="latest"))
    # allowed: the change goes ahead and is recorded, as is a change that does not alter the run
    t = Trainer(tiny(tmp_path, data_dir, checkpoint_every=6, max_steps=12, eval_every=4, resume="latest",
                     resume_allow_changes=True))
    assert t.metrics.info["resume_changes"] == [{"step": 6, "from": str(tmp_path / "run" / "checkpoints" / "step-000006"),
                                                 "changed": {"max_steps": [6, 12], "eval_every": [6, 4]},
                                                 "allowed": True}]
    t.fit()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["info"]["resume_changes"][0]["changed"]["max_steps"] == [6, 12]
    logged = Trainer(tiny(tmp_path, data_dir, checkpoint_every=6, max_steps=12, log_every=2, resume="latest"))
    assert logged.metrics.info["resume_changes"][-1]["changed"] == {"log_every": [4, 2], "eval_every": [4, 6]}


def test_ctrl_c_saves_a_checkpoint_then_stops_and_the_resumed_run_is_exact(tmp_path, data_dir, monkeypatch):
    import os
    import signal

    settings = dict(dropout=0.1, checkpoint_every=5, max_steps=12)
    expected = Trainer(tiny(tmp_path, data_dir, out_dir=str(tmp_path / "straight"), **settings)).fit()
    real_step = Trainer.train_step

    def interrupted_at_step_7(self, batches):
        if self.step == 7:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step finishes, then the run stops
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_7)
    stopped = Trainer(tiny(tmp_path, data_dir, **settings))
    with pytest.raises(trainer.TrainingInterrupted, match=r"SIGTERM stopped the run at step 8: checkpoint saved in "
                                                            r".*step-000008; resume with resume='latest'"):
        stopped.fit()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only there while fitting
    assert checkpoint.latest_checkpoint(tmp_path / "run").name == "step-000008"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == list(range(8))
    resumed = Trainer(tiny(tmp_path, data_dir, resume="latest", **settings))
    assert resumed.fit().train_loss == expected.train_loss


def test_leftovers_of_crashed_writes_are_removed_and_files_get_normal_permissions(tmp_path, data_dir):
    import os
    import stat

    run = tmp_path / "run"
    (run / "checkpoints" / ".step-000004-abcd.part").mkdir(parents=True)
    (run / "checkpoints" / ".step-000004-abcd.part" / "model.safetensors").write_bytes(b"x" * 1000)
    (run / "checkpoints" / ".step-000002-efgh.old").mkdir()
    (run / "metrics.json1234.part").write_text("{")
    (run / ".model.safetensors.5678.part").write_bytes(b"x")
    old_umask = os.umask(0o022)
    try:
        Trainer(tiny(tmp_path, data_dir, checkpoint_every=2, max_steps=4)).fit()
    finally:
        os.umask(old_umask)
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith((".part", ".old"))]
    assert leftovers == []
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"metrics.json", "config.json", "model.safetensors", "latest", "manifest.json"} <= {p.name for p in files}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    for p in (run / "checkpoints").iterdir():
        if p.is_dir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o755, p


def test_exported_weights_are_verified_against_their_recorded_hash(tmp_path, data_dir):
    Trainer(tiny(tmp_path, data_dir, max_steps=4)).fit()
    weights = tmp_path / "run" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 100, len(data)):  # 100 flipped bytes inside the tensors
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="does not match the sha256 recorded when it was written"):
        trainer.load_run(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["weights_sha256"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.CheckpointError, match=r"no sha256 is recorded .* --resume latest"):
        trainer.load_run(tmp_path / "run")
    trainer.load_run(tmp_path / "run", verify=False)  # the explicit way out, for a file one trusts


def test_negative_token_ids_and_float_tokens_are_refused_at_start(tmp_path, data_dir):
    good = np.arange(200) % 7
    with pytest.raises(ValueError, match="the val tokens of data hold the negative id -1"):
        Trainer(tiny(tmp_path, data_dir), data=(good, good - 1))
    with pytest.raises(TypeError, match="the train tokens of data must be a 1-D array of integer token ids"):
        Trainer(tiny(tmp_path, data_dir), data=(good / 2, good))


@pytest.mark.parametrize("setting", ["grad_clip", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_grad_clip_and_weight_decay_must_be_finite(tmp_path, setting, value):
    with pytest.raises(ValueError, match=f"{setting} must be a finite number >= 0"):
        TrainConfig(**{setting: value}).validate()


def test_a_config_file_holding_a_list_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "list.json")])
    assert "list.json must hold a JSON object of settings" in capsys.readouterr().err


def test_resume_command_keeps_the_flags_and_asks_for_latest():
    assert trainer.resume_command(["--config", "c.json", "--max_steps", "9"]) == \
        "python -m lmbook.trainer --config c.json --max_steps 9 --resume latest"
    assert trainer.resume_command(["--resume", "runs/x/checkpoints/step-000010", "--out_dir", "my run"]) == \
        "python -m lmbook.trainer --out_dir 'my run' --resume latest"
