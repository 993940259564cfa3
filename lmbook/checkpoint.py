"""Checkpoints that survive crashes and never unpickle anything (chapter 7).

A long run will be interrupted: a preempted machine, a full disk, a bug at step 40,000. A checkpoint
is what lets it continue *exactly* where it stopped, so it holds everything the next step depends
on: the weights, the optimizer's moment estimates, the step number (the learning-rate schedule is
a function of it), and the state of every random number generator (the batch sampler's, torch's
for dropout, Python's and NumPy's).

Layout of a run's checkpoints::

    run_dir/checkpoints/step-000500/model.safetensors   the weights (shared/tied tensors stored once)
                                    state.safetensors   optimizer moments and RNG states as tensors;
                                                        everything else (step, optimizer hyper-
                                                        parameters, metrics so far) as JSON in the
                                                        file's header
                                    manifest.json       size and sha256 of both files
    run_dir/checkpoints/latest                          the name of the newest complete checkpoint

Nothing is read with `pickle` (``torch.load`` of a ``.pt`` file can run arbitrary code): safetensors
holds only tensors and JSON only plain values. A checkpoint is written into a temporary folder that
is renamed into place when complete, and `latest` is replaced afterwards (both renames are atomic on
POSIX file systems), so a crash mid-write leaves the previous checkpoint untouched and `latest`
pointing at it. Loading checks every file against the manifest, so a truncated or corrupted file
is refused with an error naming it and the checkpoints that are still good.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lmbook.data import sha256_of

FORMAT = "lmbook-checkpoint-1"
CHECKPOINT_FILES = ("model.safetensors", "state.safetensors")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or does not match its manifest."""


# ---- weights -----------------------------------------------------------------------------------

def weights_to_save(model: nn.Module, dtype: torch.dtype | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The model's state dict ready for safetensors: contiguous CPU tensors (cast to `dtype` if
    given), each storage once. Returns (tensors, aliases) where aliases maps a dropped name to the
    kept name sharing its memory (e.g. a tied ``lm_head.weight`` -> ``wte.weight``)."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride())) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        t = t.detach().cpu()
        tensors[name] = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
    return tensors, aliases


