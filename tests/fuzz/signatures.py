"""The signature campaign: calls generated from the public signatures themselves, not from known cases.

The public callables are enumerated from the package faces (``kernels.__all__``, ``kernels.stax.__all__``,
``nets.__all__``, ``compare.data.__all__``, and the public methods the project defines on those classes). For each one, a call
starts from its defaults (``BASE`` shrinks a few sizes so a call takes milliseconds) with the required
arguments built by name (``REQUIRED``), and then each parameter in turn is replaced by values derived from its
default:

* a bool default: the other bool (good); "yes", 1 and None (must be refused: a flag is True or False);
* an int default: default + 1 (good); 0, −1 (may be refused); 2.5, "3", True, None, [default] (must be refused);
* a float default: 2·default (good); 0, −1, 1e300, 1e-300, inf, None (may be refused); NaN, "1", True,
  [default] (must be refused);
* a str default: the documented choices, found as a module-level tuple of strings holding the default (good);
  default + "_nope", 3 (must be refused); default.upper() and None (may be refused);
* None or any other default: "x", −1, 2.5, [1], True, 0 (may be refused).

``PARAMETER_NOTES`` records where a parameter's documented type differs from its default's (``b_std=0.0`` also
takes None, "no bias"); every such exception is written out there, with its reason.

Every call gets ``CALL_SECONDS`` (hang detection, SIGALRM) and is classified (``classify``): a finite result,
a clear error (``ValueError``/``TypeError``/``DivergenceError``, or an ``OSError`` about a path, naming one of
the call's parameters or the path it was given), or one of the four failures of issue #24: a **hang**, a
**silent** result (NaN/inf anywhere in it, or an analytic or classic kernel matrix of K(x, x) that is not
symmetric positive semi-definite to rounding), an **accepted** invalid value (a must-refuse value that
returned), an **unclear** error (another exception type, or a message that names nothing the caller passed).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import kernels
import nets
from compare import data
from nets.training import DivergenceError
from tests.fuzz.harness import CALL_SECONDS, CallTimeout, names_any, nonfinite, time_limit

FACES = {"kernels": kernels, "kernels.stax": kernels.stax, "nets": nets, "compare.data": data}
GOOD, MAY, MUST = "good", "may", "must"
FAILURES = ("hang", "silent", "accepted", "unclear")
OUTCOMES = ("finite result", "clear error") + FAILURES


# ----------------------------------------------------------------------------------------------- what is skipped
# Public callables the campaign does not call, each with its reason (anything else must be generated).
SKIP = {
    "compare.data.download": "fetches a URL over the network",
    "compare.data.install": "downloads, or installs a Debian package as root",
    "compare.data.main": "the data command line: covered by the CLI campaign's `data` subcommand options",
    "kernels.gpu_available": "no arguments",
    "kernels.available_memory": "no arguments",
    "kernels.naming_inputs": "a context manager used inside the estimators, exercised through them",
    "nets.History": "a record of training results with no checks of its own (train fills it)",
    "compare.data.Dataset": "a record of arrays returned by load, with no checks of its own",
    "kernels.FullyConnected.network": "internal layer table (takes the input shape from the kernel itself)",
    "kernels.Convolutional.network": "internal layer table (takes the input shape from the kernel itself)",
    "kernels.GramStore.tile_problem": "a piece of verify(), which is generated",
    "nets.Lazy.cache_initial": "a context manager train enters itself, exercised through train",
    "nets.Lazy.extra_repr": "torch's repr hook",
    "nets.Linearized.current_parameters": "no arguments",
    "nets.Linearized.initial_parameters": "no arguments",
    "nets.TwoLayer.reset_parameters": "no arguments",
    "kernels.GramStore.missing_tiles": "no arguments",
    "kernels.GramStore.verify": "no arguments (tests/kernels/grams/test_store_damage.py)",
    "kernels.GramStore.as_dask": "no arguments",
    "kernels.MonteCarloEstimate": "a record of estimates returned by MonteCarloKernel.estimate",
    "kernels.NystromKRR": "the fitted model nystrom_krr returns (its predict is a hypothesis entry)",
    "kernels.NystromKRR.predict": "needs a fitted NystromKRR (a hypothesis entry)",
    "kernels.StaxKernel.network": "internal layer table (takes the input shape from the kernel itself)",
    "kernels.stax.StaxKernel.network": "internal layer table (takes the input shape from the kernel itself)",
    "nets.KernelStep": "a record of the step size kernel_step returns",
    "nets.KernelStep.as_row": "no arguments",
    "nets.CNN.stax_layer": "the protocol kernels.stax reads a network's description through",
    "nets.MLP.stax_layer": "the protocol kernels.stax reads a network's description through",
    "nets.VGG.stax_layer": "the protocol kernels.stax reads a network's description through",
    "nets.ResNet.stax_layer": "the protocol kernels.stax reads a network's description through",
    "kernels.Devices.as_dict": "no arguments", "kernels.Devices.notice": "no arguments",
}

# Where a parameter's documented type is not its default's: the values that are then not refusals.
PARAMETER_NOTES = {
    "b_std": ("None means no bias", {"None"}),
    "readout_b_std": ("'same' (as b_std), None (no readout bias) or a number", {"3", "None", "same_nope", "SAME"}),
    "readout_w_std": ("None means as w_std", {"x", "0", "2.5"}),
    "gamma": ("None means 1/n_features", {"None"}),
    "random_state": ("a seed, a Generator or None (scikit-learn's convention)", {"None"}),
    "width_factor": ("a positive number multiplying the channel counts", {"2.5"}),
    "a": ("kernels.stax's scale parameters are numbers (neural-tangents' integer defaults)", {"2.5"}),
    "b": ("kernels.stax's scale parameters are numbers (neural-tangents' integer defaults)", {"2.5"}),
    "allow_none": ("True, False (None: False), or a string saying what None means", {"yes", "None"}),
    "t": ("None (converged) or a time; math.inf also means converged", {"inf", "None"}),
    "y_numbers": ("naming_inputs' flag", set()),
}

# A few sizes shrunk so one call takes milliseconds (the parameter itself is still mutated from its default)
BASE = {
    "nets.LazyNetRegressor": {"width": 8, "epochs": 2},
    "nets.LazyNetClassifier": {"width": 8, "epochs": 2},
    "nets.VGG": {"width_factor": 0.125},
    "nets.ResNet": {"width_factor": 0.125},
    "nets.CNN": {"channels": 4},
    "kernels.RandomFeaturesRegressor": {"n_features": 16},
    "kernels.RandomFeaturesClassifier": {"n_features": 16},
    "kernels.RandomFourierFeatures": {"n_features": 16},
    "kernels.ArcCosineFeatures": {"n_features": 16},
    "kernels.NTKFeatures": {"width": 16},
    "kernels.solve_stored": {"n_centers": 3},
    "nets.train": {"steps": 3},
    "compare.data.load": {"n_train": 20, "n_test": 10},
    "compare.data.load_split": {"n_train": 20, "n_test": 10},
    "compare.data.teacher_student": {"n_train": 20, "n_test": 10},
    "kernels.kernel_gradient_flow": {"steps": 50},
}


# ----------------------------------------------------------------------------------------------- the callables
def _defined_here(f) -> bool:
    module = getattr(f, "__module__", "") or ""
    return module.split(".")[0] in ("kernels", "nets", "compare")


def public_callables() -> dict:
    """{qualified name: callable} of every public function, class and project-defined public method."""
    found = {}
    for face, module in FACES.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseException) or not callable(obj):
                continue
            found[f"{face}.{name}"] = obj
            if inspect.isclass(obj):
                for method, f in inspect.getmembers(obj):
                    if (not method.startswith("_") and callable(f) and _defined_here(f)
                            and method not in ("get_params", "forward", "set_params")):
                        found[f"{face}.{name}.{method}"] = f
    return found


def choices_of(fn, default: str):
    """The documented choices of a str parameter: a module-level tuple of strings (of ``fn``'s module or one it
    imported) that holds ``default``; None when there is none (a free-form string)."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    spaces = [vars(module)] if module else []
    spaces += [vars(v) for v in (spaces[0].values() if spaces else ()) if inspect.ismodule(v)
               and v.__name__.split(".")[0] in ("kernels", "nets", "compare")]
    candidates = []
    for space in spaces:
        for key, value in space.items():
            if not key.isupper():
                continue
            if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value) and default in value:
                candidates.append(value)
            elif isinstance(value, dict) and default in value and all(isinstance(k, str) for k in value):
                candidates.append(tuple(value))
    return min(candidates, key=len) if candidates else None


