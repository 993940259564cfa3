"""The book's trained models (lmbook.models): every committed run loads, verifies its weights and gives
its recorded loss on its check slice; a tampered file is refused; each model's config trains end to
end at a test size with the same command."""

import json
import shutil
import subprocess
import sys

import pytest

from lmbook import models, tokens
from lmbook.checkpoint import CheckpointError
from lmbook.data import lm_split

CONFIGS = ["shakespeare_char", "tang_poems_char"]  # the CPU models `make models` trains
COMMITTED = ["shakespeare_char", "shakespeare_char_gpu", "tang_poems_char"]  # the run folders committed in runs/


def test_every_committed_run_is_a_known_model():
    present = sorted(p.parent.name for p in models.runs_dir().glob("*/model.safetensors"))
    assert present == sorted(COMMITTED), f"runs/ holds {present}; this test expects {COMMITTED}"
    assert set(COMMITTED) <= set(models.MODELS)


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_model_gives_its_recorded_check_loss(name):
    recorded, recomputed = models.check(name)
    assert abs(recorded - recomputed) < 1e-4, f"{name}: recorded {recorded}, recomputed {recomputed}"


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_model_says_how_it_was_made(name):
    folder = models.path(name)
    info = json.loads((folder / "config.json").read_text())
    metrics = models.metrics(name)
    assert metrics["info"]["command"].startswith("python -m lmbook.trainer --config configs/")
    assert info["train"]["out_dir"] == f"runs/{name}"
    assert (folder / "samples.txt").read_text().strip()
    # the validation loss reported is the last evaluation, and the model beats a uniform guess by far
    assert metrics["eval_loss"]["val"][-1] < 0.6 * metrics["eval_loss"]["val"][0]


def test_a_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(models.path("tang_poems_char"), tmp_path / "tang_poems_char")
    weights = tmp_path / "tang_poems_char" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("LMBOOK_RUNS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="sha256"):
        models.load("tang_poems_char")


def test_a_missing_model_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LMBOOK_RUNS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="configs/tang_poems_char.json"):
        models.load("tang_poems_char")
    with pytest.raises(ValueError, match="the book's models are"):
        models.load("shakespeare")


@pytest.mark.parametrize("name", CONFIGS)
def test_the_models_command_trains_at_a_test_size(name, tmp_path, monkeypatch):
    tiny = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "16", "--batch_size", "4",
            "--max_steps", "4", "--warmup_steps", "1", "--eval_every", "2", "--eval_windows", "8",
            "--checkpoint_every", "2", "--compile", "false", "--dtype", "float32", "--progress", "false",
            "--data_dir", str(tmp_path / "data"), "--out_dir", str(tmp_path / "runs" / name)]
    done = subprocess.run([sys.executable, "-m", "lmbook.trainer", "--config", f"configs/{name}.json", *tiny],
                          capture_output=True, text=True, timeout=300, cwd=models.runs_dir().parent)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "runs" / name
    assert {"model.safetensors", "config.json", "metrics.json", "samples.txt"} <= {p.name for p in folder.iterdir()}
    monkeypatch.setenv("LMBOOK_RUNS_DIR", str(tmp_path / "runs"))
    model, meta = models.load(name)
    info = json.loads((folder / "config.json").read_text())
    val = tokens.encode_chars(lm_split(info["train"]["dataset"])[1], meta["chars"])
    assert abs(models.check_loss(model, val, 16, info["check"]["windows"]) - info["check"]["loss"]) < 1e-4
