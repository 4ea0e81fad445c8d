"""Arrays made inside a kernel live on the input's device (array-api-strict's second device stands in for a
GPU other than the current one): the result stays on that device and equals the default-device result
exactly (the same NumPy arithmetic underneath, so bitwise equal)."""
import numpy as np
import pytest

xp = pytest.importorskip("array_api_strict")

from kernels import RBF, Convolutional, FullyConnected, Laplace  # noqa: E402
from kernels.features import ArcCosineFeatures  # noqa: E402

OTHER = xp.Device("device1")


def _features():
    return ArcCosineFeatures(n_features=8, random_state=0).fit(np.ones((2, 3)))


CASES = {   # each one builds an arange/eye mask on a same-input call (x2=None)
    "FullyConnected (pinned diagonal)": (lambda x: FullyConnected(2, block_size=2).ntk(x), (5, 3)),
    "Convolutional flatten": (lambda x: Convolutional(1, readout="flatten", block_size=2).ntk(x), (3, 2, 4, 4)),
    "Convolutional gap": (lambda x: Convolutional(1, readout="gap", block_size=2).ntk(x), (3, 2, 4, 4)),
    "RBF": (lambda x: RBF()(x), (5, 3)),
    "Laplace": (lambda x: Laplace()(x), (5, 3)),
    "ArcCosineFeatures.exact_kernel": (lambda x: _features().exact_kernel(x), (5, 3)),
}


@pytest.mark.parametrize("case", CASES)
def test_second_device_stays_on_that_device(case):
    fn, shape = CASES[case]
    data = np.random.default_rng(0).standard_normal(shape)
    on_default = fn(xp.asarray(data))
    on_other = fn(xp.asarray(data, device=OTHER))
    assert on_other.device == OTHER
    np.testing.assert_array_equal(np.asarray(on_other.to_device(on_default.device)), np.asarray(on_default))