# ----------------------------------------------------------------------------------------------- mutations
@dataclasses.dataclass
class Mutation:
    parameter: str
    value: object
    kind: str                  # GOOD, MAY or MUST (must be refused)
    label: str


def _label(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value) if not isinstance(value, (np.ndarray, torch.Tensor)) else type(value).__name__


def mutations(fn, parameter: inspect.Parameter) -> list:
    """The values of ``mutations``' module docstring for one parameter with a default."""
    default = parameter.default
    out = []

    def add(kind, *values):
        for value in values:
            out.append(Mutation(parameter.name, value, kind, _label(value)))

    if isinstance(default, bool):
        add(GOOD, not default)
        add(MUST, "yes", 1, None)
    elif isinstance(default, numbers.Integral):
        add(GOOD, default + 1)
        add(MAY, 0, -1)
        add(MUST, 2.5, "3", True, None, [default])
    elif isinstance(default, numbers.Real):
        add(GOOD, 2 * default if default else 0.5)
        add(MAY, 0.0, -1.0, 1e300, 1e-300, math.inf, None)
        add(MUST, math.nan, "1", True, [default])
    elif isinstance(default, str):
        choices = choices_of(fn, default)
        if choices is not None:
            add(GOOD, *[c for c in choices if c != default][:3])
            add(MUST, default + "_nope", 3)
        else:
            add(MAY, 3)
        add(MAY, default.upper(), None)
    else:
        add(MAY, "x", -1, 2.5, [1], True, 0)
    note = PARAMETER_NOTES.get(parameter.name)
    if note is not None:   # documented values of another type: not refusals
        for m in out:
            if m.kind == MUST and (m.label in note[1] or repr(m.value) in note[1] or str(m.value) in note[1]):
                m.kind = MAY
    return out


