"""Shared test settings."""

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
