"""Helpers shared by the experiment tests."""
import io
import tarfile

import pytest
from PIL import Image

from compare import sweep
from compare.data import CIFAR10_CLASSES


@pytest.fixture
def rows_of():
    """A function of a results folder: ({(method, scale): row}, rows) of its results.jsonl."""
    def rows_of(out):
        rows = sweep.read_results(out / "results.jsonl")
        return {(r["method"], r["scale"]): r for r in rows}, rows
    return rows_of


@pytest.fixture
def tiny_cifar(tmp_path):
    """A folder holding a cifar10-jpeg.tar.gz look-alike: <top>/<split>/<class>/<n>.png, 6 images per class and
    split, each class one flat colour (so a network separates them in a few steps)."""
    path = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for split in ("train", "test"):
            for label, name in enumerate(CIFAR10_CLASSES):
                for i in range(6):
                    image = Image.new("RGB", (32, 32), (20 * label, 30 * i, 100))
                    blob = io.BytesIO()
                    image.save(blob, format="PNG")
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{name}/{i}.png")
                    info.size = len(blob.getvalue())
                    archive.addfile(info, io.BytesIO(blob.getvalue()))
    return tmp_path