# ----------------------------------------------------------------------------------------------- array arguments
def _with(value, index, entry):
    out = np.array(value, dtype=np.float64, copy=True)
    out.flat[index] = entry
    return out


def _duplicates(v):
    out = np.array(v, copy=True)
    out[len(out) // 2:] = out[: len(out) - len(out) // 2]
    return out


def _zero_row(v):
    out = np.array(v, dtype=np.float64, copy=True)
    out[0] = 0
    return out


def _near(v):
    out = np.array(v, dtype=np.float64, copy=True)
    out[1:] = out[0] + 1e-9 * _rng().standard_normal(out[1:].shape)
    return out


# (label, kind, transform of the good array): NaN/inf, strings, objects and complex values must be refused;
# empty, wrong ndim, lists, booleans, integers, extreme scales and half precision may be (or used exactly);
# duplicate, zero and near-identical rows must give finite valid results
ARRAY_MUTATIONS = (
    ("nan", MUST, lambda v: _with(v, 0, np.nan)), ("inf", MUST, lambda v: _with(v, -1, -np.inf)),
    ("strings", MUST, lambda v: np.full(np.shape(v), "a")), ("complex", MUST, lambda v: np.asarray(v) + 1j),
    ("object", MUST, lambda v: np.array([None] * len(v), dtype=object)),
    ("empty", MAY, lambda v: np.asarray(v)[:0]), ("wrong ndim", MAY, lambda v: np.asarray(v).reshape(-1)[:, None, None]),
    ("list", MAY, lambda v: np.asarray(v).tolist()), ("bool", MAY, lambda v: np.asarray(v) > 0),
    ("int", MAY, lambda v: np.round(np.asarray(v, dtype=float) * 3).astype(np.int64)),
    ("x1e300", MAY, lambda v: np.asarray(v, dtype=float) * 1e300),
    ("x1e-300", MAY, lambda v: np.asarray(v, dtype=float) * 1e-300),
    ("float16", MAY, lambda v: np.asarray(v, dtype=np.float16)),
    ("float32 x1e30", MAY, lambda v: (np.asarray(v, dtype=float) * 1e30).astype(np.float32)),
    ("duplicates", GOOD, _duplicates), ("zero row", GOOD, _zero_row), ("near duplicates", GOOD, _near),
)
# Gram matrices keep their symmetry: only value and type mutations
GRAM_MUTATIONS = tuple(m for m in ARRAY_MUTATIONS if m[0] in ("nan", "inf", "strings", "complex", "empty", "list",
                                                              "x1e300", "x1e-300", "float16"))
ARRAY_PARAMETERS = {"x", "x1", "X", "X_train", "X_test", "probe", "a", "f", "train", "test", "y", "y_train"}
GRAM_PARAMETERS = {"K", "K_train"}


# array utilities that convert or inspect whatever they are given (NaN included): their job is not to judge values
ARRAY_AGNOSTIC = {"kernels.to_numpy": "converts", "kernels.to_device": "moves", "kernels.device_of": "inspects",
                  "kernels.n_samples": "counts rows"}
# class labels: strings are labels too, complex and object arrays only need a clear answer
LABELS = {"compare.data.first_per_class", "compare.data.stratified_indices"}


def array_mutations(parameter: str, builder, entry: str = "") -> list:
    table = GRAM_MUTATIONS if parameter in GRAM_PARAMETERS else ARRAY_MUTATIONS
    out = []
    for label, kind, transform in table:
        if entry in ARRAY_AGNOSTIC:
            kind = MAY
        elif entry in LABELS and label in ("strings", "complex", "object"):
            kind = GOOD if label == "strings" else MAY
        out.append(Mutation(parameter, _Transformed(builder, transform), kind, label))
    return out


class _Transformed:
    """A mutated array, built only when the call runs (from a fresh good one)."""

    def __init__(self, builder, transform):
        self.builder, self.transform = builder, transform

    def build(self):
        return self.transform(self.builder())


# ----------------------------------------------------------------------------------------------- required arguments
_ROOT = Path(tempfile.mkdtemp(prefix="lazykit-signatures-"))


# the campaign's seed: every array and the default run's sample come from it (LAZYKIT_FUZZ_SEED=7 reruns the
# campaign on other arrays and another sample)
SEED = int(os.environ.get("LAZYKIT_FUZZ_SEED", "0"))


def _rng():
    return np.random.default_rng(SEED)


def _X(n=6, d=3):
    return _rng().standard_normal((n, d))


def _images(n=2):
    return _rng().standard_normal((n, 1, 4, 4))


def _model(d=3):
    torch.manual_seed(0)
    return nets.MLP(d, [4]).double()


_STORES = iter(range(10 ** 9))


def _store():
    return kernels.gram(kernels.RBF(0.5), _X(), tile=4, store=_ROOT / f"s{next(_STORES)}.zarr", progress=False)


def _gram():
    x = _X()
    return kernels.RBF(0.5)(x)


def _stax_spec():
    from kernels import stax
    return stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))


