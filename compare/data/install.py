"""Installing the data sets that do not ship with a dependency: from files at hand (a .deb, a folder, the Debian
package's files) or apt on Debian/Ubuntu, else checked downloads."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from kernels import check_choice

from compare.data import deb
from compare.data.catalog import (DEBIAN_FASHION_MNIST_DIR, DEBIAN_FASHION_MNIST_PACKAGE, DEFAULT_DATA_DIRS,
                                  DOWNLOAD_SUBDIR, DOWNLOADS, ENV_DATA_DIR, FASHION_MNIST_FILES,
                                  FASHION_MNIST_IDX_SHA256, SKLEARN_DATASETS, CorruptDataError, DataNotFoundError)
from compare.data.locate import idx_file, search_dirs

GZIP_MAGIC = b"\x1f\x8b"
OFFLINE_HINT = (f"offline, get the Debian package's file on any machine with apt (`apt-get download "
                f"{DEBIAN_FASHION_MNIST_PACKAGE}`) and run `python -m compare data install fashion-mnist --from "
                f"{DEBIAN_FASHION_MNIST_PACKAGE}_*.deb`, or pass --from a folder holding the four IDX files")


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


def idx_sha256(blob: bytes) -> str:
    """SHA-256 of an IDX file's uncompressed bytes (``blob`` gzipped or not): the same for every gzip of it."""
    return hashlib.sha256(gzip.decompress(blob) if blob[:2] == GZIP_MAGIC else blob).hexdigest()


def fashion_mnist_files(source) -> dict:
    """{file name: bytes} of the four Fashion-MNIST IDX files (``.gz`` or not) in ``source``: a ``.deb`` (the
    Debian package, read by :mod:`compare.data.deb`) or a folder holding them (itself or its ``fashion-mnist/``)."""
    path = Path(source).expanduser()
    wanted = [f for pair in FASHION_MNIST_FILES.values() for f in pair]
    if path.is_file():
        blobs = deb.read_files(path, wanted + [f[:-3] for f in wanted])
    elif path.is_dir():
        folder = path / "fashion-mnist" if idx_file(path, wanted[0]) is None else path
        blobs = {}
        for name in wanted:
            found = idx_file(folder, name)
            if found is not None:
                blobs[found.name] = found.read_bytes()
    else:
        raise DataNotFoundError(f"--from {path}: no such file or folder (expected a .deb or a folder of IDX files)")
    files = {}
    for name in wanted:
        for candidate in (name, name[:-3]):
            if candidate in blobs:
                files[candidate] = blobs[candidate]
                break
        else:
            raise DataNotFoundError(f"{path} holds no {name} (nor its unzipped {name[:-3]}); Fashion-MNIST needs "
                                    f"{', '.join(wanted)}")
    return files


def check_fashion_mnist(files: dict, where) -> None:
    """CorruptDataError unless each IDX file's uncompressed content has the SHA-256 in FASHION_MNIST_IDX_SHA256."""
    for name, blob in files.items():
        stem = name[:-3] if name.endswith(".gz") else name
        try:
            digest = idx_sha256(blob)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise CorruptDataError(f"{where}: {name} is not a readable gzip file ({exc})") from exc
        if digest != FASHION_MNIST_IDX_SHA256[stem]:
            raise CorruptDataError(f"{where}: {name} has IDX content SHA-256 {digest}, not Fashion-MNIST's "
                                   f"{FASHION_MNIST_IDX_SHA256[stem]}; nothing was installed")


def _write_atomically(dest: Path, blob: bytes) -> None:
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(blob)
    os.replace(part, dest)


def install_fashion_mnist_from(source, target) -> Path:
    """Copy Fashion-MNIST from ``source`` (a .deb or a folder) into ``target``, all four files checked first."""
    files = fashion_mnist_files(source)
    check_fashion_mnist(files, source)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        _write_atomically(target / name, blob)
        print(f"{target / name}: from {source}, IDX SHA-256 ok")
    return target


