"""Every Python example in README.md runs as written (each in a fresh interpreter)."""
import pathlib
import re
import subprocess
import sys

import pytest

from compare import data

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# blocks that show a signature rather than a program
SIGNATURES = [b for b in BLOCKS if "K = empirical_ntk(model, x1, x2=None" in b or b.lstrip().startswith("NTKRegressor(")]


def test_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    block = BLOCKS[index]
    if block in SIGNATURES:
        pytest.skip("a signature, not a program")
    if '"cifar10"' in block and data.find("cifar10") is None:
        pytest.skip("the example reads CIFAR-10, which is not on this machine (see compare.data)")
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"README example {index} failed:\n{block}\n{result.stderr[-3000:]}"
