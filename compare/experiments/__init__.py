"""The registry of experiments: every module of this package that exports an ``EXPERIMENT``.

``get(name)`` and ``names()`` serve the command line, the report and ``gpu-check``; ``register`` adds one
declared elsewhere (a test, a user's own module). Modules are found on first use, in alphabetical order
(``pkgutil``), so adding an experiment means adding its module here, nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil

from compare.experiment import Experiment

_REGISTRY: dict = {}
_FOUND = False


def _discover() -> dict:
    global _FOUND
    if not _FOUND:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            experiment = getattr(importlib.import_module(f"{__name__}.{info.name}"), "EXPERIMENT", None)
            if isinstance(experiment, Experiment):
                _REGISTRY.setdefault(experiment.name, experiment)
        _FOUND = True
    return _REGISTRY


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (a name already taken is an error); returns it."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register expects an Experiment, got {type(experiment).__name__}")
    registry = _discover()
    if experiment.name in registry and registry[experiment.name] is not experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    registry[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a temporary experiment)."""
    _discover().pop(name, None)


def names() -> list:
    """The registered experiments' names: this package's modules in alphabetical order, then registered ones."""
    return list(_discover())


def get(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name is a ValueError listing the valid ones."""
    registry = _discover()
    if name not in registry:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(registry)}")
    return registry[name]


def method_order() -> tuple:
    """Every registered experiment's methods, in declaration order, without repeats (used for rows that do
    not say which experiment they come from)."""
    order = []
    for experiment in _discover().values():
        order += [m for m in experiment.methods if m not in order]
    return tuple(order)
