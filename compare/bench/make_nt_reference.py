"""Regenerate tests/kernels/fixtures/nt_reference.npz: neural-tangents 0.6.5 ``stax`` kernels (float64).

Run from the repository root, with the neural-tangents venv of ``compare/bench/peers.py`` installed::

    python -m compare.bench.make_nt_reference

Inputs are drawn here with a fixed seed (Gaussian: 7 and 4 points of dimension 5 for FC, 3 and 2 images
2×4×4 for conv); each config's NNGP and NTK are computed by ``stax`` both for ``x2=None`` and against the
second input set, and everything is stored in one .npz with a JSON index under ``"cases"``.
tests/kernels/test_analytic.py compares lazykit against it to 1e-12 relative.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from compare.bench.peers import nt_kernels_many

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "kernels" / "fixtures" / "nt_reference.npz"


def _fc_cases():
    cases = []
    for activation in ("relu", "erf"):
        for parameterization, width in (("ntk", None), ("standard", 64)):
            for b_std in (0.3, None):
                for depth in (0, 1, 2, 3):
                    cases.append(dict(kind="fc", depth=depth, activation=activation, w_std=1.3, b_std=b_std,
                                      parameterization=parameterization, width=width))
    cases.append(dict(kind="fc", depth=2, activation="abs", w_std=1.1, b_std=0.2, parameterization="ntk"))
    cases.append(dict(kind="fc", depth=2, activation="leaky_relu", negative_slope=0.2, w_std=1.1, b_std=0.2,
                      parameterization="ntk"))
    return cases


def _conv_cases():
    cases = []
    for readout in ("gap", "flatten"):
        for parameterization, width in (("ntk", None), ("standard", 16)):
            for b_std in (0.2, None):
                cases.append(dict(kind="conv", depth=2, activation="relu", w_std=1.4, b_std=b_std,
                                  filter_size=3, readout=readout, parameterization=parameterization,
                                  width=width))
    cases.append(dict(kind="conv", depth=1, activation="erf", w_std=1.2, b_std=0.1, filter_size=3,
                      readout="gap", parameterization="ntk"))
    cases.append(dict(kind="conv", depth=0, activation="relu", w_std=1.2, b_std=0.1, filter_size=3,
                      readout="flatten", parameterization="standard", width=8))
    return cases


def main() -> int:
    rng = np.random.default_rng(20261127)
    data = {"fc_x1": rng.standard_normal((7, 5)), "fc_x2": rng.standard_normal((4, 5)),
            "conv_x1": rng.standard_normal((3, 2, 4, 4)), "conv_x2": rng.standard_normal((2, 2, 4, 4))}
    index, requests = [], []
    for i, config in enumerate(_fc_cases() + _conv_cases()):
        x1, x2 = data[f"{config['kind']}_x1"], data[f"{config['kind']}_x2"]
        for same in (True, False):
            index.append({"key": f"case{i}_{'same' if same else 'cross'}", "same": same, "config": config})
            requests.append((config, x1, None if same else x2))
    for entry, (nngp, ntk) in zip(index, nt_kernels_many(requests)):
        data[entry["key"] + "_nngp"], data[entry["key"] + "_ntk"] = nngp, ntk
    data["cases"] = np.asarray(json.dumps(index))
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(index)} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
