"""One run of an experiment as a typed, frozen record, and its row form in DIR/results.jsonl.

A :class:`Run` names what it trains or fits (``experiment``, ``dataset``, ``model``, ``method``, ``seed``), its
scale — the lazy scale ``alpha`` of h_α = α·(h(w) − h(w₀)) (equivalence, rates, table) or the initialisation
scale ``init_scale`` τ (teacher–student), never both — the devices it runs on, already resolved to "cpu" or
"cuda" (``device`` for the torch networks, ``kernel_device`` for the kernels when it differs: see
``kernels.resolve_devices``), and the remaining settings in ``params`` (sizes, steps, widths, ...).

Rows of results.jsonl keep the flat layout they always had: the run's fields and params side by side, with
the scale under the one key ``scale`` (α or τ, as the experiment declares). :meth:`Run.config` gives that flat
form and :meth:`Run.from_config` reads it back, so ``run_key`` (the fingerprint of the flat form) is unchanged
and results folders written before the typed record existed still resume.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

from kernels import RESOLVED_DEVICES

SCALE_FIELDS = ("alpha", "init_scale")
FIELDS = ("experiment", "dataset", "model", "method", "seed", "scale", "device")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run: ``Run("rates", "teacher-student", "two_layer", "lazy", seed=0, alpha=10.0, params={...})``."""
    experiment: str
    dataset: str
    model: str
    method: str
    seed: int
    alpha: float | None = None
    init_scale: float | None = None
    device: str = "cpu"
    kernel_device: str | None = None   # None: the kernels compute on ``device`` too
    params: dict = dataclasses.field(default_factory=dict)
    # settings added after results were first kept, with the values that reproduce those results: a param at
    # its value here is left out of config(), so the older folders' run keys and fingerprints still match
    defaults: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for name in ("experiment", "dataset", "model", "method"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"Run.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"Run.seed must be an integer >= 0, got {self.seed!r}")
        if self.alpha is not None and self.init_scale is not None:
            raise ValueError(f"a run has one scale: alpha (lazy scale) or init_scale (τ), got alpha={self.alpha!r} "
                             f"and init_scale={self.init_scale!r}")
        for name in SCALE_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not math.isfinite(value) or value <= 0):
                raise ValueError(f"Run.{name} must be a finite number > 0 or None, got {value!r}")
        for name in ("device", "kernel_device"):
            value = getattr(self, name)
            if value not in RESOLVED_DEVICES and not (name == "kernel_device" and value is None):
                raise ValueError(f"Run.{name} must be a resolved device, one of {', '.join(RESOLVED_DEVICES)}; got "
                                 f"{value!r} (resolve 'auto' once, on the command line)")
        clash = sorted(set(self.params) & set(FIELDS + SCALE_FIELDS + ("kernel_device",)))
        if clash:
            raise ValueError(f"Run.params must not repeat the run's own fields: {', '.join(clash)}")

    @property
    def scale(self) -> float | None:
        """α or τ, whichever this run has (None for methods that have neither)."""
        return self.alpha if self.alpha is not None else self.init_scale

    @property
    def kernels_device(self) -> str:
        """Where this run's kernels compute (CuPy's device): ``kernel_device``, else ``device``."""
        return self.kernel_device or self.device

    def config(self) -> dict:
        """The flat form stored in results.jsonl (the scale under ``scale``), from which ``run_key`` is made; the
        kernel device appears only where it differs from ``device`` (so rows written before it existed resume)."""
        split = {"kernel_device": self.kernel_device} if self.kernels_device != self.device else {}
        return {"experiment": self.experiment, "dataset": self.dataset, "model": self.model, "method": self.method,
                "seed": self.seed, "scale": self.scale, "device": self.device, **split,
                **{k: v for k, v in self.params.items() if k not in self.defaults or self.defaults[k] != v}}

    @classmethod
    def from_config(cls, config: dict, scale_field: str = "alpha") -> Run:
        """The run that a flat row (or an old-format results.jsonl line) describes; ``scale`` becomes
        ``scale_field`` ("alpha" or "init_scale"). Fields a row adds after running (metrics, run_key, seconds,
        versions...) must be removed first: they would be read as params."""
        if scale_field not in SCALE_FIELDS:
            raise ValueError(f"unknown scale_field {scale_field!r}; valid: {', '.join(SCALE_FIELDS)}")
        missing = [k for k in FIELDS if k not in config]
        if missing:
            raise ValueError(f"a run's configuration needs {', '.join(missing)}; got keys {sorted(config)}")
        params = {k: v for k, v in config.items() if k not in FIELDS + ("kernel_device",)}
        return cls(config["experiment"], config["dataset"], config["model"], config["method"], config["seed"],
                   device=config["device"], kernel_device=config.get("kernel_device"), params=params,
                   **{scale_field: config["scale"]})

    def replace(self, **changes) -> Run:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
