"""compare.data's files: the CIFAR-10 readers (python batches, image archives), the array cache, the IDX parser,
where files are looked for, install and the CLI.

Real-data checks (marked ``data``) run only where ``data.find`` finds the files (e.g. ../shared/data/cifar10-jpeg.tar.gz,
the Debian Fashion-MNIST package); everything else is built in tmp_path. Nothing here touches the network.
"""
import gzip
import hashlib
import importlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from compare import data


# -------------------------------------------------------------------------------- CIFAR-10 python batches
def _planes(i, label):
    """Image i: red plane (h·32 + w + i) mod 256, green = 10·label, blue = 200 (distinct per channel)."""
    red = (np.arange(1024) + i) % 256
    return np.concatenate([red, np.full(1024, 10 * label), np.full(1024, 200)]).astype(np.uint8)


def _write_batches(folder, n_per_batch=20):
    """A canonical-format cifar-10-batches-py: pickled dicts with bytes keys, 'data' N×3072 uint8 rows."""
    folder.mkdir(parents=True)
    i = 0
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = [(i + j) % 10 for j in range(n_per_batch)]
        rows = np.stack([_planes(i + j, labels[j]) for j in range(n_per_batch)])
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                 b"filenames": [f"img{i + j}.png".encode() for j in range(n_per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        i += n_per_batch
    return folder


def test_cifar_python_batches_reader(tmp_path):
    _write_batches(tmp_path / "cifar-10-batches-py")
    X, y = data.read_cifar_batches(tmp_path / "cifar-10-batches-py", "train")
    assert X.shape == (100, 3, 32, 32) and X.dtype == np.uint8 and list(y[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # row layout: 1024 red values (row-major 32×32), then green, then blue
    np.testing.assert_array_equal(X[7, 0], ((np.arange(1024) + 7) % 256).reshape(32, 32))
    assert (X[7, 1] == 70).all() and (X[7, 2] == 200).all()
    ds = data.load("cifar10", data_dir=tmp_path, standardize=False)
    assert ds.X_train.shape == (100, 3, 32, 32) and ds.X_test.shape == (20, 3, 32, 32)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.class_names == data.CIFAR10_CLASSES
    # examples come in a seeded random order; the red plane's offset names the source image
    source = np.rint(ds.X_train[:, 0, 0, 0] * 255).astype(int)
    assert sorted(source) == list(range(100)) and not np.array_equal(source, np.arange(100))
    np.testing.assert_allclose(ds.X_train, X[source] / 255.0, atol=1e-7)   # float32 rounding of k/255
    np.testing.assert_array_equal(ds.y_train, y[source])
    flat = data.load("cifar10", data_dir=tmp_path, flatten=True, first_per_class=2)
    assert flat.X_train.shape == (20, 3072) and flat.image_shape == (3, 32, 32)


def test_cifar_canonical_archive_reads_like_the_folder(tmp_path):
    folder = _write_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_tar = data.read_cifar_batches(tmp_path / "cifar-10-python.tar.gz", "test")
    from_dir = data.read_cifar_batches(folder, "test")
    np.testing.assert_array_equal(from_tar[0], from_dir[0])
    np.testing.assert_array_equal(from_tar[1], from_dir[1])
    assert data.find("cifar10", tmp_path) == (tmp_path / "cifar-10-python.tar.gz", "archive")


def test_cifar_batch_pickle_cannot_run_code(tmp_path):
    folder = _write_batches(tmp_path / "cifar-10-batches-py")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(data.CorruptDataError, match=r"refusing to load (__builtin__|builtins)\.print"):
        data.read_cifar_batches(folder, "test")


# ------------------------------------------------------------------------------------ image-folder archive
def _image_bytes(rgb, fmt):
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), rgb, dtype=np.uint8)).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _write_image_archive(path, n_train=3, n_test=2, fmt="PNG", extra_class=None):
    """top/{train,test}/<class>/<n>.<ext>, solid colour (20·label, 30·n, 7); files added in shuffled order and
    named without zero padding, so the reader must sort them numerically (2 before 10)."""
    ext = "png" if fmt == "PNG" else "jpg"
    with tarfile.open(path, "w:gz") as tar:
        classes = list(data.CIFAR10_CLASSES) + ([extra_class] if extra_class else [])
        for split, count in (("train", n_train), ("test", n_test)):
            numbers = [0, 1, 2, 10][:count] if count <= 4 else list(range(count))
            for label, name in enumerate(classes):
                for n in reversed(numbers):
                    blob = _image_bytes((20 * label, 30 * (numbers.index(n)), 7), fmt)
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{name}/{n}.{ext}")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    return path


def test_image_archive_reader_labels_order_and_subset(tmp_path):
    archive = _write_image_archive(tmp_path / "cifar10-jpeg.tar.gz", n_train=4, n_test=2)
    parts = data.read_image_archive(archive, data.CIFAR10_CLASSES, per_class=3)
    X, y = parts["train"]
    assert X.shape == (30, 3, 32, 32) and X.dtype == np.uint8
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(X[:, 0, 0, 0], 20 * y)                  # red encodes the class folder
    np.testing.assert_array_equal(X[:3, 1, 0, 0], [0, 30, 60])            # files 0, 1, 2 (numeric order; not 10)
    assert parts["test"][0].shape == (20, 3, 32, 32)


def test_image_archive_jpeg_decodes_close_to_the_colour(tmp_path):
    archive = _write_image_archive(tmp_path / "cifar10-jpeg.tar.gz", n_train=2, n_test=1, fmt="JPEG")
    X, y = data.read_image_archive(archive, data.CIFAR10_CLASSES, splits=("train",))["train"]
    # a flat 32×32 block survives JPEG (q95, 4:2:0) to within a few levels of 255
    assert np.abs(X[:, 0].astype(int) - 20 * y[:, None, None]).max() <= 4


def test_image_archive_is_cached_and_a_bigger_cache_serves_a_smaller_request(tmp_path, monkeypatch):
    _write_image_archive(tmp_path / "cifar10-jpeg.tar.gz", n_train=4, n_test=2)
    cache = tmp_path / "cache"
    full = data.load("cifar10", data_dir=tmp_path, cache_dir=cache, standardize=False)
    assert full.X_train.shape == (40, 3, 32, 32) and "caveat" in full.info
    assert sorted(p.name.rsplit("-", 1)[1] for p in cache.glob("*.npz")) == ["all.npz", "all.npz"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data.cache, "read_image_archive", no_decoding)   # looked up where the cache calls it
    small = data.load("cifar10", data_dir=tmp_path, cache_dir=cache, standardize=False, first_per_class=2)
    assert small.X_train.shape == (20, 3, 32, 32)
    assert list(np.bincount(small.y_train)) == [2] * 10
    # green = 30 × the file's rank in its class: the first two files (0 and 1) of each class were kept
    assert sorted(set(np.rint(small.X_train[:, 1, 0, 0] * 255).astype(int))) == [0, 30]
    np.testing.assert_array_equal(np.rint(small.X_train[:, 0, 0, 0] * 255), 20 * small.y_train)


def test_damaged_cache_is_decoded_again(tmp_path):
    _write_image_archive(tmp_path / "cifar10-jpeg.tar.gz", n_train=2, n_test=1)
    cache = tmp_path / "cache"
    first = data.load("cifar10", data_dir=tmp_path, cache_dir=cache, standardize=False)
    for f in cache.glob("*.npz"):
        f.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="ignoring unreadable cache file"):
        again = data.load("cifar10", data_dir=tmp_path, cache_dir=cache, standardize=False)
    np.testing.assert_array_equal(first.X_train, again.X_train)


