"""compare.data.split_source and write_cifar_batches: a folder holding only the images a split draws from gives the
same load_split as the full data set, for every seed (what gpu-check's bundle carries instead of CIFAR-10)."""
import numpy as np
import pytest

from compare import data


def _fake_cifar(folder, per_class=12, seed=0):
    """A CIFAR-10 python batches folder of random images, classes interleaved (as the real batches are)."""
    rng = np.random.default_rng(seed)
    parts = {}
    for split, n in (("train", per_class * 10), ("test", per_class * 10 // 2)):
        labels = rng.permutation(np.arange(n) % 10)
        parts[split] = (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels)
    return data.write_cifar_batches(folder / data.CIFAR10_BATCHES_DIR, parts), parts


def test_batches_written_are_read_back_in_order(tmp_path):
    folder, parts = _fake_cifar(tmp_path)
    for split in ("train", "test"):
        images, labels = data.read_cifar_batches(folder, split)
        np.testing.assert_array_equal(images, parts[split][0])
        np.testing.assert_array_equal(labels, parts[split][1])
    assert sorted(p.name for p in folder.iterdir()) == sorted(data.CIFAR10_BATCHES["train"] + ("test_batch",))
    with pytest.raises(ValueError, match=r"parts\['train'\] must be \(N, 3, 32, 32\) uint8"):
        data.write_cifar_batches(tmp_path / "bad", {"train": (np.zeros((2, 3, 32, 32)), [0, 1]),
                                                    "test": parts["test"]})


@pytest.mark.parametrize("classes", [[0, 1], ["cat", 2, "ship"], None])
def test_the_source_of_a_split_gives_the_same_split(tmp_path, classes):
    _fake_cifar(tmp_path / "full")
    n_train, n_test = 8, 5
    source = data.split_source("cifar10", n_train, n_test, tmp_path / "full", classes)
    kept = 10 if classes is None else len(classes)
    per_class = -(-n_train // kept)                     # load_split's first images per class: ⌈8 / kept⌉
    labels = np.concatenate([y for _, y in source.values()])
    assert set(labels) == (set(range(10)) if classes is None else
                           {data.CIFAR10_CLASSES.index(c) if isinstance(c, str) else c for c in classes})
    assert all(np.bincount(y, minlength=10).max() == per_class for _, y in source.values())
    data.write_cifar_batches(tmp_path / "carried" / data.CIFAR10_BATCHES_DIR, source)
    for seed in (0, 1, 7):
        full = data.load_split("cifar10", n_train, n_test, seed, tmp_path / "full", classes)
        carried = data.load_split("cifar10", n_train, n_test, seed, tmp_path / "carried", classes)
        for name in ("X_train", "y_train", "X_test", "y_test"):
            np.testing.assert_array_equal(getattr(carried, name), getattr(full, name))


def test_split_source_names_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="data set with files"):
        data.split_source("digits", 10, 10, tmp_path)
    _fake_cifar(tmp_path)
    with pytest.raises(ValueError, match="unknown class 'horse-drawn'"):
        data.split_source("cifar10", 10, 10, tmp_path, ["horse-drawn", 1])


@pytest.mark.data("cifar10")
def test_the_table_quick_split_from_its_source_is_the_same():
    # the quick table preset: 1000 train / 500 test images of airplane and automobile; its source is the first
    # 500 images of each class of each split, 2000 images (5.9 MiB as batches)
    from compare.experiments import table
    p = table.PRESETS["quick"].settings
    source = data.split_source("cifar10", p["n_train"], p["n_test"], None, p["classes"])
    assert {split: len(y) for split, (_, y) in source.items()} == {"train": 1000, "test": 1000}
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        data.write_cifar_batches(f"{folder}/{data.CIFAR10_BATCHES_DIR}", source)
        full = data.load_split("cifar10", p["n_train"], p["n_test"], 0, None, p["classes"], dtype="float32")
        carried = data.load_split("cifar10", p["n_train"], p["n_test"], 0, folder, p["classes"], dtype="float32")
        for name in ("X_train", "y_train", "X_test", "y_test"):
            np.testing.assert_array_equal(getattr(carried, name), getattr(full, name))
