"""The fuzz campaigns: every public entry point, called with generated good, extreme and invalid arguments.

Three campaigns, each call classified the same way (a finite valid result or a clear error naming the argument;
never a hang, a silent result, an accepted invalid value or an unclear error):

* the hypothesis campaign (``entries_*.py``): hand-built cases per entry point, ``QUICK_EXAMPLES`` each
  (derandomized, so CI sees the same cases every time); ``--runslow`` adds ``LONG_EXAMPLES`` drawn afresh;
* the signature campaign (``signatures.py``): calls derived from the signatures of every public callable of
  ``kernels``, ``kernels.stax``, ``nets`` and ``compare.data`` (each parameter mutated from its default, each required array
  replaced by invalid, extreme and degenerate ones), with a per-call time limit; the default run takes a
  seeded sample of ``SIGNATURE_SAMPLE`` calls per entry point, ``--runslow`` all of them;
* the CLI campaign (``cli_options.py``): bad values for every option and ``--set`` key of every experiment.

``tests/fuzz/conftest.py`` prints the tally of each.
"""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.entries_compare import ENTRIES as COMPARE
from tests.fuzz.entries_kernels import ENTRIES as KERNELS
from tests.fuzz.entries_nets import ENTRIES as NETS
from tests.fuzz.entries_scale import ENTRIES as SCALE
from tests.fuzz import cli_options, signatures
from tests.fuzz.harness import COUNTS, Case, check_call, names_any

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


# ------------------------------------------------------------------------------------------ signature campaign
SIGNATURE_SAMPLE = 30          # calls per entry point in the default run (a seeded sample; --runslow: all)
SIGNATURE_CASES = signatures.all_cases()
CLI_CASES = cli_options.all_cases()


@pytest.fixture(scope="module")
def campaign_folder(tmp_path_factory):
    """A scratch working directory (generated relative paths such as store="x" land there), with the numba loops
    compiled before any call is timed (a first compilation is not a hang)."""
    import kernels
    kernels.FullyConnected(depth=1, cpu_impl="fused").kernels(signatures._X())
    kernels.Convolutional(depth=1, cpu_impl="fused").kernels(signatures._images())
    folder = tmp_path_factory.mktemp("signature-campaign")
    previous = os.getcwd()
    os.chdir(folder)
    yield folder
    os.chdir(previous)


def _run_signature_cases(entry, cases):
    failures = []
    for case in cases:
        outcome, detail = signatures.classify(case.entry, case.call, case.names, case.kind, case.paths)
        COUNTS[(f"signature:{entry}", outcome)] += 1
        if outcome in signatures.FAILURES:
            failures.append(f"{outcome}: {case.describe()}: {detail}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("entry", sorted(SIGNATURE_CASES))
def test_signature_campaign(entry, campaign_folder):
    _run_signature_cases(entry, signatures.sample(SIGNATURE_CASES[entry], SIGNATURE_SAMPLE))


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(SIGNATURE_CASES))
def test_signature_campaign_full(entry, campaign_folder):
    _run_signature_cases(entry, SIGNATURE_CASES[entry])


@pytest.mark.parametrize("entry", sorted(CLI_CASES))
def test_cli_campaign(entry, campaign_folder):
    failures = []
    for case in CLI_CASES[entry]:
        outcome, detail = cli_options.run(case, names_any)
        COUNTS[(f"cli:{entry}", outcome)] += 1
        if outcome in signatures.FAILURES:
            failures.append(f"{outcome}: {case.describe()}: {detail}")
    assert not failures, "\n".join(failures)


def test_every_public_callable_is_generated_or_skipped_with_a_reason():
    """The signature campaign enumerates the package faces itself: each public callable gets generated calls,
    or is in signatures.SKIP with its reason; each experiment gets CLI cases."""
    callables = signatures.public_callables()
    missing = sorted(name for name in callables if name not in signatures.SKIP and not SIGNATURE_CASES.get(name))
    assert not missing, f"public callables with no generated call and no reason to skip them: {missing}"
    assert all(isinstance(reason, str) and reason for reason in signatures.SKIP.values())
    stale = sorted(set(signatures.SKIP) - set(callables))
    assert not stale, f"SKIP names callables that are no longer public: {stale}"
    from compare import experiments
    assert {name for name in experiments.names()} <= {entry.split()[0][4:] for entry in CLI_CASES}
    assert len(SIGNATURE_CASES) >= 120 and sum(map(len, SIGNATURE_CASES.values())) >= 3000
