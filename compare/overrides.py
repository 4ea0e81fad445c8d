"""``--set KEY=VALUE``: parse a preset override and check it against the experiment's presets before anything
is written or run.

A value is a Python literal (``--set n_train=200``, ``--set scales=[1,100]``) and must have the shape the
presets give that key: an integer key takes an integer (not a bool; ≥ 1, or ≥ 0 where a preset uses 0), a
number key a finite number > 0 (≥ 0 where a preset uses 0), a list key a non-empty list of such items, a
string key one of the known choices, a bool key a bool; None only where a preset uses None. So
``n_train=abc``, ``lr_factor=nan``, ``dtype=float16``, ``widths=64``, ``scales=1.0``, ``steps=-1`` and
``seeds=0`` are each refused with one line naming the key and what it takes.
"""
from __future__ import annotations

import ast
import math
import numbers

# list keys that may be empty: `table --set models=[]` runs only the kernel and random-features rows,
# `table --set cntk_readouts=[]` drops the CNTK rows
MAY_BE_EMPTY = ("models", "cntk_readouts", "trained_kernels")
# string keys checked here (other string keys, e.g. table's models, are checked by their experiment's plan,
# which also runs before anything is written)
CHOICES = {"dtype": ("float32", "float64"), "activation": ("relu", "erf", "tanh")}
# keys that take a number > 0 as well as the strings their presets give (lr: a number or "kernel")
NUMBER_OR_CHOICE = ("lr", "lrs")


def _kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    return "none" if value is None else type(value).__name__


def _describe(kinds, floor, choices):
    words = []
    if "bool" in kinds:
        words.append("True or False")
    if "int" in kinds and "number" not in kinds:
        words.append(f"an integer >= {floor}")
    if "number" in kinds:
        words.append(f"a finite number {'>= 0' if floor == 0 else '> 0'}")
    if "str" in kinds:
        words.append("one of " + ", ".join(choices))
    return " or ".join(words)


def _check_item(key, value, kinds, floor, choices):
    """The item check shared by scalars and list elements; returns an error text or None."""
    kind = _kind(value)
    if kind == "int" and "number" in kinds:
        kind = "number"
    if kind not in kinds:
        return _describe(kinds, floor, choices)
    if kind == "int" and value < floor:
        return _describe(kinds, floor, choices)
    if kind == "number" and not (math.isfinite(value) and (value >= 0 if floor == 0 else value > 0)):
        return _describe(kinds, floor, choices)
    if kind == "str" and key in CHOICES and value not in choices:
        return _describe(kinds, floor, choices)
    return None


def _settings(presets: dict) -> dict:
    """{name: settings dict} from an experiment's presets (``Preset`` objects or plain dicts)."""
    return {name: dict(getattr(p, "settings", p)) for name, p in presets.items()}


def check_override(key: str, value, presets: dict):
    """``value`` if it fits what the presets give ``key``, else ValueError naming the key (see module doc)."""
    presets = _settings(presets)
    examples = [p[key] for p in presets.values() if key in p]
    allow_none = any(v is None for v in examples)
    examples = [v for v in examples if v is not None]
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"--set {key}=None: {key} cannot be None here (presets use {examples[0]!r})")
    is_list = any(isinstance(v, (list, tuple)) for v in examples)
    items = [x for v in examples for x in (v if isinstance(v, (list, tuple)) else [v])]
    kinds = {_kind(x) for x in items} or {_kind(value)}
    if key in NUMBER_OR_CHOICE:
        kinds |= {"number"}
    numeric = [x for x in items if _kind(x) in ("int", "number")]
    floor = 0 if any(x == 0 for x in numeric) else 1
    choices = tuple(dict.fromkeys(list(CHOICES.get(key, ())) + [x for x in items if isinstance(x, str)]))
    if is_list:
        if not isinstance(value, (list, tuple)) or (not value and key not in MAY_BE_EMPTY):
            raise ValueError(f"--set {key}={value!r}: {key} takes a non-empty list like {examples[0]!r} "
                             f"(e.g. --set {key}=[{', '.join(map(repr, examples[0][:2]))}])")
        for item in value:
            problem = _check_item(key, item, kinds, floor, choices)
            if problem:
                raise ValueError(f"--set {key}={value!r}: each entry of {key} must be {problem}, got {item!r}")
        return list(value)
    problem = _check_item(key, value, kinds, floor, choices)
    if problem:
        raise ValueError(f"--set {key}={value!r}: {key} must be {problem}"
                         + (" or None" if allow_none else "") + f", got {_kind(value)} {value!r}")
    return float(value) if "number" in kinds and _kind(value) in ("int", "number") else value


def parse_override(item: str, presets: dict):
    """(key, value) from "KEY=VALUE" (VALUE a Python literal; bare words are strings), checked by
    ``check_override``; ValueError naming the item otherwise."""
    keys = sorted({k for p in _settings(presets).values() for k in p if k != "expected"})
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or key not in keys:
        raise ValueError(f"--set expects KEY=VALUE with KEY one of {', '.join(keys)}; got {item!r}")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = text.strip()
    return key, check_override(key, value, presets)
