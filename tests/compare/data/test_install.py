"""Installing Fashion-MNIST offline (a .deb read with the standard library, a folder, the Debian package's files),
checked by the SHA-256 of the IDX content, and data dirs naming several folders. Every file here is fabricated in
tmp_path: a 20 + 10 image Fashion-MNIST and a .deb built like dpkg-deb builds one; nothing touches the network."""
import gzip
import hashlib
import importlib
import io
import os
import sys
import tarfile

import numpy as np
import pytest

from compare import data
from compare.data import deb

install_module = importlib.import_module("compare.data.install")
NAMES = [name for pair in data.FASHION_MNIST_FILES.values() for name in pair]
PACKAGE_DIR = "./usr/share/datasets/fashion-mnist/"


def _idx(array):
    """An IDX file of uint8 ``array``: 0, 0, type 0x08, ndim, sizes as big-endian uint32, then the bytes."""
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


@pytest.fixture
def fashion(monkeypatch):
    """{file name: gzipped IDX bytes} of a tiny Fashion-MNIST (labels 0..9 cycling), and the IDX checksums
    patched to its content, as the real table holds the real content's."""
    rng = np.random.default_rng(0)
    raw = {}
    for split, n in (("train", 20), ("test", 10)):
        images, labels = data.FASHION_MNIST_FILES[split]
        raw[images] = _idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        raw[labels] = _idx(np.arange(n, dtype=np.uint8) % 10)
    for name, blob in raw.items():
        monkeypatch.setitem(data.FASHION_MNIST_IDX_SHA256, name[:-3], hashlib.sha256(blob).hexdigest())
    return {name: gzip.compress(blob, mtime=0) for name, blob in raw.items()}


def _ar(members):
    """An ar archive as deb(5) lays it out: magic, then a 60-byte header and the data (padded to even) each."""
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) % 2 else b"")
    return bytes(out)


def _write_deb(path, files, compression="xz"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(PACKAGE_DIR + name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    suffix = {"xz": ".xz", "gz": ".gz", "": ""}[compression]
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b"\xfd7zXZ"),
                          (f"data.tar{suffix}", buffer.getvalue())]))
    return path


@pytest.mark.parametrize("compression", ["xz", "gz", ""])
def test_deb_files_are_read_with_the_standard_library(tmp_path, fashion, compression):
    """xz is what Debian bookworm's dataset-fashion-mnist uses; gzip and an uncompressed data.tar also occur."""
    path = _write_deb(tmp_path / "p.deb", fashion, compression)
    assert list(deb.ar_members(path)) == ["debian-binary", "control.tar.xz",
                                          "data.tar" + {"xz": ".xz", "gz": ".gz", "": ""}[compression]]
    assert deb.ar_members(path)["debian-binary"] == b"2.0\n"
    assert deb.read_files(path, NAMES + ["absent"]) == fashion


def test_zstd_deb_without_a_reader_says_what_to_do(tmp_path, monkeypatch):
    """Python < 3.14 has no zstd in the standard library: with no zstandard package either, the error names
    both ways out."""
    path = tmp_path / "ubuntu.deb"
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("data.tar.zst", b"\x28\xb5\x2f\xfd" + bytes(20))]))
    monkeypatch.setitem(sys.modules, "compression", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(data.CorruptDataError, match=r"zstd .*Python 3\.14.*pip install zstandard.*dpkg-deb -x"):
        deb.read_files(path, NAMES)


def test_damaged_debs_are_refused(tmp_path, fashion):
    not_ar = tmp_path / "x.deb"
    not_ar.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(data.CorruptDataError, match="not a .deb"):
        deb.read_files(not_ar, NAMES)
    good = _write_deb(tmp_path / "good.deb", fashion).read_bytes()
    cut = tmp_path / "cut.deb"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.CorruptDataError, match="truncated"):
        deb.read_files(cut, NAMES)


def test_install_from_a_deb_checks_the_content_then_loads(tmp_path, fashion):
    path = _write_deb(tmp_path / "dataset-fashion-mnist_0_all.deb", fashion)
    assert data.main(["install", "fashion-mnist", "--from", str(path), "--data-dir", str(tmp_path / "d")]) == 0
    ds = data.load("fashion-mnist", data_dir=tmp_path / "d", standardize=False)
    assert ds.X_train.shape == (20, 1, 28, 28) and list(ds.y_test) != [] and ds.n_test == 10
    assert sorted(p.name for p in (tmp_path / "d" / "fashion-mnist").iterdir()) == sorted(NAMES)


