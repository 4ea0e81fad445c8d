"""Datasets for the experiments: scikit-learn's bundled sets, Fashion-MNIST, CIFAR-10 and the teacher–student task.

One call gives arrays ready for a kernel or a network::

    from compare import data
    ds = data.load("digits", n_train=500, seed=0)             # X_train (500, 64), y_train int64, ...
    ds = data.load("cifar10", n_train=2000, n_test=1000, first_per_class=300)   # images (N, 3, 32, 32)
    ds = data.load("teacher-student", n_train=1000, n_test=1000, d=10, seed=1)

What ``load`` does, in order:

1. read the source: scikit-learn's ``load_digits`` / ``load_breast_cancer`` / ``load_diabetes`` (bundled, no
   network; split 75/25 into train/test by ``seed``, stratified for classification), the Fashion-MNIST IDX files,
   or CIFAR-10 from the canonical python batches or an image-folder archive (decoded once, cached as ``.npz``);
2. keep ``classes`` (labels or names, in the order given; relabelled 0..k-1);
3. draw ``n_train`` / ``n_test`` examples without replacement, stratified by class (each class in proportion
   to its frequency, largest-remainder rounding, at least one per class), seeded by ``seed``; the result is in
   a seeded random order (also when all examples are kept), never sorted by class;
4. scale pixels to [0, 1] and standardise with statistics fitted on the training part only: per feature for
   tabular data, per channel for images; for regression the target is standardised too.

Where data files are looked for (first match wins): the ``data_dir`` argument (``--data-dir``), else the
folder in the environment variable ``LAZYKIT_DATA_DIR`` — either of these alone, so a wrong folder is an error,
never a silent fallback — else ``<checkout>/data`` (git-ignored) and ``<checkout>/../shared/data``, and for
Fashion-MNIST the Debian package's ``/usr/share/datasets/fashion-mnist``. Decoded image archives are cached in
``cache_dir``, else ``LAZYKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lazykit`` (``~/.cache/lazykit``).

Command line: ``python -m compare data list`` and ``python -m compare data install fashion-mnist|cifar10``.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from kernels import check_choice

DATASETS = ("digits", "breast_cancer", "diabetes", "fashion-mnist", "cifar10", "teacher-student")
SKLEARN_DATASETS = ("digits", "breast_cancer", "diabetes")
IMAGE_DATASETS = ("fashion-mnist", "cifar10")

ENV_DATA_DIR = "LAZYKIT_DATA_DIR"
ENV_CACHE_DIR = "LAZYKIT_CACHE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIRS = (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_FRACTION = 0.25  # scikit-learn sets have no official split: 25% test, as train_test_split's default

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


# -------------------------------------------------------------------------------------------------- loading
def load(name: str, n_train: int | None = None, n_test: int | None = None, classes=None, seed: int = 0,
         standardize: bool | None = None, data_dir=None, flatten: bool = False,
         first_per_class: int | None = None, d: int | None = None, dtype: str | None = None,
         cache_dir=None) -> Dataset:
    """Load data set ``name`` (one of ``DATASETS``) as a :class:`Dataset`.

    n_train, n_test: sizes of seeded, class-stratified subsets (None: all available).
    classes: labels or class names to keep, relabelled 0..k-1 in the order given (classification only).
    standardize: fit mean/std on the training part and apply to both parts (default True; not allowed for
        teacher-student, whose inputs must stay on the sphere).
    data_dir: the folder holding Fashion-MNIST / CIFAR-10 files (only that folder is searched).
    flatten: images as (N, C·H·W) rows instead of (N, C, H, W).
    first_per_class: Fashion-MNIST / CIFAR-10 only: use just the first k images of each class of each split
        (in the source's order) — an image archive then decodes only those, so small runs stay fast.
    d: input dimension (teacher-student only; default 10).
    dtype: "float32" or "float64" (default float32 for images, float64 otherwise).
    """
    check_choice(name, "dataset name", DATASETS)
    n_train = _check_size(n_train, "n_train")
    n_test = _check_size(n_test, "n_test")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if dtype is not None:
        check_choice(dtype, "dtype", ("float32", "float64"))
    if first_per_class is not None and name not in IMAGE_DATASETS:
        raise ValueError(f"first_per_class applies to {', '.join(IMAGE_DATASETS)} only, not {name!r}")
    first_per_class = _check_size(first_per_class, "first_per_class")
    if name == "teacher-student":
        if classes is not None:
            raise ValueError("classes does not apply to 'teacher-student' (a regression task)")
        if standardize:
            raise ValueError("standardize=True does not apply to 'teacher-student': its inputs lie on the unit "
                             "sphere by construction; leave standardize=None")
        return teacher_student(n_train=1000 if n_train is None else n_train,
                               n_test=1000 if n_test is None else n_test,
                               d=10 if d is None else d, seed=int(seed), dtype=dtype or "float64")
    if d is not None:
        raise ValueError(f"d (input dimension) applies to 'teacher-student' only, not {name!r}")
    standardize = True if standardize is None else bool(standardize)
    seeds = np.random.SeedSequence(int(seed)).spawn(3)  # independent streams: split, train subset, test subset

    if name in SKLEARN_DATASETS:
        X, y, task, class_names = _read_sklearn(name)
        if classes is not None:
            X, y, class_names = _keep_classes(X, y, class_names, classes, task, name)
        test_idx = _subset(y, math.ceil(TEST_FRACTION * len(y)), task, np.random.default_rng(seeds[0]))
        train_mask = np.ones(len(y), dtype=bool)
        train_mask[test_idx] = False
        parts = {"train": (X[train_mask], y[train_mask]), "test": (X[test_idx], y[test_idx])}
        image_shape, source, notes = None, f"scikit-learn load_{name}", {}
    else:
        task = "classification"
        reader = _read_fashion_mnist if name == "fashion-mnist" else _read_cifar10
        parts, class_names, source, notes = reader(data_dir, first_per_class, cache_dir)
        if classes is not None:
            kept = {split: _keep_classes(X, y, class_names, classes, task, name) for split, (X, y) in parts.items()}
            parts = {split: (X, y) for split, (X, y, _) in kept.items()}
            class_names = kept["train"][2]
        image_shape = tuple(parts["train"][0].shape[1:])

    # the subsets (all examples when n is None) come in a seeded random order, never sorted by class
    for split, n, stream in (("train", n_train, seeds[1]), ("test", n_test, seeds[2])):
        X, y = parts[split]
        if n is not None and n > len(y):
            raise ValueError(f"n_{split}={n} exceeds the {len(y)} {split} examples available for {name!r}"
                             + (" with these classes" if classes is not None else "")
                             + (f" and first_per_class={first_per_class}" if first_per_class else ""))
        idx = _subset(y, len(y) if n is None else n, task, np.random.default_rng(stream))
        parts[split] = (X[idx], y[idx])

    (X_train, y_train), (X_test, y_test) = parts["train"], parts["test"]
    info = {"seed": int(seed), "first_per_class": first_per_class}
    out_dtype = dtype or ("float32" if image_shape is not None else "float64")
    X_train, X_test = _as_float(X_train, out_dtype), _as_float(X_test, out_dtype)
    if task == "regression":
        y_train, y_test = y_train.astype(np.float64), y_test.astype(np.float64)
    if standardize:
        axes = (0,) if image_shape is None else (0, 2, 3)
        X_train, X_test, info["mean"], info["std"] = standardize_train_test(X_train, X_test, axes)
        if task == "regression":
            y_train, y_test, y_mean, y_std = standardize_train_test(y_train, y_test, (0,))
            info["y_mean"], info["y_std"] = float(y_mean), float(y_std)
    info.update(notes)
    if flatten and image_shape is not None:
        X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    return Dataset(X_train, y_train, X_test, y_test,
                   name=name, task=task, n_classes=len(class_names) if task == "classification" else None,
                   image_shape=image_shape, class_names=tuple(class_names) if class_names is not None else None,
                   source=source, info=info)


def standardize_train_test(train: np.ndarray, test: np.ndarray, axes: tuple):
    """Return ((train − μ)/σ, (test − μ)/σ, μ, σ) with μ, σ the mean and standard deviation of ``train`` over
    ``axes`` (computed in float64). A constant feature (σ = 0) is divided by 1, so it stays 0."""
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    m, s = mean.astype(train.dtype), std.astype(train.dtype)
    return (train - m) / s, (test - m) / s, mean.squeeze(), std.squeeze()


def stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct indices into ``y``, each class in proportion to its frequency, in random order.

    Class c gets ⌊n·N_c/N⌋ draws plus one of the n − Σ⌊·⌋ leftovers for the largest fractional parts (ties by
    class order); when n ≥ the number of classes, every class gets at least one (taken from the largest quota).
    """
    labels, counts = np.unique(y, return_counts=True)
    if not 0 < n <= len(y):
        raise ValueError(f"n must be between 1 and {len(y)}, got {n}")
    quota = n * counts / len(y)
    take = np.floor(quota).astype(np.int64)
    leftover = n - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    if n >= len(labels):
        for c in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[c] = 1
    chosen = [rng.choice(np.flatnonzero(y == label), size=int(k), replace=False)
              for label, k in zip(labels, take) if k > 0]
    return rng.permutation(np.concatenate(chosen))


def first_per_class(y: np.ndarray, k: int) -> np.ndarray:
    """Indices (in increasing order) of the first ``k`` examples of each class of ``y``."""
    return np.sort(np.concatenate([np.flatnonzero(y == label)[:k] for label in np.unique(y)]))


def _subset(y, n, task, rng):
    if task == "classification":
        return stratified_indices(y, n, rng)
    return rng.choice(len(y), size=n, replace=False)


def _as_float(X: np.ndarray, dtype: str) -> np.ndarray:
    """Pixels (uint8) to [0, 1]; other data cast to ``dtype``."""
    if X.dtype == np.uint8:
        return X.astype(dtype) / np.asarray(255, dtype=dtype)
    return X.astype(dtype, copy=False)


def _keep_classes(X, y, class_names, classes, task, name):
    """Keep the examples of ``classes`` (labels or names), relabelled 0..k−1 in the order given."""
    if task != "classification":
        raise ValueError(f"classes applies to classification data sets; {name!r} is a regression task")
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a list of labels or class names, got {classes!r}")
    labels = []
    for item in classes:
        if isinstance(item, str):
            if item not in class_names:
                raise ValueError(f"unknown class {item!r} for {name!r}; valid: {', '.join(class_names)}")
            labels.append(class_names.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < len(class_names):
            labels.append(int(item))
        else:
            raise ValueError(f"unknown class {item!r} for {name!r}: expected a label 0..{len(class_names) - 1} "
                             f"or a name ({', '.join(class_names)})")
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(f"classes must name at least two distinct classes, got {list(classes)!r}")
    new_y = np.full(len(y), -1, dtype=np.int64)
    for new, old in enumerate(labels):
        new_y[y == old] = new
    keep = new_y >= 0
    return X[keep], new_y[keep], tuple(class_names[label] for label in labels)


def _check_size(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int or None, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------- scikit-learn
def _read_sklearn(name):
    """Features, targets, task and class names of a scikit-learn bundled data set (no network)."""
    from sklearn import datasets
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)  # raw features: we standardise on the train part only
        return bunch.data.astype(np.float64), bunch.target.astype(np.float64), "regression", None
    bunch = datasets.load_digits() if name == "digits" else datasets.load_breast_cancer()
    names = tuple(str(n) for n in bunch.target_names)
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), "classification", names


# ------------------------------------------------------------------------------------------ finding files
def search_dirs(data_dir=None) -> list:
    """Folders searched for data files: ``data_dir`` alone if given, else ``$LAZYKIT_DATA_DIR`` alone if set,
    else ``<checkout>/data`` and ``<checkout>/../shared/data``."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    if os.environ.get(ENV_DATA_DIR):
        return [Path(os.environ[ENV_DATA_DIR]).expanduser()]
    return list(DEFAULT_DATA_DIRS)


def _candidates(name, data_dir):
    """(path, kind) pairs where ``name``'s files may be, in search order."""
    dirs = search_dirs(data_dir)
    if name == "fashion-mnist":
        found = [(p, "idx") for folder in dirs for p in (folder / "fashion-mnist", folder)]
        if data_dir is None and not os.environ.get(ENV_DATA_DIR):
            found.append((DEBIAN_FASHION_MNIST_DIR, "idx"))
        return found
    return [(p, kind) for folder in dirs for p, kind in (
        (folder / CIFAR10_BATCHES_DIR, "batches"), (folder, "batches"),
        (folder / CIFAR10_ARCHIVE, "archive"), (folder / CIFAR10_JPEG_ARCHIVE, "images"))]


def _present(path: Path, kind: str) -> bool:
    if kind == "idx":
        return all(_idx_file(path, f) is not None for files in FASHION_MNIST_FILES.values() for f in files)
    if kind == "batches":
        return (path / CIFAR10_BATCHES["train"][0]).is_file() and (path / CIFAR10_BATCHES["test"][0]).is_file()
    return path.is_file()


def _idx_file(folder: Path, gz_name: str):
    """``folder/name.gz``, or the unzipped ``folder/name``, whichever exists (None if neither)."""
    for candidate in (folder / gz_name, folder / gz_name[:-3]):
        if candidate.is_file():
            return candidate
    return None


def find(name: str, data_dir=None):
    """(path, kind) of the files ``load(name)`` would read, or None if they are not found.

    kind: "idx" (Fashion-MNIST folder), "batches" (CIFAR-10 python batches folder), "archive" (the canonical
    cifar-10-python.tar.gz) or "images" (an image-folder archive such as cifar10-jpeg.tar.gz).
    """
    check_choice(name, "data set with files", IMAGE_DATASETS)
    return next(((p, kind) for p, kind in _candidates(name, data_dir) if _present(p, kind)), None)


def locate(name: str, data_dir=None):
    """Like :func:`find`, but a missing data set raises :class:`DataNotFoundError` saying where we looked and
    how to get it."""
    found = find(name, data_dir)
    if found is not None:
        return found
    dirs = search_dirs(data_dir)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        where = f"the data dir {dirs[0]} does not exist"
    else:
        looked = sorted({str(p) for p, _ in _candidates(name, data_dir)})
        where = "looked in " + ", ".join(looked)
    if name == "fashion-mnist":
        files = ", ".join(f for pair in FASHION_MNIST_FILES.values() for f in pair)
        raise DataNotFoundError(
            f"Fashion-MNIST not found ({files}): {where}. Get it with `python -m compare data install "
            f"fashion-mnist [--data-dir DIR]` (as root on Debian/Ubuntu without --data-dir: apt-get install "
            f"dataset-fashion-mnist; otherwise it downloads the canonical files, checked by SHA-256), then pass "
            f"--data-dir DIR or set {ENV_DATA_DIR}=DIR.")
    url, files = DOWNLOADS["cifar10"]
    raise DataNotFoundError(
        f"CIFAR-10 not found: {where}, for {CIFAR10_BATCHES_DIR}/ (the canonical python batches), "
        f"{CIFAR10_ARCHIVE} or {CIFAR10_JPEG_ARCHIVE}. Get it with `python -m compare data install cifar10 "
        f"[--data-dir DIR]` (downloads {url}{CIFAR10_ARCHIVE}, 163 MiB, SHA-256 {files[CIFAR10_ARCHIVE]}) or "
        f"copy one of those into DIR; then pass --data-dir DIR or set {ENV_DATA_DIR}=DIR.")


# ---------------------------------------------------------------------------------------- Fashion-MNIST
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped (``.gz``) or not.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each size as a big-endian uint32, then the data, big-endian.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptDataError(f"{path} is not a readable gzip file ({exc}); reinstall it") from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise CorruptDataError(f"{path} is not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise CorruptDataError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptDataError(f"{path}: {len(raw)} bytes, but an IDX array of shape {shape} and type {dtype} "
                               f"takes {expected} (truncated or corrupt)")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_fashion_mnist(data_dir, per_class, cache_dir):
    folder, _ = locate("fashion-mnist", data_dir)
    parts = {}
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        images, labels = read_idx(_idx_file(folder, images_name)), read_idx(_idx_file(folder, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise CorruptDataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not "
                                   "form a Fashion-MNIST split (N×28×28 images, N labels 0..9)")
        X, y = images[:, None], labels.astype(np.int64)
        if per_class is not None:
            keep = first_per_class(y, per_class)
            X, y = X[keep], y[keep]
        parts[split] = (X, y)
    return parts, FASHION_MNIST_CLASSES, str(folder), {}


# --------------------------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays only: a batch file is data, never code."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 store bytes

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays")


def _unpickle_batch(fileobj, where):
    """(images (N, 3, 32, 32) uint8, labels int64) from one CIFAR-10 python batch (a pickled dict with
    'data': N×3072 uint8 rows, 1024 red then 1024 green then 1024 blue values, row-major; 'labels': N ints)."""
    try:
        batch = _ArrayUnpickler(fileobj, encoding="bytes").load()
    except Exception as exc:  # a damaged pickle raises any of a dozen types
        raise CorruptDataError(f"{where} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = np.asarray(batch.get("data")), np.asarray(batch.get("labels"))
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),)
            or not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9):
        raise CorruptDataError(f"{where}: 'data' {data.dtype}{data.shape} and 'labels' {labels.shape} are not a "
                               "CIFAR-10 batch (N×3072 uint8, N labels 0..9)")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_batches(path, split: str):
    """CIFAR-10 ``split`` ("train": data_batch_1..5, "test": test_batch) from the canonical python-batches
    folder ``cifar-10-batches-py`` or straight from the canonical ``cifar-10-python.tar.gz``.

    Returns (images (N, 3, 32, 32) uint8, labels int64), in the batches' order.
    """
    check_choice(split, "split", tuple(CIFAR10_BATCHES))
    path = Path(path)
    batches = []
    if path.is_dir():
        for name in CIFAR10_BATCHES[split]:
            if not (path / name).is_file():
                raise DataNotFoundError(f"{path / name} is missing from the CIFAR-10 batches folder {path}")
            with open(path / name, "rb") as fh:
                batches.append(_unpickle_batch(fh, path / name))
    else:
        with _open_tar(path) as archive:
            try:
                members = {PurePosixPath(m.name).name: m for m in archive.getmembers() if m.isfile()}
                for name in CIFAR10_BATCHES[split]:
                    if name not in members:
                        raise CorruptDataError(f"{path} has no {CIFAR10_BATCHES_DIR}/{name}")
                    batches.append(_unpickle_batch(archive.extractfile(members[name]), f"{path}:{name}"))
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise CorruptDataError(f"{path} is a damaged archive ({exc}); download it again") from exc
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _open_tar(path):
    try:
        return tarfile.open(path)  # transparent gzip / bz2 / xz
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CorruptDataError(f"{path} is not a readable tar archive ({exc}); copy or download it again") from exc


