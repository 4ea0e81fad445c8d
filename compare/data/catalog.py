"""What data sets exist and what they are made of: names, classes, file names, downloads, the Dataset record."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

DATASETS = ("digits", "breast_cancer", "diabetes", "fashion-mnist", "cifar10", "teacher-student")
SKLEARN_DATASETS = ("digits", "breast_cancer", "diabetes")
IMAGE_DATASETS = ("fashion-mnist", "cifar10")

ENV_DATA_DIR = "LAZYKIT_DATA_DIR"
ENV_CACHE_DIR = "LAZYKIT_CACHE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIRS = (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_FRACTION = 0.25  # scikit-learn sets have no official split: 25% test, as train_test_split's default

# examples per class of each split (both sets are balanced): Fashion-MNIST 60,000/10,000 in 10 classes (Xiao,
# Rasul & Vollgraf 2017), CIFAR-10 50,000/10,000 in 10 classes (Krizhevsky 2009)
PER_CLASS = {"fashion-mnist": {"train": 6000, "test": 1000}, "cifar10": {"train": 5000, "test": 1000}}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_BATCHES_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_CAVEAT = ("CIFAR-10 read from an image archive (the JPEG, quality 75, copy): expect test accuracies 2-3 points "
               "below published CIFAR-10 numbers")

# Canonical downloads and their SHA-256 (Fashion-MNIST: the upstream repository's data/fashion files, whose
# published MD5s are 8d4fb7e6…, 25c81989…, bef4ecab…, bb300cfd…; CIFAR-10: the archive whose published MD5 is
# c58f30108f718f92721af3b95e74349a). The Debian package holds the same IDX data re-gzipped (other checksums).
DOWNLOADS = {
    "fashion-mnist": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/", {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", {
        CIFAR10_ARCHIVE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    }),
}
# SHA-256 of the uncompressed IDX files, whatever gzip wrapped them: read from the Debian package
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 (upstream commit 55506a9; the .deb's SHA-256 39e172fe32dd…,
# checked by apt), whose .gz files hold these bytes. Offline installs (a .deb, a folder) are checked against them.
FASHION_MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
DOWNLOAD_SUBDIR = {"fashion-mnist": "fashion-mnist", "cifar10": ""}
KIND_DESCRIPTIONS = {"idx": "IDX files", "batches": "CIFAR-10 python batches", "archive": "canonical archive",
                     "images": "image archive"}


class DataNotFoundError(FileNotFoundError):
    """The requested data set is not in any folder searched; the message says where we looked and how to get it."""


class CorruptDataError(ValueError):
    """A data file exists but cannot be read as what it should be (truncated, wrong format, wrong checksum)."""


@dataclasses.dataclass(frozen=True, repr=False)
class Dataset:
    """Train and test arrays plus what they are.

    ``X_*``: float arrays, (N, d) for tabular data, (N, C, H, W) for images (or (N, C·H·W) with ``flatten``).
    ``y_*``: int64 labels 0..n_classes-1 (classification) or float targets (regression).
    ``info``: how the arrays were made (standardisation statistics, teacher weights, ...).
    """
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    task: str
    n_classes: int | None
    image_shape: tuple | None
    class_names: tuple | None
    source: str
    info: dict

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.X_train.shape[1:]))

    def __repr__(self):
        classes = f", {self.n_classes} classes" if self.n_classes else ""
        return (f"Dataset({self.name!r}, {self.task}{classes}, X_train {self.X_train.shape}, "
                f"X_test {self.X_test.shape}, {self.X_train.dtype}, source={self.source!r})")

