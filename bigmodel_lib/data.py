"""Datasets: one function, :func:`load_dataset`, returns train/validation/test splits by name.

Offline first. ``digits`` (8x8 handwritten digits) ships inside scikit-learn, so
it works with no network at all; the book's early chapters use it. The standard
image datasets (``mnist``, ``fashion_mnist``, ``cifar10``) go through
torchvision's own download code, which checks every file's MD5 checksum. Without
a network, or when files are missing or corrupt, the error says what happened,
the folder it looked in, and what to do.

Every dataset returns images as float tensors in [0, 1] of shape (C, H, W) and
integer labels. The validation set is carved out of the training set with a
seeded permutation, so the same seed always gives the same split.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["load_dataset", "dataset_tensors", "DatasetUnavailableError"]

#: Where datasets live unless ``root`` is given; default ``~/.cache/bigmodel_lib/data``.
DATA_ENV_VAR = "BIGMODEL_DATA"

#: Seconds a download may wait for the network before giving up.
DOWNLOAD_TIMEOUT_S = 60


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing, corrupt, or could not be downloaded.

    Introduced in §2.6.
    """


@dataclass
class DatasetInfo:
    """What a dataset holds: its name, classes, input shape, and where it was read from."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) of one image
    class_names: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class DatasetSplits:
    """Train, validation and test sets of one dataset, plus its :class:`DatasetInfo`.

    Unpacks as ``train, val, test, info = load_dataset("digits")``. ``val`` is
    ``None`` when ``val_fraction=0``.
    """

    train: Dataset
    val: Dataset | None
    test: Dataset
    info: DatasetInfo

    def __iter__(self):
        return iter((self.train, self.val, self.test, self.info))


class ImageTensorDataset(Dataset):
    """uint8 images ``(N, C, H, W)`` with labels, served as floats in [0, 1], optionally resized.

    Keeping the pixels as bytes uses a quarter of the memory of floats (CIFAR-10:
    150 MB instead of 600 MB); each image is converted when it is fetched.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 images of shape (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"expected one label per image ({len(images)}), got {len(labels)} labels")
        self.images, self.labels, self.image_size = images, labels.long(), image_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255  # (C, H, W)
        if self.image_size is not None:
            x = _resize(x[None], self.image_size)[0]
        return x, self.labels[i]


