"""lmbook.env: profiles, pick() and seeding."""

import random

import numpy as np
import pytest
import torch

from lmbook import env


def test_profile_from_environment(monkeypatch):
    for name in env.PROFILES:
        monkeypatch.setenv("LMBOOK_PROFILE", name)
        assert env.profile() == name
    monkeypatch.setenv("LMBOOK_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"'laptop' is not a profile; choose one of \('test', 'cpu', 'gpu'\)"):
        env.profile()


def test_default_profile_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("LMBOOK_PROFILE", raising=False)
    assert env.profile() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_pick(monkeypatch):
    monkeypatch.setenv("LMBOOK_PROFILE", "test")
    assert env.pick(test=1, cpu=2, gpu=3) == 1
    with pytest.raises(ValueError, match="missing"):
        env.pick(test=1, cpu=2)


def test_seed_everything_repeats():
    def draw():
        env.seed_everything(7)
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert draw() == draw()
