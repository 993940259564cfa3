"""lmbook.checkpoint: weights and training state round-trip without pickle; writes are atomic; a
truncated or corrupted checkpoint is refused naming the file, and the previous one stays usable."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from lmbook import checkpoint
from lmbook.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class Tied(nn.Module):
    """An embedding tied to the output layer, as in GPT."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.emb.weight


def trained_optimizer(model):
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.norm(model.emb(torch.tensor([1, 2]))).sum().backward()
    opt.step()
    return opt


def test_weights_round_trip_with_tied_tensors(tmp_path):
    torch.manual_seed(0)
    a, b = Tied(), Tied()
    checkpoint.save_weights(a, tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["emb.weight", "norm.bias", "norm.weight"]  # the tied matrix once
    checkpoint.load_weights(b, tmp_path / "w.safetensors")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert b.head.weight is b.emb.weight  # still tied


def test_bfloat16_export_loads_into_float32(tmp_path):
    a, b = Tied(), Tied()
    checkpoint.save_weights(a, tmp_path / "w.safetensors", dtype=torch.bfloat16)
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert f.get_tensor("emb.weight").dtype == torch.bfloat16
    checkpoint.load_weights(b, tmp_path / "w.safetensors")
    assert b.emb.weight.dtype == torch.float32
    torch.testing.assert_close(b.emb.weight, a.emb.weight, atol=0, rtol=2**-8)  # bf16 keeps 8 bits


def test_optimizer_and_rng_round_trip(tmp_path):
    model = Tied()
    opt = trained_optimizer(model)
    opt_tensors, opt_state = checkpoint.optimizer_to_save(opt)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    rng_tensors, rng_state = checkpoint.rng_to_save()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path, 3, model, opt_tensors | rng_tensors, {"optimizer": opt_state, "rng": rng_state})

    fresh = Tied()
    tensors, state = load_checkpoint(tmp_path, fresh)
    assert state["step"] == 3
    json.dumps(state)  # plain JSON, nothing pickled
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    checkpoint.optimizer_from_saved(opt2, tensors, state["optimizer"])
    for s1, s2 in zip(opt.state.values(), opt2.state.values()):
        assert all(torch.equal(s1[k], s2[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert opt2.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    checkpoint.rng_from_saved(tensors, state["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_only_the_newest_are_kept_and_latest_points_to_the_newest(tmp_path):
    model = Tied()
    for step in (1, 2, 3, 10):
        save_checkpoint(tmp_path, step, model, {}, {}, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000003", "step-000010"]
    assert checkpoint.latest_checkpoint(tmp_path).name == "step-000010"
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folders left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_checkpoint_is_refused_and_the_previous_one_kept(tmp_path, damage):
    model = Tied()
    save_checkpoint(tmp_path, 1, model, {"x": torch.ones(3)}, {"note": "first"})
    with torch.no_grad():
        model.emb.weight += 1
    save_checkpoint(tmp_path, 2, model, {"x": torch.ones(3)}, {"note": "second"})
    file = tmp_path / "checkpoints" / "step-000002" / "model.safetensors"
    data = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        file.unlink()
    with pytest.raises(CheckpointError, match=r"step-000002.*model\.safetensors.*not loaded.*step-000001"):
        load_checkpoint(tmp_path, Tied())
    previous = tmp_path / "checkpoints" / "step-000001"
    assert previous.is_dir()
    _, state = load_checkpoint(previous, Tied())
    assert state["note"] == "first" and state["step"] == 1


def test_a_crash_mid_write_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = Tied()
    save_checkpoint(tmp_path, 1, model, {}, {"note": "good"})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)  # dies while writing the training state
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, {}, {"note": "never finished"})
    assert checkpoint.latest_checkpoint(tmp_path).name == "step-000001"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-000001"]
    _, state = load_checkpoint(tmp_path, Tied())
    assert state["note"] == "good"


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        load_checkpoint(tmp_path, Tied())
    save_checkpoint(tmp_path, 1, Tied(), {}, {})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(tmp_path, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 2, Tied(), {}, {}, keep=0)


def test_an_empty_or_partial_manifest_is_corrupt_not_a_free_pass(tmp_path):
    path = save_checkpoint(tmp_path, 1, Tied(), {}, {})
    (path / "model.safetensors").write_bytes(b"\x00" * 64)  # would be caught by the manifest...
    manifest = json.loads((path / "manifest.json").read_text())
    for files in ({}, {"state.safetensors": manifest["files"]["state.safetensors"]}, None):
        (path / "manifest.json").write_text(json.dumps(manifest | {"files": files}))  # ...were it not emptied
        with pytest.raises(CheckpointError, match="must list the size and sha256 .* the manifest is corrupt"):
            load_checkpoint(path, Tied())


def test_newest_verified_checkpoint_skips_damaged_ones(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, Tied(), {}, {}, keep=3)
    assert checkpoint.newest_verified_checkpoint(tmp_path).name == "step-000003"
    (tmp_path / "checkpoints" / "step-000003" / "state.safetensors").write_bytes(b"")
    assert checkpoint.newest_verified_checkpoint(tmp_path).name == "step-000002"
    assert checkpoint.newest_verified_checkpoint(tmp_path / "elsewhere") is None


def test_leftovers_of_interrupted_writes_are_removed_by_the_next_save(tmp_path):
    root = tmp_path / "checkpoints"
    (root / ".step-000005-x1.part").mkdir(parents=True)
    (root / ".step-000005-x1.part" / "model.safetensors").write_bytes(b"x" * 10_000)
    (root / ".step-000003-x2.old" / "step-000003").mkdir(parents=True)
    (root / "latest.tmp123.part").write_text("step-000003")
    save_checkpoint(tmp_path, 6, Tied(), {}, {})
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000006"]


def test_files_and_folders_get_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path, 1, Tied(), {}, {})
        checkpoint.write_atomically(tmp_path / "notes.txt", "hello")
    finally:
        os.umask(old)
    for f in [*path.iterdir(), path.parent / "latest", tmp_path / "notes.txt"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f  # 0666 less the umask, not mkstemp's 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o750  # not mkdtemp's 0700


def test_a_weights_file_of_other_shapes_is_refused_by_name(tmp_path):
    checkpoint.save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"w\.safetensors does not fit this model: weight \(2, 2\) in the file, "
                                              r"\(3, 3\) in the model"):
        checkpoint.load_weights(nn.Linear(3, 3), tmp_path / "w.safetensors")