def _natural_key(filename: str):
    stem = PurePosixPath(filename).stem
    return (0, int(stem), filename) if stem.isdigit() else (1, 0, filename)


def read_image_archive(path, class_names, per_class: int | None = None, splits=("train", "test")) -> dict:
    """Decode the images of each split from a tar archive laid out as ``<top>/<split>/<class>/<file>``
    (.jpg/.jpeg/.png; e.g. cifar10-jpeg/train/cat/0042.jpg), labelled by the position of ``<class>`` in
    ``class_names``. Within a class, files are taken in numeric (else name) order; ``per_class`` keeps only the
    first k of each class, and only those are decoded. One pass over the archive serves all ``splits``.

    Returns {split: (images (N, 3, H, W) uint8 RGB, labels int64)}, sorted by class, then file order.
    """
    from PIL import Image
    label_of = {name: i for i, name in enumerate(class_names)}
    found = {split: {name: [] for name in class_names} for split in splits}
    unknown = set()
    with _open_tar(path) as archive:
        try:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if (not member.isfile() or len(parts) < 3 or parts[-3] not in found
                        or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES):
                    continue
                if parts[-2] not in label_of:
                    unknown.add(f"{parts[-3]}/{parts[-2]}")
                    continue
                blob = archive.extractfile(member).read()
                found[parts[-3]][parts[-2]].append((_natural_key(parts[-1]), member.name, blob))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise CorruptDataError(f"{path} is a damaged archive ({exc}); copy it again") from exc
    if unknown:
        raise CorruptDataError(f"{path}: unexpected class folders {sorted(unknown)}; "
                               f"expected {', '.join(class_names)}")
    result = {}
    for split in splits:
        missing = [name for name in class_names if not found[split][name]]
        if missing:
            raise CorruptDataError(f"{path}: no {split} images for classes {', '.join(missing)} "
                                   f"(expected <top>/{split}/<class>/<number>.jpg)")
        images, labels = [], []
        for name in class_names:
            for _, member_name, blob in sorted(found[split][name])[:per_class]:
                try:
                    with Image.open(io.BytesIO(blob)) as image:
                        images.append(np.asarray(image.convert("RGB")))
                except Exception as exc:  # PIL raises several types for a damaged image
                    raise CorruptDataError(f"{path}:{member_name} is not a readable image ({exc})") from exc
                labels.append(label_of[name])
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise CorruptDataError(f"{path}: {split} images differ in size: {sorted(shapes)}")
        result[split] = (np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)),
                         np.asarray(labels, dtype=np.int64))
    return result


