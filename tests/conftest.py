"""Shared pytest configuration."""

import pytest
import torch

# Fixture notebooks exist to be faulty: the hygiene test reads them, nbval must not run them.
collect_ignore_glob = ["fixtures/*"]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA is not available here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread, then restore the setting.

    Tiny models spend their time on per-operation overhead: one thread is faster
    than two and does not fight other processes (or nbval's kernels) for the cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
