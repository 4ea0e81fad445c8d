"""What a found data set *is*, independent of where it was found: a SHA-256 of its content.

Sweeps fingerprint their configuration with it (``data_sha256``) instead of the folder it came from, so the same
files reached through ``--data-dir``, ``LAZYKIT_DATA_DIR`` or the default folders are the same data, and other
files in the same folder are not. Fashion-MNIST: the SHA-256 of the four IDX files' uncompressed contents
(any gzip of them is the same data); CIFAR-10 python batches: of the six batch files; an archive: of its bytes.
Hashing reads the files once per process (about 0.1–0.5 s); the result is kept per path, size and mtime.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path

from compare.data.catalog import CIFAR10_BATCHES, FASHION_MNIST_FILES
from compare.data.locate import idx_file, locate


def content_sha256(name: str, data_dir=None) -> str:
    """SHA-256 (hex) of the content of data set ``name`` as :func:`~compare.data.locate` finds it; a missing
    data set raises :class:`~compare.data.catalog.DataNotFoundError` (saying how to get it)."""
    path, kind = locate(name, data_dir)
    if kind == "idx":
        files = [idx_file(path, f) for pair in FASHION_MNIST_FILES.values() for f in pair]
        parts = [(f.name.removesuffix(".gz"), _file_sha256(f, f.suffix == ".gz")) for f in files]
    elif kind == "batches":
        files = [path / b for split in ("train", "test") for b in CIFAR10_BATCHES[split]]
        parts = [(f.name, _file_sha256(f, False)) for f in files]
    else:
        return _file_sha256(path, False)
    return hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(parts)).encode()).hexdigest()


def _file_sha256(path: Path, gunzip: bool) -> str:
    stat = Path(path).stat()
    return _cached_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, gunzip)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int, gunzip: bool) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
