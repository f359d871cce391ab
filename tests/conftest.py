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


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as module ``name`` (registered in ``sys.modules``: dataclasses look
    their module up there; the benchmarks directory is put on ``sys.path`` for their imports of each other)."""
    import importlib.util
    import pathlib
    import sys

    folder = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
