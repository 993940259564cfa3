"""A real `python -m lmbook.trainer` process, killed: with SIGKILL at random moments (mid-step,
mid-checkpoint, between a checkpoint's rename and the `latest` pointer, mid-export) it loses no more
than the steps since its last checkpoint, and the resumed run equals the uninterrupted one bit for
bit; with SIGINT it saves a checkpoint first and prints the command that resumes it."""

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmbook.tokens import prepare_chars
from lmbook.trainer import Trainer, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"{w} " for i in range(400) for w in ("the", "cat", "sat", "on", "a", "mat", str(i % 7)))
SETTINGS = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.1, batch_size=4, max_steps=60,
                warmup_steps=5, lr=3e-3, min_lr=3e-4, eval_every=20, eval_windows=16, log_every=10,
                checkpoint_every=3, keep_checkpoints=2, progress=False, seed=0, device="cpu", export_dtype="float32")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run (in this process: the same code and, with one thread, the same arithmetic)."""
    folder = tmp_path_factory.mktemp("straight")
    prepare_chars(TEXT, folder / "data")
    config = TrainConfig(**SETTINGS, data_dir=str(folder / "data"), out_dir=str(folder / "run"))
    Trainer(config).fit()
    return folder


def write_config(folder: Path, straight: Path) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(SETTINGS | {"data_dir": str(straight / "data"), "out_dir": str(folder / "run")}))
    return path


def start(args: list[str]) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "lmbook.trainer", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_a_checkpoint(run: Path, proc: subprocess.Popen, after: int = -1, timeout: float = 120) -> None:
    """Until the run has a checkpoint newer than step `after` (or the process has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.removeprefix("step-")) for p in (run / "checkpoints").glob("step-*")]
        if steps and max(steps) > after:
            return
        time.sleep(0.01)
    assert proc.poll() is not None, "no checkpoint appeared"


def newest_step(run: Path) -> int:
    return max((int(p.name.removeprefix("step-")) for p in (run / "checkpoints").glob("step-*")), default=-1)


def assert_same_run(run: Path, straight_run: Path) -> None:
    got, want = (json.loads((r / "metrics.json").read_text()) for r in (run, straight_run))
    assert got["step"] == want["step"] and got["train_loss"] == want["train_loss"]  # every step, exactly
    assert got["eval_step"] == want["eval_step"] and got["eval_loss"] == want["eval_loss"]
    a, b = load_file(run / "model.safetensors"), load_file(straight_run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("seed, n_kills", [(0, 1), (1, 1), (2, 2)])
def test_sigkill_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, straight, seed, n_kills):
    rng = random.Random(seed)
    config = write_config(tmp_path, straight)
    run = tmp_path / "run"
    kills = 0
    args = ["--config", str(config)]
    while kills < n_kills:  # a second kill hits a resumed process
        proc = start(args)
        wait_for_a_checkpoint(run, proc, after=newest_step(run))
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the next few steps and checkpoint writes
        if proc.poll() is not None:
            break  # finished before the kill: the rest of the test still checks the result
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        args = ["--config", str(config), "--resume", "latest"]
    finish = start(args)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err[-3000:]
    assert "done: 60 steps" in err
    assert_same_run(run, straight / "run")
    assert not [p for p in run.rglob("*") if p.name.endswith((".part", ".old"))]  # crash leftovers cleaned up
    assert kills >= 1


def test_sigint_saves_a_checkpoint_and_prints_how_to_resume(tmp_path, straight):
    config = write_config(tmp_path, straight)
    run = tmp_path / "run"
    proc = start(["--config", str(config)])
    wait_for_a_checkpoint(run, proc, after=3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    line = next(line for line in err.splitlines() if "SIGINT stopped the run at step" in line)
    step = int(line.split("at step ")[1].split(":")[0])
    assert f"checkpoint saved in {run / 'checkpoints' / f'step-{step:06d}'}" in line
    assert (run / "checkpoints" / f"step-{step:06d}" / "manifest.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["step"] == list(range(step))
    command = next(line for line in err.splitlines() if line.startswith("resume with: "))
    assert command == f"resume with: python -m lmbook.trainer --config {shlex.quote(str(config))} --resume latest"
    resumed = start(shlex.split(command.removeprefix("resume with: python -m lmbook.trainer ")))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert_same_run(run, straight / "run")
