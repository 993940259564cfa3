"""lmbook.data: look-up order, checksums, offline behaviour and the standard splits."""

import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lmbook import data

NAMES = data.REGISTRY["names"]


def _real_names_bytes() -> bytes:
    try:
        return data.path("names", download=False).read_bytes()
    except data.DatasetError:
        pytest.skip("the names dataset is not available offline here (set LMBOOK_DATA_DIR)")


@pytest.fixture
def names_bytes() -> bytes:
    """The real file, read before `isolated` hides the mirror."""
    return _real_names_bytes()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty mirror and an empty cache; any network access fails like an offline machine."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(mirror))
    monkeypatch.setenv("LMBOOK_CACHE_DIR", str(cache))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return mirror, cache


def _serve(monkeypatch, payload: bytes):
    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(payload))


def test_mirror_is_used_and_verified(names_bytes, isolated):
    payload = names_bytes
    mirror, cache = isolated
    (mirror / "names.txt").write_bytes(payload)
    assert data.path("names") == mirror / "names.txt"
    assert not cache.exists()  # nothing downloaded


def test_corrupt_mirror_file_is_refused(isolated):
    mirror, _ = isolated
    (mirror / "names.txt").write_text("emma\nolivia\n")
    with pytest.raises(data.DatasetError, match=r"names\.txt does not match the registered sha256.*not used"):
        data.path("names")


def test_offline_and_missing_says_what_to_do(isolated):
    with pytest.raises(data.DatasetError) as err:
        data.path("names")
    message = str(err.value)
    assert "names.txt" in message and "LMBOOK_DATA_DIR" in message and "connect" in message


def test_download_goes_to_cache_and_is_verified(names_bytes, isolated, monkeypatch):
    payload = names_bytes
    _, cache = isolated
    _serve(monkeypatch, payload)
    got = data.path("names")
    assert got == cache / "names.txt" and got.read_bytes() == payload
    # The second look-up finds the cached copy without the network.
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert data.path("names") == got


def test_corrupt_download_leaves_nothing_behind(isolated, monkeypatch):
    _, cache = isolated
    _serve(monkeypatch, b"not the names file")
    with pytest.raises(data.DatasetError, match="does not match the registered sha256"):
        data.path("names")
    assert not any(cache.iterdir()), "a corrupt download must not stay in the cache"


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(data.DatasetError, match=r"unknown dataset 'shakespear'.*tinyshakespeare"):
        data.path("shakespear")


def test_registry_matches_the_offline_mirror():
    mirror = os.environ.get("LMBOOK_DATA_DIR")
    if not mirror:
        pytest.skip("LMBOOK_DATA_DIR is not set")
    for ds in data.REGISTRY.values():
        f = Path(mirror) / ds.filename
        if f.exists():
            assert f.stat().st_size == ds.size
            assert data.sha256_of(f) == ds.sha256


def test_names_split_is_makemores():
    _real_names_bytes()
    train, dev, test = data.names_split()
    assert (len(train), len(dev), len(test)) == (25626, 3203, 3204)
    assert sorted(train + dev + test) == sorted(data.load_text("names").splitlines())
    assert data.names_split() == (train, dev, test)  # deterministic
    # makemore's split: random.seed(42); random.shuffle(words)
    import random

    words = data.load_text("names").splitlines()
    random.seed(42)
    random.shuffle(words)
    assert train == words[: int(0.8 * len(words))]


def test_shakespeare_split_is_nanogpts():
    try:
        text = data.load_text("tinyshakespeare")
    except data.DatasetError:
        pytest.skip("tinyshakespeare is not available offline here")
    train, val = data.shakespeare_split()
    assert train + val == text
    assert len(train) == int(0.9 * len(text)) == 1003854
    assert train.startswith("First Citizen:")


def test_tang_poems_parse_back_to_the_file():
    poems = data.tang_poems()
    assert len(poems) == 10_008 and sum(p.title == "" for p in poems) == 1
    assert "\n\n".join(map(str, poems)) + "\n" == data.load_text("tang_poems")


def test_tang_poems_split_is_by_poem_for_every_poet_and_fixed():
    train, val, test = data.tang_poems_split()
    assert (len(train), len(val), len(test)) == (7993, 1004, 1011)
    assert data.tang_poems_split() == (train, val, test)  # the same split every time
    assert not {str(p) for p in train} & {str(p) for p in val + test}
    for poet, n in [("李白", 1148), ("王維", 401)]:  # about a tenth of each poet's poems in val and in test
        counts = [sum(p.author == poet for p in split) for split in (train, val, test)]
        assert sum(counts) == n and all(abs(c - n / 10) <= 1 for c in counts[1:]), counts


def test_lm_split_of_each_dataset():
    train, val = data.lm_split("tinyshakespeare")
    assert (train, val) == data.shakespeare_split()
    train, val = data.lm_split("tang_poems")
    assert val.count("\n\n") == 1004 and val.endswith("\n\n")
    with pytest.raises(data.DatasetError, match="unknown dataset"):
        data.lm_split("nope")
