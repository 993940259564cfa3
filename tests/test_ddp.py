"""The trainer's command line under torchrun: 2 CPU processes with DistributedDataParallel (gloo) give
the loss curve of one process with the same global batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lmbook.tokens import prepare_chars
from lmbook.trainer import Trainer, TrainConfig

TEXT = "".join(f"{w} " for i in range(400) for w in ("to", "be", "or", "not", "that", "is", str(i % 5)))


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    prepare_chars(TEXT, tmp_path / "data")
    settings = dict(data_dir=str(tmp_path / "data"), n_layer=1, n_head=2, n_embd=16, block_size=16,
                    dropout=0.0, max_steps=6, warmup_steps=2, lr=3e-3, eval_every=3, eval_windows=40,
                    log_every=2, progress=False, seed=0, device="cpu", dtype="float32")
    single = Trainer(TrainConfig(out_dir=str(tmp_path / "one"), batch_size=8, **settings))
    expected = single.fit()

    config = tmp_path / "ddp.json"
    config.write_text(json.dumps(settings | {"out_dir": str(tmp_path / "two"), "batch_size": 4}))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "lmbook.trainer", "--config", str(config)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert got["info"]["world_size"] == 2 and got["info"]["tokens_per_step"] == expected.info["tokens_per_step"]
    # the same examples, averaged in a different order: equal up to float32 rounding
    np.testing.assert_allclose(got["train_loss"], expected.train_loss, rtol=1e-5)
    np.testing.assert_allclose(got["eval_loss"]["val"], expected.eval_loss["val"], rtol=1e-5)
    assert got["eval_step"] == expected.eval_step
