"""Shared test settings."""

from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a red CI can be re-run and read; a new
# example is a change to the test, not luck). To search further by hand:
#   pytest tests/test_bpe.py --hypothesis-profile explore
settings.register_profile("book", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("book")

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


def _work_unit(nodeid: str) -> str:
    """The unit of work one pytest-xdist worker takes whole: a test file, or a chapter notebook under
    nbval (its cells run in order in one kernel), except the per-chapter assignment tests: each of
    them autogrades a whole chapter, so they are spread over the workers one by one."""
    path = nodeid.split("::")[0]
    if Path(path).name == "test_assignments.py" and "::test_chapter_assignment[" in nodeid:
        return nodeid
    return path


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two workers. xdist's own `loadgroup` relies on rewriting node ids, which
    pytest 9 no longer allows (the cells of one notebook then land on both workers, and every cell
    after the first fails in a kernel that never ran it), so the grouping is done here, in the
    scheduler itself."""
    from xdist.scheduler import LoadScopeScheduling

    class ChapterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return ChapterScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The longest work is queued first (chapter assignments, the book build, the chapter notebooks),
    so that no worker is left with a long item at the end while the other waits."""

    def priority(item) -> int:
        path = Path(str(item.fspath))
        if path.name == "test_assignments.py" and item.name.startswith("test_chapter_assignment["):
            return 0
        return {"test_book.py": 1}.get(path.name, 2 if path.suffix == ".ipynb" else 3)

    items.sort(key=priority)  # stable: each notebook's cells keep their order
