"""A data set's identity is its content: the checksum ignores where the files were found and how they were
gzipped, so a sweep found through --data-dir resumes when the same files are found another way, and is
refused when the content differs."""
import gzip
import json
import shutil

import numpy as np
import pytest

from compare import data
from compare import sweep
from compare.cli import main


def _idx(array):
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


def _write_fashion(folder, seed=0, n_train=60, n_test=30, compress=True):
    """A fabricated Fashion-MNIST (labels 0..9 cycling; pixels drawn with ``seed``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = data.FASHION_MNIST_FILES[split]
        for name, blob in ((images, _idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))),
                           (labels, _idx(np.arange(n, dtype=np.uint8) % 10))):
            if compress:
                (folder / name).write_bytes(gzip.compress(blob))
            else:
                (folder / name[:-3]).write_bytes(blob)
    return folder


def test_content_checksum_ignores_location_and_gzip_but_not_content(tmp_path):
    a = _write_fashion(tmp_path / "a" / "fashion-mnist")
    b = _write_fashion(tmp_path / "b", compress=False)                     # same bytes, unzipped, elsewhere
    other = _write_fashion(tmp_path / "c", seed=1)                         # other pixels
    digest = data.content_sha256("fashion-mnist", tmp_path / "a")
    assert len(digest) == 64 and digest == data.content_sha256("fashion-mnist", b)
    assert data.content_sha256("fashion-mnist", other) != digest
    archive = tmp_path / "d" / data.CIFAR10_JPEG_ARCHIVE                  # an archive: its bytes' SHA-256
    archive.parent.mkdir()
    archive.write_bytes(b"any bytes")
    assert data.content_sha256("cifar10", archive.parent) == data.sha256_file(archive)
    with pytest.raises(data.DataNotFoundError):
        data.content_sha256("cifar10", tmp_path / "a")
    assert a.is_dir()


def test_runner_leaves_the_data_location_out_of_run_keys():
    config = {"n_train": 10, "data_dir": "/one/place", "data_sha256": "ab"}
    assert sweep.run_key(config) == sweep.run_key({**config, "data_dir": None})
    assert sweep.run_key(config) != sweep.run_key({**config, "data_sha256": "cd"})


def _equivalence(out, *extra):
    return main(["equivalence", "--dataset", "fashion-mnist", "--out", str(out), "--quiet", "--threads", "1",
                 "--set", "n_train=10", "--set", "n_test=6", "--set", "steps=3", "--set", "probe=6",
                 "--set", "channels=4", "--set", "scales=[1.0]", *extra])


def test_same_data_found_another_way_resumes_and_other_data_is_refused(tmp_path, monkeypatch, capsys):
    """--data-dir A, then the same files through LAZYKIT_DATA_DIR (another folder, a copy): every run is found
    finished, nothing reruns; a folder with other pixels is refused, naming data_sha256."""
    a = _write_fashion(tmp_path / "a")
    out = tmp_path / "out"
    assert _equivalence(out, "--data-dir", str(a)) == 0
    rows = sweep.read_results(out / "results.jsonl")
    assert rows and {r["data_dir"] for r in rows} == {str(a)}
    shutil.copytree(a, tmp_path / "copy" / "fashion-mnist")
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "copy"))
    assert _equivalence(out) == 0
    assert sweep.read_results(out / "results.jsonl") == rows              # resumed: no run redone
    _write_fashion(tmp_path / "other", seed=1)
    capsys.readouterr()
    assert _equivalence(out, "--data-dir", str(tmp_path / "other")) == 2
    err = capsys.readouterr().err
    assert "these settings differ: data_sha256" in err and "data_dir" not in err.split("differ:")[1]
    assert json.loads((out / "config.json").read_text())["config"]["data_dir"] == str(a)


@pytest.mark.data("cifar10")
def test_table_with_and_without_data_dir_is_the_same_sweep(tmp_path, monkeypatch):
    """The issue's case: `table --data-dir ../shared/data` then `table` (CIFAR-10 found by the default search)."""
    path, _ = data.find("cifar10")
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    if data.find("cifar10") != data.find("cifar10", path.parent):
        pytest.skip("the default search finds CIFAR-10 elsewhere than where --data-dir would point")
    argv = ["table", "--out", str(tmp_path), "--quiet", "--threads", "1", "--set", "models=[]",
            "--set", "n_train=20", "--set", "n_test=20", "--set", "rff_features=20"]
    assert main([*argv, "--data-dir", str(path.parent)]) == 0
    rows = sweep.read_results(tmp_path / "results.jsonl")
    assert main(argv) == 0
    assert sweep.read_results(tmp_path / "results.jsonl") == rows
