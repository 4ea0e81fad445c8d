"""Installing the data sets that do not ship with a dependency (apt on Debian/Ubuntu, else checked downloads)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from kernels import check_choice

from compare.data.catalog import (DEBIAN_FASHION_MNIST_DIR, DEFAULT_DATA_DIRS, DOWNLOAD_SUBDIR, DOWNLOADS,
                                  ENV_DATA_DIR, SKLEARN_DATASETS, CorruptDataError)
from compare.data.locate import search_dirs


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
