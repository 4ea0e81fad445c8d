"""The array cache: image archives decoded once and kept as ``.npz`` files."""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from compare.data.catalog import ENV_CACHE_DIR
from compare.data.preprocess import first_per_class
from compare.data.readers import read_image_archive


def cache_folder(cache_dir=None) -> Path:
    """``cache_dir``, else ``$LAZYKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lazykit`` (``~/.cache/lazykit``)."""
    if cache_dir is not None:
        if isinstance(cache_dir, bytes) or not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be None or a folder path, got {type(cache_dir).__name__} {cache_dir!r}")
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