def test_corrupt_archives_are_reported(tmp_path):
    bad = tmp_path / "garbage"
    bad.mkdir()
    (bad / "cifar10-jpeg.tar.gz").write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(data.CorruptDataError, match="cifar10-jpeg.tar.gz"):
        data.load("cifar10", data_dir=bad, cache_dir=tmp_path / "c")
    good = _write_image_archive(tmp_path / "good.tar.gz", n_train=2, n_test=1)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "cifar10-jpeg.tar.gz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(data.CorruptDataError, match="damaged archive"):
        data.load("cifar10", data_dir=cut, cache_dir=tmp_path / "c")
    odd = tmp_path / "odd"
    odd.mkdir()
    _write_image_archive(odd / "cifar10-jpeg.tar.gz", n_train=1, n_test=1, extra_class="unicorn")
    with pytest.raises(data.CorruptDataError, match="unexpected class folders.*unicorn"):
        data.load("cifar10", data_dir=odd, cache_dir=tmp_path / "c")


@pytest.mark.data("cifar10")
def test_real_cifar10_jpeg_subset(tmp_path):
    path, kind = data.find("cifar10")
    if kind != "images":
        pytest.skip(f"CIFAR-10 found as {path}, not as the JPEG archive {data.CIFAR10_JPEG_ARCHIVE} this test reads")
    ds = data.load("cifar10", data_dir=path.parent, first_per_class=200, cache_dir=tmp_path)
    assert ds.X_train.shape == (2000, 3, 32, 32) and ds.X_test.shape == (2000, 3, 32, 32)
    assert ds.class_names == data.CIFAR10_CLASSES
    assert list(np.bincount(ds.y_train)) == [200] * 10 and list(np.bincount(ds.y_test)) == [200] * 10
    # Channel means of CIFAR-10's training set are (0.4914, 0.4822, 0.4465). Over 2000 images the per-image
    # channel mean has a spread of about 0.12-0.15, so the subset's mean has a standard error of about
    # 0.15/sqrt(2000) = 0.0034; 0.01 is three standard errors (JPEG shifts the means by under 0.001).
    np.testing.assert_allclose(ds.info["mean"], [0.4914, 0.4822, 0.4465], atol=0.01)
    # Label order against the pictures themselves: airplanes (sky) and ships (sea) are the only classes whose
    # images are bluer than red on average (blue − red ≈ +0.06 and +0.08 on this subset; others ≤ −0.02).
    raw = ds.X_train * ds.info["std"][None, :, None, None] + ds.info["mean"][None, :, None, None]
    blue_minus_red = np.array([(raw[ds.y_train == c, 2] - raw[ds.y_train == c, 0]).mean() for c in range(10)])
    assert set(np.argsort(blue_minus_red)[-2:]) == {0, 8}
    assert np.abs(ds.X_train.mean(axis=(0, 2, 3))).max() < 1e-5  # standardised per channel (float32)


