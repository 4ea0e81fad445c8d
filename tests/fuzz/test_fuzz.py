"""The fuzz campaign: every public entry point, called with generated good, extreme and invalid arguments.

Each call must give a finite valid result or a clear error naming the argument (``tests/fuzz/harness.py``).
The default run draws ``QUICK_EXAMPLES`` cases per entry point (derandomized, so CI sees the same cases every
time); ``--runslow`` adds ``LONG_EXAMPLES`` more per entry point, drawn afresh.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.entries_compare import ENTRIES as COMPARE
from tests.fuzz.entries_kernels import ENTRIES as KERNELS
from tests.fuzz.entries_nets import ENTRIES as NETS
from tests.fuzz.entries_scale import ENTRIES as SCALE
from tests.fuzz.harness import Case, check_call

ENTRIES = {**KERNELS, **NETS, **COMPARE, **SCALE}
QUICK_EXAMPLES = 12
LONG_EXAMPLES = 150
SLOW_ENTRIES = {"VGG", "ResNet"}   # model construction dominates: fewer draws
_COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), report_multiple_bugs=False)


def _run(name, data):
    case = Case(data)
    # the builder draws the arguments and may construct objects (whose constructors validate): both count as
    # part of the call
    check_call(name, case, lambda: ENTRIES[name](case)())


@pytest.mark.parametrize("name", sorted(ENTRIES))
@settings(max_examples=QUICK_EXAMPLES, derandomize=True, **_COMMON)
@given(data=st.data())
def test_entry_point(name, data):
    if name in SLOW_ENTRIES and data.draw(st.integers(0, 3)) != 0:
        return
    _run(name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENTRIES))
@settings(max_examples=LONG_EXAMPLES, **_COMMON)
@given(data=st.data())
def test_entry_point_long(name, data):
    _run(name, data)


# every public name of kernels, nets and compare that takes arguments must have a fuzz entry
CAMPAIGN_API = ("gram", "cached_gram", "GramStore", "solve_stored", "EmpiricalNTK", "kernel_gradient_flow",
                "loss_derivatives", "to_device", "FullyConnected", "Convolutional", "empirical_ntk", "RBF", "Laplace", "Polynomial",
                "RandomFourierFeatures", "ArcCosineFeatures", "NTKFeatures", "NTKRegressor", "NTKClassifier",
                "KernelRegressor", "KernelClassifier", "RandomFeaturesRegressor", "RandomFeaturesClassifier",
                "krr_solve", "nystrom_krr", "EigenPath", "NystromKRR", "check_array", "check_choice", "check_scalar",
                "to_numpy", "resolve_device", "TwoLayer", "MLP", "CNN", "VGG", "ResNet", "Lazy", "Linearized",
                "train", "LazyNetRegressor", "LazyNetClassifier", "run_sweep", "read_results", "prepare")


def test_campaign_covers_the_public_api():
    """The suite calls every name of CAMPAIGN_API (plus their methods), 106 entry points in all."""
    covered = {part for name in ENTRIES for part in name.split(".")}
    missing = [n for n in CAMPAIGN_API if n not in covered]
    assert not missing, f"public names without a fuzz entry: {missing}"
    assert len(ENTRIES) >= 106, len(ENTRIES)