def test_a_wrong_file_installs_nothing(tmp_path, fashion):
    """One label file from another data set: its IDX content checksum differs, so no file is written."""
    bad = dict(fashion, **{"t10k-labels-idx1-ubyte.gz": gzip.compress(_idx(np.zeros(10, dtype=np.uint8)))})
    path = _write_deb(tmp_path / "p.deb", bad)
    with pytest.raises(data.CorruptDataError, match="t10k-labels-idx1-ubyte.gz has IDX content SHA-256"):
        data.install("fashion-mnist", data_dir=tmp_path / "d", source=path)
    assert not (tmp_path / "d" / "fashion-mnist").exists()


def test_install_from_a_folder_of_gzipped_or_plain_files(tmp_path, fashion):
    """A folder holding the four files itself or in fashion-mnist/, each .gz (any gzip) or unzipped."""
    src = tmp_path / "src" / "fashion-mnist"
    src.mkdir(parents=True)
    for i, (name, blob) in enumerate(fashion.items()):
        if i % 2:
            (src / name[:-3]).write_bytes(gzip.decompress(blob))
        else:
            (src / name).write_bytes(gzip.compress(gzip.decompress(blob), compresslevel=1))   # another gzip
    where = data.install("fashion-mnist", data_dir=tmp_path / "d", source=tmp_path / "src")
    assert where == tmp_path / "d" / "fashion-mnist"
    assert data.load("fashion-mnist", data_dir=tmp_path / "d").n_train == 20
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataNotFoundError, match="holds no train-images-idx3-ubyte.gz"):
        data.install("fashion-mnist", data_dir=tmp_path / "e", source=tmp_path / "empty")


def test_the_debian_package_files_are_used_offline(tmp_path, fashion, monkeypatch):
    """With the package's folder present, install needs no network: without a data dir it names that folder,
    with one it copies the checked files there. The download URL points nowhere, so any attempt would fail."""
    package = tmp_path / "usr-share-datasets"
    package.mkdir()
    for name, blob in fashion.items():
        (package / name).write_bytes(blob)
    monkeypatch.setattr(install_module, "DEBIAN_FASHION_MNIST_DIR", package)
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    nowhere = (tmp_path / "no-mirror").as_uri() + "/"
    assert data.install("fashion-mnist", apt=False, base_url=nowhere) == package
    copied = data.install("fashion-mnist", data_dir=tmp_path / "d", apt=False, base_url=nowhere)
    assert sorted(p.name for p in copied.iterdir()) == sorted(NAMES)
    # without the package, files already in the data dir that are valid by content (not the canonical .gz
    # bytes) are kept: nothing is downloaded (from nowhere, which would fail)
    monkeypatch.setattr(install_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    assert data.install("fashion-mnist", data_dir=tmp_path / "d", apt=False, base_url=nowhere) == copied


def test_offline_download_failure_names_the_offline_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(install_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(ConnectionError, match=r"apt-get download dataset-fashion-mnist.*--from"):
        data.install("fashion-mnist", data_dir=tmp_path / "d", apt=False,
                     base_url=(tmp_path / "no-mirror").as_uri() + "/")


def test_from_applies_to_fashion_mnist_only(tmp_path):
    with pytest.raises(ValueError, match="--from applies to fashion-mnist; for cifar10, copy cifar-10-python"):
        data.install("cifar10", data_dir=tmp_path, source=tmp_path)


def test_several_data_dirs_are_searched_in_order(tmp_path, fashion, monkeypatch):
    """--data-dir / LAZYKIT_DATA_DIR "A:B" (os.pathsep): the first folder holding a data set wins."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (a, b, c):
        folder.mkdir()
    for folder in (b, c):
        for name, blob in fashion.items():
            (folder / name).write_bytes(blob)
    joined = os.pathsep.join([str(a), str(b), str(c)])
    assert data.search_dirs(joined) == [a, b, c] and data.search_dirs([a, str(b)]) == [a, b]
    assert data.find("fashion-mnist", joined) == (b, "idx")
    assert data.find("fashion-mnist", os.pathsep.join([str(c), str(b)])) == (c, "idx")
    monkeypatch.setenv(data.ENV_DATA_DIR, joined + os.pathsep)          # a trailing separator is no folder
    assert data.search_dirs() == [a, b, c] and data.find("fashion-mnist") == (b, "idx")
    assert data.find("cifar10") is None                                 # only those folders, no fallback
    with pytest.raises(data.DataNotFoundError, match="none of the data dirs"):
        data.load("fashion-mnist", data_dir=os.pathsep.join([str(tmp_path / "x"), str(tmp_path / "y")]))
    with pytest.raises(ValueError, match="data_dir names no folder"):
        data.search_dirs(os.pathsep)
