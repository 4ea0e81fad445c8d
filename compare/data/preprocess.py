"""Preprocessing: stratified subsets, class selection, pixel scaling and train-fitted standardisation."""
from __future__ import annotations

import numpy as np

from kernels import check_scalar

def standardize_train_test(train: np.ndarray, test: np.ndarray, axes: tuple):
    """Return ((train − μ)/σ, (test − μ)/σ, μ, σ) with μ, σ the mean and standard deviation of ``train`` over
    ``axes`` (computed in float64). A constant feature (σ = 0) is divided by 1, so it stays 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        raise ValueError("train has values too large to standardise (the mean or standard deviation overflows "
                         "float64); rescale the data or pass standardize=False")
    std = np.where(std > 0, std, 1.0)
    m, s = mean.astype(train.dtype), std.astype(train.dtype)
    return (train - m) / s, (test - m) / s, mean.squeeze(), std.squeeze()


def stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct indices into ``y``, each class in proportion to its frequency, in random order.

    Class c gets ⌊n·N_c/N⌋ draws plus one of the n − Σ⌊·⌋ leftovers for the largest fractional parts (ties by
    class order); when n ≥ the number of classes, every class gets at least one (taken from the largest quota).
    """
    check_scalar(n, "n", int, min_val=1, max_val=len(y))
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
    check_scalar(k, "k", int, min_val=1)
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
