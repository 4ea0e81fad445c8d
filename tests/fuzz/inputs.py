"""Generated inputs for the fuzz suite: arrays good, extreme and invalid, and scalar hyperparameters."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

# extreme magnitudes: the kernels must either use them (exactly, for ReLU-type kernels) or name the overflow
SCALES = {"float64": (1e-300, 1e-12, 1e10, 1e77, 1e150, 1e300), "float32": (1e-30, 1e-6, 1e10, 1e19, 1e30)}
PATTERNS = ("random", "duplicates", "zero_row", "near_duplicates")
NAN, INF = float("nan"), float("inf")

# scalar hyperparameters: values that must be refused wherever a number is expected
NOT_NUMBERS = (True, False, NAN, INF, -INF, "1", None, [1.0], 1j)


def _values(rng, shape, pattern, scale, dtype):
    x = rng.standard_normal(shape)
    if pattern == "duplicates" and shape[0] > 1:
        x[shape[0] // 2:] = x[: shape[0] - shape[0] // 2]
    elif pattern == "zero_row":
        x[0] = 0.0
    elif pattern == "near_duplicates" and shape[0] > 1:
        x[1:] = x[0] + 1e-9 * rng.standard_normal(x[1:].shape)
    return (x * scale).astype(dtype)


def _build(spec, rng, shape):
    kind, dtype, scale, pattern = spec
    if kind == "numpy":
        return _values(rng, shape, pattern, scale, dtype)
    if kind == "torch":
        t = torch.from_numpy(_values(rng, shape, pattern, scale, "float64" if dtype == "bfloat16" else dtype))
        return t.to(torch.bfloat16) if dtype == "bfloat16" else t
    if kind == "torch_grad":
        return torch.from_numpy(_values(rng, shape, pattern, scale, dtype)).requires_grad_(True)
    if kind == "int":
        return rng.integers(-3, 4, size=shape)
    if kind == "nan":
        x = _values(rng, shape, pattern, 1.0, dtype)
        x.flat[rng.integers(x.size)] = NAN
        return x
    if kind == "inf":
        x = _values(rng, shape, pattern, 1.0, dtype)
        x.flat[rng.integers(x.size)] = -INF
        return x
    if kind == "empty":
        return np.zeros((0,) + tuple(shape[1:]))
    if kind == "wrong_ndim":
        return rng.standard_normal(shape[:1] if len(shape) > 1 else shape + (2,))
    if kind == "list":
        return rng.standard_normal(shape).tolist()
    if kind == "string":
        return "x"
    if kind == "none":
        return None
    if kind == "object":
        x = np.array(rng.standard_normal(shape), dtype=object)
        x.flat[0] = "a"
        return x
    if kind == "complex":
        return rng.standard_normal(shape) + 1j
    if kind == "bool":
        return rng.standard_normal(shape) > 0
    raise AssertionError(kind)


GOOD = [("numpy", "float64", 1.0, p) for p in PATTERNS] + [("numpy", "float32", 1.0, "random"),
                                                           ("torch", "float64", 1.0, "random")]
EXTREME = ([("numpy", "float64", s, p) for s in SCALES["float64"] for p in ("random", "duplicates")]
           + [("numpy", "float32", s, "random") for s in SCALES["float32"]]
           + [("numpy", "float16", 1.0, "random"), ("torch", "bfloat16", 1.0, "random"),
              ("torch_grad", "float32", 1.0, "random"), ("int", None, None, None)])
INVALID = [(k, "float64", 1.0, "random") for k in ("nan", "inf", "empty", "wrong_ndim", "list", "string", "none",
                                                    "object", "complex", "bool")]


# scikit-learn estimators take lists and booleans (array-likes); nets take lists (as torch.as_tensor does)
ESTIMATOR_INVALID = [s for s in INVALID if s[0] not in ("list", "bool")]
NETS_INVALID = [s for s in INVALID if s[0] != "list"]


def array(case, name, shape, *, aliases=(), good=GOOD, extreme=EXTREME, invalid=INVALID):
    """Draw an array argument of ``shape`` (a tuple): good, extreme (may be refused clearly) or invalid (must be)."""
    seed = case.draw(st.integers(0, 2 ** 16))
    spec = case.arg(name, good, bad=extreme, reject=invalid, aliases=aliases)
    return _build(spec, np.random.default_rng(seed), tuple(shape))


def shape2(case, n=(1, 6), d=(1, 4)):
    return case.draw(st.integers(*n)), case.draw(st.integers(*d))


def labels(case, name, n, classes=2):
    """Class labels for n samples: good (ints or strings, every class present when n allows), or bad."""
    rng = np.random.default_rng(case.draw(st.integers(0, 2 ** 16)))
    base = np.arange(n) % classes
    rng.shuffle(base)
    good = [base, np.array(["a", "b", "c"])[base]]
    bad = [np.zeros(n), np.arange(n) + 0.5, base[: max(0, n - 1)]]
    reject = [np.full(n, np.nan), "y", None]
    return case.arg(name, good, bad=bad, reject=reject)


def targets(case, name, n):
    """Regression targets for n samples: good (n,) or (n, 2), or bad (strings, NaN, wrong length, complex)."""
    rng = np.random.default_rng(case.draw(st.integers(0, 2 ** 16)))
    good = [rng.standard_normal(n), rng.standard_normal((n, 2))]
    bad = [rng.standard_normal(n) * 1e200, np.zeros(n)]
    reject = [np.array(["a"] * n), np.full(n, np.nan), rng.standard_normal(n + 1), "y", None,
              rng.standard_normal(n) + 1j]
    return case.arg(name, good, bad=bad, reject=reject)