def _cifar_parts():
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    return {"train": (images, np.array([0, 1])), "test": (images, np.array([1, 0]))}


def _idx_file():
    path = _ROOT / "garbage.idx"
    path.write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 3)     # a truncated IDX header
    return path


# {parameter name: builder}, and per-callable overrides where the same name means something else
REQUIRED = {
    "x": _X, "x1": _X, "X": _X, "X_train": _X, "X_test": lambda: _X(3), "probe": _X, "a": _X, "f": _X,
    "train": _X, "test": lambda: _X(2),
    "y": lambda: _rng().standard_normal(6), "y_train": lambda: _rng().standard_normal(6),
    "K": _gram, "K_train": _gram,
    "model": _model, "module": _model,
    "kernel": lambda: kernels.RBF(0.5),
    "store": _store, "directory": lambda: _ROOT / "dir", "path": lambda: _store().path,
    "name": lambda: "digits", "choices": lambda: ("a", "b"), "type": lambda: float,
    "d": lambda: 3, "m": lambda: 4, "d_in": lambda: 3, "widths": lambda: [4], "in_channels": lambda: 1,
    "t": lambda: 1.0, "alpha": lambda: 0.1, "n_centers": lambda: 2, "n": lambda: 3, "k": lambda: 1,
    "rng": _rng, "axes": lambda: (0,), "steps": lambda: [1], "index": lambda: (0, 0), "block": lambda: None,
    "alphas": lambda: [0.0, 0.1], "random_state": lambda: 0,
    "nets": lambda: "cpu", "kernels": lambda: "cpu", "module_fn": lambda: lambda: nets.MLP(3, [4]).double(),
    "n_samples": lambda: 2, "sample": lambda: 0, "spec": lambda: _stax_spec(), "image": lambda: False,
    "step": lambda: 1, "lambda_max": lambda: 10.0, "batch_size": lambda: 6, "loss": lambda: "mse",
    "lazy": lambda: nets.Lazy(_model(), 10.0), "linearized": lambda: nets.Linearized(nets.Lazy(_model(), 10.0)),
    "folder": lambda: _ROOT / "batches", "parts": lambda: _cifar_parts(),
    # kernels.stax layers
    "out_dim": lambda: 8, "out_chan": lambda: 4, "filter_shape": lambda: (3, 3), "window_shape": lambda: (2, 2),
    "rate": lambda: 0.5, "num": lambda: 2, "activation": lambda: "relu", "fn": lambda: np.tanh, "deg": lambda: 8,
    "device": lambda: "cpu", "n_train": lambda: 10, "n_test": lambda: 5, "classes": lambda: None,
    "value": lambda: "a:b", "blob": lambda: b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x09",
    "files": lambda: {}, "where": lambda: "here", "source": lambda: _ROOT / "absent-source",
    "target": lambda: _ROOT / "target", "split": lambda: "train", "class_names": lambda: ("a", "b"),
}
REQUIRED_FOR = {
    "kernels.check_choice": {"x": lambda: "a", "name": lambda: "x"},
    "kernels.check_scalar": {"x": lambda: 1.0, "name": lambda: "x"},
    "kernels.check_bool": {"x": lambda: True, "name": lambda: "flag"},
    "kernels.check_array": {"name": lambda: "x"},
    "kernels.check_writable": {"path": lambda: _ROOT / "w" / "file", "name": lambda: "checkpoint"},
    "kernels.GramStore": {"path": lambda: _store().path},
    "kernels.Convolutional.nngp": {"x1": _images}, "kernels.Convolutional.ntk": {"x1": _images},
    "kernels.Convolutional.kernels": {"x1": _images},
    "kernels.loss_derivatives": {"f": lambda: _X(4, 2), "y": lambda: np.sign(_rng().standard_normal((4, 2))),
                                 "loss": lambda: "mse"},
    "kernels.nystrom_krr": {"X": _X},
    "kernels.cpu_operation_counts": {"kernel": lambda: kernels.Convolutional(depth=1), "feature_shape": lambda: (1, 4, 4)},
    "kernels.GramStore.write_tile": {"block": lambda: np.ones((4, 4))},
    "kernels.GramStore.read_tile": {}, "kernels.GramStore.has_tile": {}, "kernels.GramStore.bounds": {},
    "compare.data.read_idx": {"path": _idx_file}, "compare.data.sha256_file": {"path": _idx_file},
    "compare.data.read_cifar_batches": {"path": lambda: _ROOT / "absent-batches"},
    "compare.data.read_image_archive": {"path": lambda: _ROOT / "absent.tar.gz"},
    "compare.data.read_image_archive_cached": {"path": lambda: _ROOT / "absent.tar.gz"},
    "compare.data.stratified_indices": {"y": lambda: np.array([0, 0, 1, 1, 1, 2])},
    "compare.data.first_per_class": {"y": lambda: np.array([0, 1, 0, 1, 2])},
    "compare.data.teacher_student_tensors": {"d": lambda: 3, "seed": lambda: 0},
    "compare.data.uniform_sphere": {"n": lambda: 4, "d": lambda: 3},
    "compare.data.check_classes": {"classes": lambda: [0, 1]},
    # data sets read from files (looked for where data_dir says: an empty folder here)
    "compare.data.find": {"name": lambda: "fashion-mnist"}, "compare.data.locate": {"name": lambda: "fashion-mnist"},
    "compare.data.content_sha256": {"name": lambda: "fashion-mnist"},
    "compare.data.describe": {"name": lambda: "fashion-mnist"},
    "compare.data.standardize_train_test": {},
    "nets.TwoLayer": {"d": lambda: 3},
    "nets.CNN": {"in_channels": lambda: 1},
    "nets.KernelTracker": {"steps": lambda: [1]},
    "nets.after_training_kernel_regression": {"y_train": lambda: _rng().standard_normal(6)},
    "nets.function_distance": {"f": _model, "g": _model},
    "kernels.stax.ABRelu": {"a": lambda: 0.1, "b": lambda: 1.0},
    "kernels.EigenPath": {}, "kernels.EmpiricalNTK": {},
    "kernels.krr_solve": {}, "kernels.kernel_gradient_flow": {"y": lambda: _rng().standard_normal(6)},
    "kernels.to_device": {"a": _X},
}
CLASSIFIERS = ("Classifier",)


