"""Every Python example in docs/stax.md runs as written (a fresh interpreter each) and prints what the page says
it prints (the plain block after it): numbers to one unit of their last printed digit, the rest exactly."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "stax.md"
# a python block, then optionally a line with "prints" and the plain block that shows its output
EXAMPLES = re.findall(r"```python\n(.*?)```\n(?:\n[^\n]*prints[^\n]*\n\n```\n(.*?)```)?", PAGE.read_text(), flags=re.S)
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(e[-+]?\d+)?$")


def _same(printed: str, shown: str) -> bool:
    a, b = (re.sub(r"[\[\](),]", " ", text).split() for text in (printed, shown))
    if len(a) != len(b):
        return False
    for got, want in zip(a, b):
        if NUMBER.match(want) and NUMBER.match(got):
            digits = len(want.split(".")[1].split("e")[0]) if "." in want else 0
            if abs(float(got) - float(want)) > 1.01 * 10 ** -digits:
                return False
        elif got != want:
            return False
    return True


def test_the_page_has_its_examples():
    assert len(EXAMPLES) >= 6 and sum(1 for _, shown in EXAMPLES if shown) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_docs_example_runs_and_prints_what_the_page_shows(index, tmp_path):
    code, shown = EXAMPLES[index]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, f"docs/stax.md example {index} failed:\n{code}\n{result.stderr[-3000:]}"
    if shown:
        assert _same(result.stdout, shown), f"example {index} printed\n{result.stdout}\nthe page shows\n{shown}"