# ----------------------------------------------------------------------------------------- Fashion-MNIST
def _idx_bytes(array, type_code):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_fashion(folder, n_train=20, n_test=10):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = data.FASHION_MNIST_FILES[split]
        (folder / images_name).write_bytes(gzip.compress(_idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x08)))
        (folder / labels_name).write_bytes(gzip.compress(_idx_bytes(np.arange(n, dtype=np.uint8) % 10, 0x08)))


def test_idx_parser(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(images, 0x08)))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), images)
    ints = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)          # big-endian int32 (type 0x0C)
    (tmp_path / "b").write_bytes(_idx_bytes(ints, 0x0C))
    out = data.read_idx(tmp_path / "b")
    np.testing.assert_array_equal(out, ints)
    assert out.dtype == np.int32
    (tmp_path / "bad").write_bytes(b"\x08\x03" + bytes(20))
    with pytest.raises(data.CorruptDataError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(images, 0x08)[:-10])
    with pytest.raises(data.CorruptDataError, match=r"shape \(5, 28, 28\).*truncated"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "notgz.gz").write_bytes(b"plain bytes")
    with pytest.raises(data.CorruptDataError, match="not a readable gzip"):
        data.read_idx(tmp_path / "notgz.gz")


def test_fashion_mnist_from_a_data_dir(tmp_path):
    _write_fashion(tmp_path / "fashion-mnist")
    ds = data.load("fashion-mnist", data_dir=tmp_path, standardize=False)
    assert ds.X_train.shape == (20, 1, 28, 28) and ds.X_test.shape == (10, 1, 28, 28)
    assert ds.class_names == data.FASHION_MNIST_CLASSES and ds.image_shape == (1, 28, 28)
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0
    sub = data.load("fashion-mnist", data_dir=tmp_path, first_per_class=1, classes=["Bag", "Coat"],
                    standardize=False)
    # first_per_class=1 keeps train images 4 (label 4, Coat) and 8 (label 8, Bag); relabelled Bag 0, Coat 1
    assert sorted(sub.y_train) == [0, 1] and sub.class_names == ("Bag", "Coat")
    images = data.read_idx(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(sub.X_train[sub.y_train == 0][0, 0], images[8] / 255, atol=1e-7)
    np.testing.assert_allclose(sub.X_train[sub.y_train == 1][0, 0], images[4] / 255, atol=1e-7)


@pytest.mark.data("fashion-mnist")
def test_real_fashion_mnist():
    ds = data.load("fashion-mnist")
    assert ds.X_train.shape == (60000, 1, 28, 28) and ds.X_test.shape == (10000, 1, 28, 28)
    assert list(np.bincount(ds.y_train)) == [6000] * 10 and list(np.bincount(ds.y_test)) == [1000] * 10
    # the whole training set's pixel mean and std are the widely quoted 0.2860 and 0.3530 (4 decimals)
    np.testing.assert_allclose([ds.info["mean"], ds.info["std"]], [0.2860, 0.3530], atol=1e-4)


# --------------------------------------------------------------------------------------- finding, errors
def test_data_dir_without_the_data_says_where_and_how(tmp_path):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "cifar-10-batches-py" in message and "cifar10-jpeg.tar.gz" in message
    assert "python -m compare data install cifar10" in message and "6d958be0" in message
    with pytest.raises(data.DataNotFoundError, match="python -m compare data install fashion-mnist"):
        data.load("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(data.DataNotFoundError, match="does not exist"):
        data.load("fashion-mnist", data_dir=tmp_path / "nowhere")


def test_environment_variable_is_the_only_folder_searched(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
    assert data.search_dirs() == [tmp_path]
    assert data.find("cifar10") is None  # no fallback to the default folders
    _write_fashion(tmp_path)
    assert data.find("fashion-mnist") == (tmp_path, "idx")


# ---------------------------------------------------------------------------------------- install, CLI
def test_install_downloads_and_checks_sha256(tmp_path, monkeypatch):
    # no Debian package to copy from (it would be used first, offline): the download path itself
    monkeypatch.setattr(importlib.import_module("compare.data.install"), "DEBIAN_FASHION_MNIST_DIR", tmp_path / "none")
    mirror = tmp_path / "mirror"
    _write_fashion(mirror)
    sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in mirror.iterdir()}
    monkeypatch.setitem(data.DOWNLOADS, "fashion-mnist", ("unused", sums))
    where = data.install("fashion-mnist", data_dir=tmp_path / "d", apt=False, base_url=mirror.as_uri() + "/")
    assert where == tmp_path / "d" / "fashion-mnist"
    assert data.load("fashion-mnist", data_dir=tmp_path / "d").X_train.shape == (20, 1, 28, 28)
    wrong = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    monkeypatch.setitem(data.DOWNLOADS, "fashion-mnist", ("unused", wrong))
    (where / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.CorruptDataError, match="differs from the expected 0000"):
        data.install("fashion-mnist", data_dir=tmp_path / "d", apt=False, base_url=mirror.as_uri() + "/")
    assert sorted(p.name for p in where.iterdir()) == sorted(set(sums) - {"t10k-labels-idx1-ubyte.gz"})


def test_cli_list_and_install_errors(tmp_path, capsys):
    assert data.main(["list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in data.DATASETS) and "not found" in out
    assert data.main(["install", "digits"]) == 2
    assert "needs no install" in capsys.readouterr().err
    assert data.main(["install", "imagenet"]) == 2
    assert "valid: fashion-mnist, cifar10" in capsys.readouterr().err