def required_builders(name, fn):
    """{parameter: builder} for the parameters of ``fn`` without a default (None when one has no builder)."""
    own = REQUIRED_FOR.get(name, {})
    builders = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        builder = own.get(p.name, REQUIRED.get(p.name))
        if builder is None:
            return None
        builders[p.name] = builder
    if any(c in name.split(".")[1] for c in CLASSIFIERS) and "y" in builders:
        builders["y"] = lambda: np.arange(6) % 2
    return builders


def _build(builders):
    return {k: b() for k, b in builders.items()}


# ----------------------------------------------------------------------------------------------- calling
def use(obj):
    """Exercise a constructed object the way users do: kernels on K(x, x), estimators fit then predict,
    transformers fit then transform, networks forward; anything else is the object itself."""
    if isinstance(obj, kernels.Convolutional):
        return obj.ntk(_images())
    if isinstance(obj, (kernels.FullyConnected, kernels.StaxKernel, kernels.MonteCarloKernel)):
        return obj.kernels(_X())
    if hasattr(obj, "fit") and hasattr(obj, "predict"):
        y = np.arange(6) % 2 if "Classifier" in type(obj).__name__ else _rng().standard_normal(6)
        return np.asarray(obj.fit(_X(), y).predict(_X(3)), dtype=float)
    if hasattr(obj, "fit") and hasattr(obj, "transform"):
        return obj.fit(_X()).transform(_X(3))
    if isinstance(obj, torch.nn.Module):
        with torch.no_grad():
            return obj(_module_input(obj))
    if isinstance(obj, kernels.EigenPath):
        return obj.dual_coef(_rng().standard_normal(obj.n))
    if isinstance(obj, kernels.EmpiricalNTK):
        return obj.ntk(_X())
    if callable(obj) and type(obj).__module__.startswith("kernels.classic"):
        return obj(_X())
    if isinstance(obj, kernels.GramStore):
        return obj.to_numpy()
    return obj