def save_weights(model: nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Save the weights to one safetensors file, atomically (optionally cast, e.g. to bfloat16)."""
    tensors, aliases = weights_to_save(model, dtype)
    header = {"aliases": json.dumps(aliases)} | (metadata or {})
    return write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a file written by `save_weights` into `model` (cast to the model's dtypes); every
    parameter and buffer must be present, under its own name or as an alias, with its shape."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tensors, metadata = _read_safetensors(Path(path))
    aliases = json.loads(metadata.get("aliases", "{}"))
    expected = model.state_dict()
    missing = [n for n in expected if n not in tensors and aliases.get(n) not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]} "
                              f"(was it saved from a model with another configuration?)")
    state = {n: tensors[n] if n in tensors else tensors[aliases[n]] for n in expected}
    wrong = [f"{n} {tuple(t.shape)} in the file, {tuple(expected[n].shape)} in the model"
             for n, t in state.items() if t.shape != expected[n].shape]
    if wrong:
        raise CheckpointError(f"{path} does not fit this model: {'; '.join(wrong[:3])} (was it saved from a model "
                              f"with another configuration?)")
    state = {n: t.to(expected[n].dtype) for n, t in state.items()}
    model.load_state_dict(state)
    return model


# ---- optimizer and random number generators -----------------------------------------------------

def optimizer_to_save(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """An optimizer's state dict split into tensors ('optimizer.<param index>.<name>') and JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_saved(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], saved: dict) -> None:
    """Load what `optimizer_to_save` produced. Implementation switches of the current optimizer
    (fused, foreach, capturable) are kept, so a GPU checkpoint resumes on a CPU and back."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in saved["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"the checkpoint's optimizer has {len(groups)} parameter groups, this one {len(optimizer.param_groups)}")
    for saved_group, group in zip(groups, optimizer.param_groups):
        for switch in ("fused", "foreach", "capturable", "differentiable"):
            if switch in group:
                saved_group[switch] = group[switch]
        if "betas" in saved_group:
            saved_group["betas"] = tuple(saved_group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_to_save() -> tuple[dict[str, Tensor], dict]:
    """The state of torch's CPU and CUDA generators, NumPy's and Python's, as tensors and JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss_next]}


def rng_from_saved(tensors: dict[str, Tensor], saved: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = saved["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ---- whole checkpoints -----------------------------------------------------------------------------

def save_checkpoint(run_dir: str | os.PathLike, step: int, model: nn.Module, state_tensors: dict[str, Tensor],
                    state: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` of a run atomically and return its folder.

    state_tensors: tensors of the training state (optimizer moments, RNG and sampler states);
    state: JSON-serialisable rest (step, config, metrics). The newest `keep` checkpoints are kept.
    """
    _check_save_args(step, keep)
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    remove_leftovers(root)  # .part and .old folders of a write that crashed
    name = f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-", suffix=".part"))
    os.chmod(tmp, _mode(directory=True))  # mkdtemp makes it private (0700)
    try:
        save_weights(model, tmp / "model.safetensors")
        header = {"format": FORMAT, "state": json.dumps(state | {"step": step})}
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_tensors.items()}
        write_atomically(tmp / "state.safetensors", lambda f: save_file(tensors, f, metadata=header))
        manifest = {"format": FORMAT, "step": step,
                    "files": {f: {"bytes": (tmp / f).stat().st_size, "sha256": sha256_of(tmp / f)}
                              for f in CHECKPOINT_FILES}}
        write_atomically(tmp / "manifest.json", json.dumps(manifest, indent=1))
        final = root / name
        if final.exists():  # the same step written again (a resumed run): move the old one aside first
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-", suffix=".old"))
            os.replace(final, old / name)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        write_atomically(root / "latest", name)
        _fsync(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for old in list_checkpoints(run_dir)[:-keep]:
        if old.name != name:
            shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's complete checkpoint folders (those with a manifest), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / "manifest.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The folder `latest` points to, or None when the run has no checkpoint yet."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    return pointer.parent / pointer.read_text(encoding="utf-8").strip()


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Check a checkpoint folder against its manifest (every file present, of the size and sha256
    it was written with) and return the manifest; a CheckpointError names what is wrong."""
    path = Path(path)
    manifest = read_json(path / "manifest.json", f"; the checkpoint was not loaded{_others(path)}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{path} has format {found!r}, expected {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(CHECKPOINT_FILES) or not all(
            isinstance(f, dict) and isinstance(f.get("bytes"), int) and isinstance(f.get("sha256"), str)
            for f in files.values()):
        raise CheckpointError(f"{path / 'manifest.json'} must list the size and sha256 of {list(CHECKPOINT_FILES)}, "
                              f"got {files!r:.200}: the manifest is corrupt and the checkpoint was not "
                              f"loaded{_others(path)}")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; the checkpoint is incomplete and was not loaded{_others(path)}")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(f"{file} holds {size} bytes but was written with {expected['bytes']} "
                                  f"(truncated?); the checkpoint was not loaded{_others(path)}")
        if sha256_of(file) != expected["sha256"]:
            raise CheckpointError(f"{file} does not match the sha256 it was written with (corrupted); "
                                  f"the checkpoint was not loaded{_others(path)}")
    return manifest


def newest_verified_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's newest checkpoint that passes `verify_checkpoint`, or None."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path)
        except CheckpointError:
            continue
        return path
    return None


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> tuple[dict[str, Tensor], dict]:
    """Verify a checkpoint folder (or a run folder: its latest checkpoint), load the weights into
    `model` and return (state_tensors, state). A file that is missing, truncated or altered is a
    CheckpointError naming it; nothing is deleted, so older checkpoints stay available."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            found = list_checkpoints(path)
            raise CheckpointError(f"{path} is neither a checkpoint folder (no manifest.json) nor a run folder "
                                  f"with checkpoints/latest" + (f"; its checkpoints: {', '.join(p.name for p in found)} "
                                                                f"(pass one of them)" if found else ""))
        path = latest
    verify_checkpoint(path)
    load_weights(model, path / "model.safetensors")
    tensors, header = _read_safetensors(path / "state.safetensors")
    try:
        return tensors, json.loads(header["state"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path / 'state.safetensors'} holds no readable training state") from None


def verify_weights(path: str | os.PathLike, recorded: str | None, fix: str) -> None:
    """Check an exported weights file against the sha256 recorded when it was written; a file
    without a recorded hash, or whose bytes differ, is refused (a CheckpointError that ends in `fix`)."""
    path = Path(path)
    if not isinstance(recorded, str) or not recorded:
        raise CheckpointError(f"no sha256 is recorded for {path} (it was written before lmbook recorded one), so "
                              f"it cannot be verified and was not loaded; {fix}")
    found = sha256_of(path)
    if found != recorded:
        raise CheckpointError(f"{path} does not match the sha256 recorded when it was written (expected "
                              f"{recorded[:16]}…, found {found[:16]}…): it is corrupted or was replaced, and was "
                              f"not loaded")


# ---- file helpers --------------------------------------------------------------------------------

def write_atomically(path: str | os.PathLike, content) -> Path:
    """Write `path` so that it holds either its old content or the complete new one, never a part:
    `content` (a str, bytes, or a function that writes the file whose path it is given) goes into a
    temporary ``.<name>…part`` file next to it, which is flushed to disk and renamed over `path`
    (atomic on POSIX file systems). The file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        _fsync(tmp)
        os.chmod(tmp, _mode())  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_json(path: str | os.PathLike, context: str = ""):
    """The JSON value in `path`; a missing, unreadable or malformed file is a CheckpointError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path} cannot be read as JSON ({type(e).__name__}: {e}){context}") from None


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete what interrupted writes left in `folder` (temporary ``.part`` files and folders, and
    ``.old`` folders of a replaced checkpoint); returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith((".part", ".old")) or p.name.endswith(".part"):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    return removed


def _mode(directory: bool = False) -> int:
    """Permissions a newly created file (0666) or folder (0777) gets under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _check_save_args(step, keep) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an int >= 1 (the newest checkpoint is always kept), got {keep!r}")


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None


def _others(path: Path) -> str:
    good = [p for p in list_checkpoints(path.parent.parent) if p != path]  # path is run_dir/checkpoints/step-N
    return (f". The other checkpoints were left as they are: {', '.join(p.name for p in good)} in {path.parent}; "
            f"resume from one of them with --resume {good[-1]}") if good else ""


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
