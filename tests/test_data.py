"""Tests for bigmodel_lib.data (chapters 1, 2): the dataset registry, offline first.

No test downloads anything: the torchvision datasets are exercised with small
files written here, and "offline" is simulated by making urlopen fail.
"""

from __future__ import annotations

import struct
import urllib.error
import urllib.request

import pytest
import torch
from torch.utils.data import TensorDataset

from bigmodel_lib import data as data_module
from bigmodel_lib import load_dataset
from bigmodel_lib.data import DatasetInfo, DatasetUnavailableError, available_datasets, register_dataset

# ---------------------------------------------------------------------------
# digits: shipped with scikit-learn


def indices(subset) -> list[int]:
    return list(subset.indices)


def test_digits_shapes_values_and_sizes():
    splits = load_dataset("digits")
    train, val, test, info = splits  # unpacks
    assert (len(train), len(val), len(test)) == (1294, 144, 359)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    all_x = torch.stack([train[i][0] for i in range(len(train))])
    assert all_x.min() >= 0 and all_x.max() <= 1 and all_x.max() == 1
    assert info == DatasetInfo("digits", 10, (1, 8, 8), [str(d) for d in range(10)], info.source)
    assert "scikit-learn" in info.source


def test_split_is_deterministic_for_a_seed_and_disjoint():
    a, b, c = (load_dataset("digits", seed=s) for s in (7, 7, 8))
    assert indices(a.train) == indices(b.train) and indices(a.val) == indices(b.val)
    assert indices(a.val) != indices(c.val)  # another seed, another validation set
    assert not set(indices(a.train)) & set(indices(a.val))
    assert sorted(indices(a.train) + indices(a.val)) == list(range(1294 + 144))
    assert torch.equal(a.test.tensors[0], c.test.tensors[0])  # the test set never moves


def test_digits_resized_to_28_for_an_mnist_network():
    splits = load_dataset("digits", image_size=28, val_fraction=0.0)
    assert splits.val is None
    x, _ = splits.train[0]
    assert x.shape == (1, 28, 28) and splits.info.input_shape == (1, 28, 28)
    assert 0 <= x.min() and x.max() <= 1


def test_names_are_forgiving_about_case_and_dashes():
    assert {"digits", "mnist", "fashion_mnist", "cifar10"} <= set(available_datasets())
    assert load_dataset("Digits").info.name == "digits"


def test_register_dataset_adds_a_loader(monkeypatch):
    monkeypatch.setattr(data_module, "_REGISTRY", dict(data_module._REGISTRY))

    @register_dataset("ten-points")
    def _ten(root, download, image_size):
        x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10) % 2
        return TensorDataset(x, y), TensorDataset(x[:2], y[:2]), DatasetInfo("ten_points", 2, (1,))

    assert "ten_points" in available_datasets()
    splits = load_dataset("ten-points", val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 2)


# ---------------------------------------------------------------------------
# torchvision datasets, with small files made here


def write_idx(path, array: torch.Tensor) -> None:
    """The IDX format of MNIST: magic (0, 0, 8 = ubyte, ndim), big-endian sizes, then the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def fake_mnist(root, folder="MNIST", n_train=20, n_test=10):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n) % 10)
    return raw


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_loads_from_local_files(tmp_path, name, folder):
    fake_mnist(tmp_path, folder)
    splits = load_dataset(name, root=tmp_path, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 10)
    x, y = splits.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert splits.info.num_classes == 10 and splits.info.input_shape == (1, 28, 28)
    assert str(tmp_path) in splits.info.source
    again = load_dataset(name, root=tmp_path, val_fraction=0.25)
    assert indices(again.val) == indices(splits.val)
    small = load_dataset(name, root=tmp_path, image_size=14)
    assert small.train[0][0].shape == (1, 14, 14)


def test_missing_files_name_the_folder_and_the_way_out(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message  # which files it wanted
    assert "download=True" in message and "checksum" in message  # how to fetch them
    assert "Offline" in message and "copy" in message  # what to do without a network


def test_corrupt_files_are_reported_as_corrupt(tmp_path):
    raw = fake_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03 this is not an image file")
    with pytest.raises(DatasetUnavailableError, match="corrupt or incomplete") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(raw) in str(info.value) and "download=True" in str(info.value)


def test_cifar10_files_failing_torchvisions_checksums_are_corrupt(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"not the real file")
    with pytest.raises(DatasetUnavailableError, match="corrupt or incomplete") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(folder) in str(info.value) and "MD5" in str(info.value)
    assert "cifar-10-python.tar.gz" in str(info.value)  # the archive to copy in when offline


def test_download_offline_goes_through_torchvision_and_explains(tmp_path, monkeypatch):
    calls = []

    def no_network(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("no network (simulated by the test)")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=tmp_path, download=True)
    message = str(info.value)
    assert calls and all(url.startswith("http") for url in calls)  # torchvision's real download code ran
    assert "could not download mnist" in message and "offline" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "checks their checksums" in message


def test_dataset_tensors_stacks_every_item_and_names_bad_items():
    from torch.utils.data import Subset

    from bigmodel_lib import dataset_tensors

    images, labels = torch.rand(5, 1, 2, 2), torch.arange(5)
    stacked = dataset_tensors(Subset(TensorDataset(images, labels), [4, 0, 2]))
    assert len(stacked) == 2
    assert torch.equal(stacked[0], images[[4, 0, 2]]) and torch.equal(stacked[1], labels[[4, 0, 2]])
    assert dataset_tensors(TensorDataset(images, labels), device="cpu")[0].device.type == "cpu"
    with pytest.raises(ValueError, match="at least one item, got an empty one"):
        dataset_tensors(TensorDataset(images[:0], labels[:0]))
    with pytest.raises(ValueError, match="tuples of tensors, got int items"):
        dataset_tensors([1, 2, 3])
