"""Shared test settings."""

from pathlib import Path

import pytest
import torch

# tests/fixtures/ holds small chapters that the tools are tested on, some deliberately broken:
# never collect them as tests (nor run them under nbval, which `make test` enables).
collect_ignore = ["fixtures"]


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests' models are tiny: with a second thread, torch waits on a core another process (the
    other pytest worker, say) may hold, and runs many times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With `--dist loadgroup` (make test), pytest-xdist keeps each group on one worker. Every test
    file, and every chapter notebook under nbval, is one group (its module fixtures are built once,
    its cells run in order in one kernel), except the per-chapter assignment tests: each of them
    autogrades a whole chapter, so they are spread over the workers one by one. The longest work is
    queued first (chapter assignments, the book build, the chapter notebooks), so that no worker is
    left with a long item at the end while the other waits."""

    def priority(item) -> int:
        path = Path(str(item.fspath))
        if path.name == "test_assignments.py" and item.name.startswith("test_chapter_assignment["):
            return 0
        return {"test_book.py": 1}.get(path.name, 2 if path.suffix == ".ipynb" else 3)

    items.sort(key=priority)  # stable: each notebook's cells keep their order
    for item in items:
        if priority(item) > 0:
            item.add_marker(pytest.mark.xdist_group(Path(str(item.fspath)).name))
