"""Readers of the source formats: scikit-learn bundles, IDX files, CIFAR-10 python batches, image archives."""
from __future__ import annotations

import gzip
import io
import math
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from kernels import check_choice

from compare.data.catalog import (CIFAR10_BATCHES, CIFAR10_BATCHES_DIR, IMAGE_SUFFIXES, CorruptDataError,
                                  DataNotFoundError)


def _read_sklearn(name):
    """Features, targets, task and class names of a scikit-learn bundled data set (no network)."""
    from sklearn import datasets
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)  # raw features: we standardise on the train part only
        return bunch.data.astype(np.float64), bunch.target.astype(np.float64), "regression", None
    bunch = datasets.load_digits() if name == "digits" else datasets.load_breast_cancer()
    names = tuple(str(n) for n in bunch.target_names)
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), "classification", names


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


def write_cifar_batches(folder, parts: dict) -> Path:
    """Write ``parts`` ({"train": (images (N, 3, 32, 32) uint8, labels), "test": (...)}) as a CIFAR-10 python
    batches folder ``folder`` (created): the train images in order over data_batch_1..5, the test images in
    test_batch, each a pickle of {"data": N×3072 uint8, "labels": [N ints]} as the canonical files (protocol 4:
    bytes stored as they are, not inflated by protocol 2's latin-1 text). :func:`read_cifar_batches` reads back
    the same arrays in the same order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in CIFAR10_BATCHES.items():
        images, labels = parts[split]
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32) or labels.shape != (len(images),):
            raise ValueError(f"parts[{split!r}] must be (N, 3, 32, 32) uint8 images and N labels, got "
                             f"{images.dtype}{images.shape} and {labels.shape}")
        for name, chunk in zip(names, np.array_split(np.arange(len(images)), len(names))):
            batch = {"batch_label": f"{split} {name}", "data": images[chunk].reshape(len(chunk), -1),
                     "labels": [int(v) for v in labels[chunk]]}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    return folder


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