def dataset_tensors(dataset: Dataset, device: str | torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """Every item of a map-style dataset, stacked: ``(inputs (N, ...), targets (N,), ...)``.

    For a dataset small enough to hold at once, e.g. to train on all of it
    without a ``DataLoader``. Each item must be a tuple of tensors of the same
    shapes; the result has one stacked tensor per position of the tuple, on
    ``device`` if given. Raises ValueError for an empty dataset or items that
    are not tuples of tensors.

    Introduced in §1.4.
    """
    if len(dataset) == 0:
        raise ValueError("expected a dataset with at least one item, got an empty one")
    items = [dataset[i] for i in range(len(dataset))]
    if not all(isinstance(item, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in item) for item in items):
        raise ValueError(f"expected items that are tuples of tensors, got {type(items[0]).__name__} items")
    stacked = tuple(torch.stack(column) for column in zip(*items))
    return stacked if device is None else tuple(t.to(device) for t in stacked)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear, values kept in [0, 1]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


# ---------------------------------------------------------------------------
# The registry

#: name -> loader(root, download, image_size) -> (train pool, test set, info)
_REGISTRY: dict[str, Callable[[Path, bool, int | None], tuple[Dataset, Dataset, DatasetInfo]]] = {}


def register_dataset(name: str):
    """Decorator adding a loader ``fn(root, download, image_size) -> (train_pool, test, info)`` under ``name``.

    :func:`load_dataset` then splits the train pool into train and validation.
    """

    def add(fn):
        _REGISTRY[_normalise(name)] = fn
        return fn

    return add


def available_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts."""
    return sorted(_REGISTRY)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def default_root() -> Path:
    """The data folder: ``$BIGMODEL_DATA`` if set, else ``~/.cache/bigmodel_lib/data``."""
    return Path(os.environ.get(DATA_ENV_VAR) or Path.home() / ".cache" / "bigmodel_lib" / "data")


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
) -> DatasetSplits:
    """Train, validation and test splits of the dataset called ``name``.

    ``val_fraction`` of the training set (a seeded random choice: same seed,
    same split) becomes the validation set; the test set is the dataset's own.
    ``image_size`` resizes images to ``image_size x image_size`` (e.g. 28 to feed
    8x8 digits to a network built for MNIST). ``download=True`` lets torchvision
    fetch missing files, checking their checksums; nothing is downloaded
    otherwise.

    Introduced in §1.4.
    """
    if not isinstance(name, str) or _normalise(name) not in _REGISTRY:
        close = difflib.get_close_matches(_normalise(str(name)), list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}: expected one of {available_datasets()}{hint}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"expected val_fraction in [0, 1), got {val_fraction!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"expected image_size to be a positive integer or None, got {image_size!r}")
    root = Path(root) if root is not None else default_root()
    pool, test, info = _REGISTRY[_normalise(name)](root, download, image_size)

    n_val = round(len(pool) * val_fraction)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    train = Subset(pool, order[n_val:])
    val = Subset(pool, order[:n_val]) if n_val > 0 else None
    return DatasetSplits(train, val, test, info)


# ---------------------------------------------------------------------------
# digits: shipped with scikit-learn, no network needed

#: The digits test set is the same 20% for every ``seed`` (drawn with this one).
DIGITS_TEST_SEED = 0


@register_dataset("digits")
def _digits(root: Path, download: bool, image_size: int | None):
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_digits

    bunch = load_digits()  # reads a file inside the scikit-learn package
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16  # (1797, 1, 8, 8), pixels 0..16 -> [0, 1]
    if image_size is not None:
        x = _resize(x, image_size)  # (1797, 1, size, size)
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(DIGITS_TEST_SEED))
    n_test = len(x) // 5
    test_idx, pool_idx = order[:n_test], order[n_test:]
    info = DatasetInfo("digits", 10, tuple(x.shape[1:]), [str(d) for d in range(10)],
                       f"scikit-learn {sklearn_version} (load_digits, bundled with the package)")
    return TensorDataset(x[pool_idx], y[pool_idx]), TensorDataset(x[test_idx], y[test_idx]), info


# ---------------------------------------------------------------------------
# torchvision datasets: downloaded with checksums, or copied in by hand


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """torchvision's downloads have no timeout of their own; give them one while they run."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _torchvision_files(cls) -> tuple[str, list[str], list[str]]:
    """(folder below root, files torchvision reads, archives its download fetches) for ``cls``."""
    if hasattr(cls, "resources"):  # MNIST family: root/<Class>/raw/<file> from <file>.gz
        archives = [filename for filename, _ in cls.resources]
        return f"{cls.__name__}/raw", [a.removesuffix(".gz") for a in archives], archives
    files = [filename for filename, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return cls.base_folder, files, [cls.filename]  # CIFAR: root/cifar-10-batches-py/<file> from one .tar.gz


def _explain(name: str, cls, root: Path, download: bool, exc: Exception) -> str:
    sub, files, archives = _torchvision_files(cls)
    folder = root / sub
    archive_dir = folder if sub.endswith("raw") else root
    missing = [f for f in files if not (folder / f).is_file()]
    how_offline = (
        f"Offline, copy those files into {folder}, or copy the archives {archives} into {archive_dir} "
        f"and call load_dataset({name!r}, root={str(root)!r}, download=True): torchvision then checks "
        "their checksums and unpacks them without using the network."
    )
    if download:
        return (
            f"could not download {name} into {folder} with torchvision ({type(exc).__name__}: {exc}). "
            f"Is this machine offline? It needs the files {files}. {how_offline}"
        )
    if missing:
        found = "none of them is there" if missing == files else f"missing {missing}"
        return (
            f"{name} is not in {folder}: expected the files {files}, {found}. "
            f"load_dataset({name!r}, root={str(root)!r}, download=True) downloads it with torchvision, "
            f"which verifies each file's MD5 checksum. {how_offline}"
        )
    return (
        f"{name} files in {folder} are corrupt or incomplete ({type(exc).__name__}: {exc}). "
        f"Delete them and call load_dataset({name!r}, root={str(root)!r}, download=True), which downloads "
        f"fresh copies and verifies their MD5 checksums, or copy intact files {files} there. {how_offline}"
    )


def _from_torchvision(name: str, class_name: str, root: Path, download: bool, image_size: int | None):
    import torchvision

    cls = getattr(torchvision.datasets, class_name)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S) if download else contextlib.nullcontext():
            splits = [cls(str(root), train=train, download=download) for train in (True, False)]
    except Exception as exc:  # torchvision raises RuntimeError, URLError, pickle or parse errors
        raise DatasetUnavailableError(_explain(name, cls, root, download, exc)) from exc

    def as_images(ds) -> ImageTensorDataset:
        images = torch.as_tensor(ds.data)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> (N, C, H, W)
        return ImageTensorDataset(images.contiguous(), torch.as_tensor(ds.targets), image_size)

    pool, test = as_images(splits[0]), as_images(splits[1])
    c, h, w = pool.images.shape[1:]
    shape = (c, image_size, image_size) if image_size else (c, h, w)
    info = DatasetInfo(name, len(splits[0].classes), shape, list(splits[0].classes),
                       f"torchvision {torchvision.__version__} {class_name} in {root}")
    return pool, test, info


@register_dataset("mnist")
def _mnist(root: Path, download: bool, image_size: int | None):
    return _from_torchvision("mnist", "MNIST", root, download, image_size)


@register_dataset("fashion_mnist")
def _fashion_mnist(root: Path, download: bool, image_size: int | None):
    return _from_torchvision("fashion_mnist", "FashionMNIST", root, download, image_size)


@register_dataset("cifar10")
def _cifar10(root: Path, download: bool, image_size: int | None):
    return _from_torchvision("cifar10", "CIFAR10", root, download, image_size)