def _module_input(module):
    if isinstance(module, (nets.VGG, nets.ResNet)):
        conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
        return torch.ones(1, conv.in_channels, 32, 32)
    if isinstance(module, nets.CNN):
        conv = module.features[0]
        size = (4, 4) if module.readout == "gap" else tuple(getattr(module, "_image_size", (4, 4)))
        return torch.ones(1, conv.weight.shape[1], *size)
    if isinstance(module, nets.TwoLayer):
        return torch.ones(2, module.d, dtype=module.a.dtype)
    first = next(p for p in module.parameters())
    return torch.ones(2, 3, dtype=first.dtype)


def _kernel_matrix_problem(name, result):
    """Why a K(x, x) from an analytic or classic kernel is not symmetric PSD to rounding (None when it is):
    λ_min ≥ −(depth + 1)·√eps₆₄·λ_max − n·eps·λ_max (README, "PSD tolerance we promise")."""
    matrices = result if isinstance(result, tuple) else (result,)
    for K in matrices:
        if not isinstance(K, np.ndarray) or K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 2:
            continue
        K = K.astype(np.float64)
        scale = float(np.max(np.abs(K)))
        if scale == 0:
            continue
        if float(np.max(np.abs(K - K.T))) > 1e-6 * scale:
            return "not symmetric"
        lam = np.linalg.eigvalsh(K)
        depth = 20
        tol = (depth + 1) * math.sqrt(np.finfo(np.float64).eps) * lam[-1] + K.shape[0] * 1.2e-7 * lam[-1]
        if lam[0] < -tol:
            return f"not PSD (λ_min = {lam[0]:.3g}, λ_max = {lam[-1]:.3g})"
    return None


