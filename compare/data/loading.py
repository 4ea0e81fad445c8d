"""``load``: one call from a data set's name to train/test arrays ready for a kernel or a network."""
from __future__ import annotations

import math

import numpy as np

from kernels import check_choice

from compare.data.cache import read_image_archive_cached
from compare.data.catalog import (CIFAR10_CLASSES, DATASETS, FASHION_MNIST_CLASSES, FASHION_MNIST_FILES,
                                  IMAGE_DATASETS, JPEG_CAVEAT, SKLEARN_DATASETS, TEST_FRACTION, CorruptDataError,
                                  Dataset)
from compare.data.locate import idx_file, locate
from compare.data.preprocess import (_as_float, _check_size, _keep_classes, _subset, first_per_class,
                                     standardize_train_test)
from compare.data.readers import _read_sklearn, read_cifar_batches, read_idx
from compare.data.synthetic import teacher_student


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


def _read_fashion_mnist(data_dir, per_class, cache_dir):
    folder, _ = locate("fashion-mnist", data_dir)
    parts = {}
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        images, labels = read_idx(idx_file(folder, images_name)), read_idx(idx_file(folder, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise CorruptDataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not "
                                   "form a Fashion-MNIST split (N×28×28 images, N labels 0..9)")
        X, y = images[:, None], labels.astype(np.int64)
        if per_class is not None:
            keep = first_per_class(y, per_class)
            X, y = X[keep], y[keep]
        parts[split] = (X, y)
    return parts, FASHION_MNIST_CLASSES, str(folder), {}


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


def _split_per_class(n_train, n_test, classes):
    """The ``first_per_class`` of :func:`load_split` on an image data set: the sizes shared out among the kept
    classes, rounded up (None: all images)."""
    n_kept = len(classes) if classes else 10
    return -(-max(n_train or 0, n_test or 0) // n_kept) or None


def split_source(name: str, n_train=None, n_test=None, data_dir=None, classes=None) -> dict:
    """The source images :func:`load_split` draws from for these sizes and ``classes``, for every seed: {"train":
    (images uint8, labels), "test": (...)}, labels as in the source (not relabelled), in the source's order.

    Image data sets only. A data folder holding just these images in the same order (for CIFAR-10,
    :func:`~compare.data.readers.write_cifar_batches`) gives the same ``load_split`` results as the full data
    set: load_split keeps the first images of each class of each split, which these are.
    """
    check_choice(name, "data set with files", IMAGE_DATASETS)
    reader = _read_fashion_mnist if name == "fashion-mnist" else _read_cifar10
    parts, class_names, _, _ = reader(data_dir, _split_per_class(n_train, n_test, classes), None)
    if classes is not None:
        X, y = parts["train"]
        kept = [class_names.index(c) for c in _keep_classes(X[:0], y[:0], class_names, classes, "classification",
                                                            name)[2]]
        parts = {split: (X[np.isin(y, kept)], y[np.isin(y, kept)]) for split, (X, y) in parts.items()}
    return parts


def load_split(name: str, n_train=None, n_test=None, seed: int = 0, data_dir=None, classes=None, **kwargs) -> Dataset:
    """:func:`load` for an experiment: sizes larger than a scikit-learn set holds are capped at what it has
    (None), and an image archive is decoded only as far as the sizes need (``first_per_class`` = the sizes
    shared out among the kept classes, rounded up)."""
    if name in IMAGE_DATASETS:
        kwargs["first_per_class"] = _split_per_class(n_train, n_test, classes)
    elif name in SKLEARN_DATASETS:
        full = load(name, seed=seed)
        n_train = None if n_train is None or n_train >= full.n_train else n_train
        n_test = None if n_test is None or n_test >= full.n_test else n_test
    return load(name, n_train=n_train, n_test=n_test, seed=seed, data_dir=data_dir,
                classes=list(classes) if classes else None, **kwargs)
