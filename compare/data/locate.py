"""Where data files are looked for, and what a found data set looks like on disk (IDX, batches, archives)."""
from __future__ import annotations

import os
from pathlib import Path

from compare.data.catalog import (CIFAR10_ARCHIVE, CIFAR10_BATCHES, CIFAR10_BATCHES_DIR, CIFAR10_JPEG_ARCHIVE,
                                  DEBIAN_FASHION_MNIST_DIR, DEFAULT_DATA_DIRS, DOWNLOADS, ENV_DATA_DIR,
                                  FASHION_MNIST_FILES, IMAGE_DATASETS, DataNotFoundError)


def split_dirs(value) -> list:
    """Folders from ``value``: a path, a string of folders separated by ``os.pathsep`` (":" on POSIX, ";" on
    Windows; empty entries dropped), or a list of either, in order."""
    if isinstance(value, (list, tuple)):
        return [d for item in value for d in split_dirs(item)]
    if isinstance(value, os.PathLike):
        return [Path(value).expanduser()]
    if not isinstance(value, str):
        raise TypeError(f"data_dir must be a path, a string of {os.pathsep!r}-separated folders or a list of "
                        f"them, got {type(value).__name__}")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def search_dirs(data_dir=None) -> list:
    """Folders searched for data files, in order: those of ``data_dir`` alone if given, else those of
    ``$LAZYKIT_DATA_DIR`` alone if set (each may name several folders, ``os.pathsep``-separated), else
    ``<checkout>/data`` and a ``shared/data`` folder beside the checkout (``DEFAULT_DATA_DIRS``)."""
    if data_dir is not None:
        dirs = split_dirs(data_dir)
        if not dirs:
            raise ValueError(f"data_dir names no folder: {data_dir!r}")
        return dirs
    if os.environ.get(ENV_DATA_DIR) and split_dirs(os.environ[ENV_DATA_DIR]):
        return split_dirs(os.environ[ENV_DATA_DIR])
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
        return all(idx_file(path, f) is not None for files in FASHION_MNIST_FILES.values() for f in files)
    if kind == "batches":
        return (path / CIFAR10_BATCHES["train"][0]).is_file() and (path / CIFAR10_BATCHES["test"][0]).is_file()
    return path.is_file()


def idx_file(folder: Path, gz_name: str):
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
    if not (isinstance(name, str) and name in IMAGE_DATASETS):
        raise ValueError(f"name={name!r}: only the data sets read from files have files to find, valid: "
                         f"{', '.join(IMAGE_DATASETS)} (the scikit-learn sets ship with it)")
    return next(((p, kind) for p, kind in _candidates(name, data_dir) if _present(p, kind)), None)


def locate(name: str, data_dir=None):
    """Like :func:`find`, but a missing data set raises :class:`DataNotFoundError` saying where we looked and
    how to get it."""
    found = find(name, data_dir)
    if found is not None:
        return found
    dirs = search_dirs(data_dir)
    if data_dir is not None and not any(d.is_dir() for d in dirs):
        where = (f"the data dir {dirs[0]} does not exist" if len(dirs) == 1
                 else f"none of the data dirs {', '.join(map(str, dirs))} exists")
    else:
        looked = sorted({str(p) for p, _ in _candidates(name, data_dir)})
        where = "looked in " + ", ".join(looked)
    if name == "fashion-mnist":
        files = ", ".join(f for pair in FASHION_MNIST_FILES.values() for f in pair)
        raise DataNotFoundError(
            f"Fashion-MNIST not found ({files}): {where}. Get it with `python -m compare data install "
            f"fashion-mnist [--data-dir DIR]` (offline: `--from` a downloaded dataset-fashion-mnist .deb or a folder "
            f"of the four files; as root on Debian/Ubuntu without --data-dir: apt-get install "
            f"dataset-fashion-mnist; otherwise it downloads the canonical files; all checked by SHA-256), then pass "
            f"--data-dir DIR (data_dir= in Python) or set {ENV_DATA_DIR}=DIR.")
    url, files = DOWNLOADS["cifar10"]
    raise DataNotFoundError(
        f"CIFAR-10 not found: {where}, for {CIFAR10_BATCHES_DIR}/ (the canonical python batches), "
        f"{CIFAR10_ARCHIVE} or {CIFAR10_JPEG_ARCHIVE}. Get it with `python -m compare data install cifar10 "
        f"[--data-dir DIR]` (downloads {url}{CIFAR10_ARCHIVE}, 163 MiB, SHA-256 {files[CIFAR10_ARCHIVE]}) or "
        f"copy one of those into DIR; then pass --data-dir DIR (data_dir= in Python) or set {ENV_DATA_DIR}=DIR.")