PSD_CHECKED = ("kernels.FullyConnected", "kernels.Convolutional", "kernels.StaxKernel", "kernels.RBF",
               "kernels.Laplace")


def classify(name, call, names, kind, paths=()):
    """Run ``call()`` under the time limit and return (outcome, detail); see the module docstring."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with time_limit(CALL_SECONDS):
                result = call()
    except CallTimeout as exc:
        return "hang", str(exc)
    except (ValueError, TypeError, DivergenceError, OSError) as exc:
        message = str(exc)
        # a path the call was given, quoted in the message, names what is wrong as well as its parameter does
        paths = [str(v) for v in tuple(paths) + tuple(getattr(call, "used", {}).values())
                 if isinstance(v, (str, Path)) and "/" in str(v)]
        if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, NotADirectoryError,
                                                             IsADirectoryError, ValueError)):
            return "unclear", f"{type(exc).__name__}: {message}"
        if not (names_any(message, names) or any(str(p) in message for p in paths)):
            return "unclear", f"{type(exc).__name__} naming none of {sorted(names)[:12]}: {message[:300]}"
        return "clear error", message[:200]
    except Exception as exc:   # noqa: BLE001  any other exception is unclear by definition
        return "unclear", f"{type(exc).__name__}: {str(exc)[:300]}"
    where = None if name in ARRAY_AGNOSTIC else nonfinite(result)
    if where is None and name.startswith(PSD_CHECKED):
        problem = _kernel_matrix_problem(name, result)
        if problem:
            return "silent", problem
    if where:
        return "silent", f"NaN or inf in {where}"
    if kind == MUST:
        return "accepted", "an invalid value was accepted"
    return "finite result", ""


# ----------------------------------------------------------------------------------------------- the cases
@dataclasses.dataclass
class Case:
    entry: str
    mutation: Mutation | None
    call: object
    names: set
    paths: tuple = ()

    @property
    def kind(self):
        return GOOD if self.mutation is None else self.mutation.kind

    def describe(self):
        m = self.mutation
        return f"{self.entry}({'' if m is None else f'{m.parameter}={m.label}'})"


def _value(mutation):
    return mutation.value.build() if isinstance(mutation.value, _Transformed) else mutation.value


def _optional(fn):
    return [p for p in inspect.signature(fn).parameters.values()
            if p.default is not p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def cases_for(name, fn, callables=None) -> list:
    """Every generated call of one public callable: its defaults, then one parameter mutated at a time. A method
    is called on an object made from its class's defaults (fitted first when it is an estimator)."""
    callables = public_callables() if callables is None else callables
    parts = name.split(".")
    owner_name = ".".join(parts[:-1])
    owner = callables.get(owner_name) if inspect.isclass(callables.get(owner_name)) else None
    method = parts[-1]
    if owner is not None:
        init, own = required_builders(owner_name, owner), required_builders(name, fn)
        if init is None or own is None:
            return []
        names = set(inspect.signature(fn).parameters) | set(inspect.signature(owner).parameters)
        classifier = "Classifier" in owner_name

        def make(mutation):
            def call():
                obj = owner(**_build(init), **BASE.get(owner_name, {}))
                if hasattr(obj, "fit") and method != "fit":     # estimators and transformers are fitted first
                    obj.fit(_X(), np.arange(6) % 2 if classifier else _rng().standard_normal(6))
                kwargs = _build(own)
                if method == "fit" and classifier:
                    kwargs["y"] = np.arange(6) % 2
                if mutation is not None:
                    kwargs[mutation.parameter] = _value(mutation)
                call.used = kwargs
                out = getattr(obj, method)(**kwargs)
                if method == "fit":
                    return (np.asarray(out.predict(_X(3)), dtype=float) if hasattr(out, "predict")
                            else out.transform(_X(3)))
                return out
            call.used = {}
            return call
    else:
        own = required_builders(name, fn)
        if own is None:
            return []
        names = set(inspect.signature(fn).parameters)

        def make(mutation):
            def call():
                kwargs = {**_build(own), **BASE.get(name, {})}
                if mutation is not None:
                    kwargs[mutation.parameter] = _value(mutation)
                call.used = kwargs
                out = fn(**kwargs)
                return use(out) if inspect.isclass(fn) else out
            call.used = {}
            return call
    cases = [Case(name, None, make(None), names)]
    for parameter, builder in own.items():       # the required arrays, mutated
        if parameter in ARRAY_PARAMETERS | GRAM_PARAMETERS and isinstance(builder(), np.ndarray):
            for m in array_mutations(parameter, builder, name):
                cases.append(Case(name, m, make(m), names))
    for p in _optional(fn):
        for m in mutations(fn, p):
            paths = (m.value,) if isinstance(m.value, (str, Path)) else ()
            cases.append(Case(name, m, make(m), names | {p.name}, paths))
    return cases


def all_cases() -> dict:
    """{entry: [Case, ...]} over every public callable not in ``SKIP`` (nothing is built until a case is run)."""
    callables = public_callables()
    return {name: cases_for(name, fn, callables) for name, fn in callables.items() if name not in SKIP}


def sample(cases, limit, seed=None):
    """At most ``limit`` cases of one entry (its default call first), drawn with a fixed seed: the default run."""
    if len(cases) <= limit:
        return cases
    rng = np.random.default_rng(SEED if seed is None else seed)
    rest = rng.choice(len(cases) - 1, size=limit - 1, replace=False) + 1
    return [cases[0]] + [cases[i] for i in sorted(rest)]