def _valid_copy(dest: Path, canonical_sha256: str) -> bool:
    """``dest`` is the canonical download, or (Fashion-MNIST) any gzip of the right IDX content."""
    if not dest.is_file():
        return False
    if sha256_file(dest) == canonical_sha256:
        return True
    stem = dest.name[:-3] if dest.name.endswith(".gz") else dest.name
    if stem not in FASHION_MNIST_IDX_SHA256:
        return False
    try:
        return idx_sha256(dest.read_bytes()) == FASHION_MNIST_IDX_SHA256[stem]
    except (OSError, EOFError):
        return False


def install(name: str, data_dir=None, apt: bool | None = None, base_url: str | None = None,
            source=None) -> Path:
    """Get a data set that does not ship with a dependency; returns the folder (or file's folder) holding it.

    fashion-mnist, in this order: ``source`` (``--from``: a downloaded .deb of dataset-fashion-mnist or a
    folder of the four IDX files) copied into ``DIR/fashion-mnist``; the Debian package's files in
    /usr/share/datasets/fashion-mnist, used where they are (no data dir given) or copied into
    ``DIR/fashion-mnist``; with ``apt`` (default: as root on Debian/Ubuntu, no data dir given)
    ``apt-get install dataset-fashion-mnist``; else the canonical files downloaded into ``DIR/fashion-mnist``.
    Files from a .deb, a folder or the package are checked by the SHA-256 of their IDX content
    (``FASHION_MNIST_IDX_SHA256``), downloads by that of the canonical ``.gz`` (``DOWNLOADS``); files already
    present and valid are kept. cifar10: the canonical cifar-10-python.tar.gz into ``DIR``. DIR: the first
    folder of ``data_dir``, else of ``$LAZYKIT_DATA_DIR``, else ``<checkout>/data``.
    """
    if name in SKLEARN_DATASETS or name == "teacher-student":
        raise ValueError(f"{name!r} needs no install (it ships with scikit-learn or is generated); "
                         f"installable: {', '.join(DOWNLOADS)}")
    check_choice(name, "data set to install", tuple(DOWNLOADS))
    explicit = data_dir is not None or bool(os.environ.get(ENV_DATA_DIR))
    target = (search_dirs(data_dir)[0] if explicit else DEFAULT_DATA_DIRS[0]) / DOWNLOAD_SUBDIR[name]
    if source is not None:
        if name != "fashion-mnist":
            raise ValueError(f"--from applies to fashion-mnist; for {name}, copy {', '.join(DOWNLOADS[name][1])} "
                             f"into a data folder (it is checked when read)")
        return install_fashion_mnist_from(source, target)
    if name == "fashion-mnist":
        try:
            package = fashion_mnist_files(DEBIAN_FASHION_MNIST_DIR) if DEBIAN_FASHION_MNIST_DIR.is_dir() else None
        except DataNotFoundError:
            package = None
        if package is not None:
            check_fashion_mnist(package, DEBIAN_FASHION_MNIST_DIR)
            if not explicit:
                print(f"{DEBIAN_FASHION_MNIST_DIR}: present (Debian package {DEBIAN_FASHION_MNIST_PACKAGE}), "
                      "IDX SHA-256 ok")
                return DEBIAN_FASHION_MNIST_DIR
            return install_fashion_mnist_from(DEBIAN_FASHION_MNIST_DIR, target)
        if not explicit and (apt if apt is not None else _apt_usable()):
            if _apt_install(DEBIAN_FASHION_MNIST_PACKAGE):
                return DEBIAN_FASHION_MNIST_DIR
            print(f"apt-get could not install {DEBIAN_FASHION_MNIST_PACKAGE}; downloading the canonical files "
                  "instead", file=sys.stderr)
    base, files = DOWNLOADS[name]
    target.mkdir(parents=True, exist_ok=True)
    for filename, sha256 in files.items():
        dest = target / filename
        if _valid_copy(dest, sha256):
            print(f"{dest}: present, SHA-256 ok")
            continue
        print(f"downloading {(base_url or base) + filename} -> {dest}")
        try:
            download((base_url or base) + filename, dest, sha256)
        except ConnectionError as exc:
            raise ConnectionError(f"{exc}; {OFFLINE_HINT}" if name == "fashion-mnist" else str(exc)) from exc
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