def cache_folder(cache_dir=None) -> Path:
    """``cache_dir``, else ``$LAZYKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lazykit`` (``~/.cache/lazykit``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lazykit"


def read_image_archive_cached(path, class_names, per_class: int | None = None, cache_dir=None,
                              splits=("train", "test")) -> dict:
    """:func:`read_image_archive`, decoded once: each split's arrays are kept as ``.npz`` in
    :func:`cache_folder`, keyed by the archive's path, size and modification time, the split and ``per_class``.
    A cached decode of more images per class (or all) serves a smaller request by taking each class's first
    ``per_class``; a damaged cache file is ignored and decoded again."""
    path = Path(path)
    folder = cache_folder(cache_dir)
    stat = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    result = {split: _from_cache(folder, f"{path.name.split('.')[0]}-{tag}-{split}-", per_class)
              for split in splits}
    todo = [split for split in splits if result[split] is None]
    if todo:
        decoded = read_image_archive(path, class_names, per_class, splits=todo)
        for split in todo:
            result[split] = decoded[split]
            _to_cache(folder, f"{path.name.split('.')[0]}-{tag}-{split}-{per_class or 'all'}.npz", *decoded[split])
    return result


def _from_cache(folder: Path, prefix: str, per_class):
    """(X, y) from the smallest cache file ``prefix<k>.npz`` with k ≥ per_class (k = "all" counts as ∞)."""
    candidates = []
    for f in folder.glob(prefix + "*.npz"):
        k = f.stem[len(prefix):]
        size = math.inf if k == "all" else int(k) if k.isdigit() else -1
        if size >= (per_class or math.inf):
            candidates.append((size, str(f)))
    for _, f in sorted(candidates):
        try:
            with np.load(f, allow_pickle=False) as npz:
                X, y = npz["X"], npz["y"]
        except Exception as exc:  # never trust a damaged cache: decode again
            warnings.warn(f"ignoring unreadable cache file {f}: {exc}")
            continue
        if per_class is not None:
            keep = first_per_class(y, per_class)
            X, y = X[keep], y[keep]
        return X, y
    return None


def _to_cache(folder: Path, filename: str, X, y):
    """Write atomically (temporary file, then rename); a cache that cannot be written only warns."""
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as fh:
            tmp = fh.name
            np.savez(fh, X=X, y=y)
        os.replace(tmp, folder / filename)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not cache the decoded images in {folder}: {exc}")


def _read_cifar10(data_dir, per_class, cache_dir):
    path, kind = locate("cifar10", data_dir)
    if kind == "images":
        parts = read_image_archive_cached(path, CIFAR10_CLASSES, per_class, cache_dir)
        return parts, CIFAR10_CLASSES, str(path), {"caveat": JPEG_CAVEAT}
    parts = {}
    for split in ("train", "test"):
        X, y = read_cifar_batches(path, split)
        if per_class is not None:
            keep = first_per_class(y, per_class)
            X, y = X[keep], y[keep]
        parts[split] = (X, y)
    return parts, CIFAR10_CLASSES, str(path), {}


# ---------------------------------------------------------------------------------------- teacher–student
def uniform_sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` points uniform on the unit sphere S^{d−1} ⊂ R^d: standard Gaussian vectors divided by their norm
    (the Gaussian is rotation invariant, so the direction is uniform)."""
    z = rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def teacher_student(n_train: int = 1000, n_test: int = 1000, d: int = 10, n_teacher: int = 3, seed: int = 0,
                    dtype: str = "float64") -> Dataset:
    """The teacher–student regression task of Chizat, Oyallon & Bach (NeurIPS 2019, §3, two-layer ReLU nets).

    Inputs x uniform on the unit sphere S^{d−1}; targets from a two-layer ReLU teacher with ``n_teacher`` = 3
    neurons, y = f*(x) = Σ_{j=1}^{3} max(0, θ_j·x), with θ_j uniform on S^{d−1} and output weights 1 (our
    reading of the paper's setup; the draw is stored in ``info["teacher_weights"]``). Teacher, training inputs
    and test inputs come from independent streams of ``seed``, so n_test does not change the training set.
    """
    for value, what, low in ((n_train, "n_train", 1), (n_test, "n_test", 1), (d, "d", 2), (n_teacher, "n_teacher", 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    check_choice(dtype, "dtype", ("float32", "float64"))
    teacher_seed, train_seed, test_seed = np.random.SeedSequence(int(seed)).spawn(3)
    teacher = uniform_sphere(np.random.default_rng(teacher_seed), n_teacher, d)
    X_train = uniform_sphere(np.random.default_rng(train_seed), n_train, d)
    X_test = uniform_sphere(np.random.default_rng(test_seed), n_test, d)

    def f_star(X):
        return np.maximum(X @ teacher.T, 0.0).sum(axis=1)

    info = {"seed": int(seed), "d": d, "teacher_weights": teacher, "teacher_output_weights": np.ones(n_teacher),
            "formula": "y = sum_j max(0, theta_j . x), x and theta_j uniform on the unit sphere"}
    return Dataset(X_train.astype(dtype), f_star(X_train), X_test.astype(dtype), f_star(X_test),
                   name="teacher-student", task="regression", n_classes=None, image_shape=None, class_names=None,
                   source=f"generated: {n_teacher}-neuron ReLU teacher on S^{d - 1}", info=info)


# ------------------------------------------------------------------------------------------- installing
def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest, sha256: str) -> Path:
    """Fetch ``url`` to ``dest``, keeping it only if its SHA-256 is ``sha256`` (written as ``dest.part``, then
    renamed, so an interrupted download never looks complete)."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as fh:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                fh.write(chunk)
                digest.update(chunk)
    except OSError as exc:  # URLError, timeouts, disk errors
        part.unlink(missing_ok=True)
        raise ConnectionError(f"could not download {url}: {exc}") from exc
    if digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise CorruptDataError(f"{url}: SHA-256 {digest.hexdigest()} differs from the expected {sha256}; "
                               "the download was discarded")
    os.replace(part, dest)
    return dest


def install(name: str, data_dir=None, apt: bool | None = None, base_url: str | None = None) -> Path:
    """Get a data set that does not ship with a dependency; returns the folder (or file's folder) holding it.

    fashion-mnist: with ``apt`` (default: when running as root on Debian/Ubuntu and no data dir is given),
    ``apt-get install dataset-fashion-mnist`` (files in /usr/share/datasets/fashion-mnist); otherwise the
    canonical files are downloaded into ``DIR/fashion-mnist``. cifar10: the canonical cifar-10-python.tar.gz
    into ``DIR``. DIR: ``data_dir``, else ``$LAZYKIT_DATA_DIR``, else ``<checkout>/data``. Every download is
    checked against the SHA-256 in ``DOWNLOADS``; files already present with the right checksum are kept.
    """
    if name in SKLEARN_DATASETS or name == "teacher-student":
        raise ValueError(f"{name!r} needs no install (it ships with scikit-learn or is generated); "
                         f"installable: {', '.join(DOWNLOADS)}")
    check_choice(name, "data set to install", tuple(DOWNLOADS))
    explicit = data_dir is not None or bool(os.environ.get(ENV_DATA_DIR))
    if name == "fashion-mnist" and not explicit and (apt if apt is not None else _apt_usable()):
        if _apt_install("dataset-fashion-mnist"):
            return DEBIAN_FASHION_MNIST_DIR
        print("apt-get could not install dataset-fashion-mnist; downloading the canonical files instead",
              file=sys.stderr)
    base, files = DOWNLOADS[name]
    target = search_dirs(data_dir)[0] if explicit else DEFAULT_DATA_DIRS[0]
    target = target / DOWNLOAD_SUBDIR[name]
    target.mkdir(parents=True, exist_ok=True)
    for filename, sha256 in files.items():
        dest = target / filename
        if dest.is_file() and sha256_file(dest) == sha256:
            print(f"{dest}: present, SHA-256 ok")
            continue
        print(f"downloading {(base_url or base) + filename} -> {dest}")
        download((base_url or base) + filename, dest, sha256)
    return target


def _apt_usable() -> bool:
    return (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None
            and Path("/etc/debian_version").exists())


def _apt_install(package: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", package]
    print("running:", " ".join(command))
    if subprocess.run(command, env=env).returncode == 0:
        return True
    print("running: apt-get update, then again")  # a fresh machine may have no package lists yet
    subprocess.run(["apt-get", "update"], env=env)
    return subprocess.run(command, env=env).returncode == 0


# -------------------------------------------------------------------------------------------- the CLI
def describe(name: str, data_dir=None) -> str:
    """Where ``name`` comes from now (for ``python -m compare data list``)."""
    check_choice(name, "dataset name", DATASETS)
    if name in SKLEARN_DATASETS:
        return f"scikit-learn (bundled: load_{name})"
    if name == "teacher-student":
        return "generated (no files)"
    found = find(name, data_dir)
    if found is None:
        how = "python -m compare data install " + name
        return f"not found (get it: `{how}`; or --data-dir DIR / {ENV_DATA_DIR})"
    path, kind = found
    return f"{path} ({KIND_DESCRIPTIONS[kind]})"


def main(argv=None) -> int:
    """``python -m compare data list [--data-dir DIR]`` / ``python -m compare data install NAME [--data-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m compare data",
                                     description="List the data sets and where each is found; install those that "
                                                 "do not ship with a dependency.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,install}")
    listing = commands.add_parser("list", help="the data sets and where each is found now")
    listing.add_argument("--data-dir", default=None, metavar="DIR", help=f"folder to search (default: "
                         f"${ENV_DATA_DIR}, else <checkout>/data and <checkout>/../shared/data)")
    installing = commands.add_parser("install", help=f"get one of: {', '.join(DOWNLOADS)}")
    installing.add_argument("name", metavar="NAME", help=f"one of: {', '.join(DOWNLOADS)}")
    installing.add_argument("--data-dir", default=None, metavar="DIR",
                            help=f"download into DIR (default ${ENV_DATA_DIR}, else <checkout>/data)")
    installing.add_argument("--no-apt", action="store_true", help="download even where apt-get could install")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "list":
        from compare.bench.harness import format_table
        rows = [(name, "regression" if name in ("diabetes", "teacher-student") else "classification",
                 describe(name, args.data_dir)) for name in DATASETS]
        print(format_table(["dataset", "task", "source"], rows))
        return 0
    try:
        where = install(args.name, args.data_dir, apt=False if args.no_apt else None)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) and not isinstance(exc, CorruptDataError) else 1
    print(f"{args.name} is in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
