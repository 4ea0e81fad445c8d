"""Work shared by the runs of one task, held in an explicit object instead of a module-level cache.

The runner gives each task of a sweep (the runs an experiment's ``shared_work`` puts together, e.g. every
method of one seed of ``equivalence``) one :class:`Memo`; a run asks it for what it shares with its siblings
(the data split, the reference kernel) and computes it only when absent. The memo lives as long as the task:
nothing survives between sweeps or leaks from one configuration into another.

A value asked for with ``persist=True`` (the seed's reference kernel Θ₀) is also written to the sweep's folder
(``DIR/memo/``, removed when the sweep completes), so a task killed after some of its runs resumes from it
instead of computing it again: a group that takes longer than the time between two kills still progresses.
Persisted values are nested dicts, lists and tuples of NumPy arrays, numbers, strings and None, kept as one
``.npz`` per value (no pickle).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

MEMO_FOLDER = "memo"


class Memo:
    """At most ``maxsize`` values, keyed by the JSON text (sorted keys) of a key: a dict of what determines the value,
    the least recently used dropped first; ``directory`` (optional) holds the persisted ones."""

    def __init__(self, maxsize: int = 4, directory=None):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self.directory = None if directory is None else Path(directory)
        self._values = OrderedDict()
        self.computed = 0   # how many values were computed (not found): what tests and curious users check
        self.loaded = 0     # how many were read back from ``directory``

    def get(self, key, compute, persist: bool = False):
        """The value stored under ``key``, or ``compute()`` stored there (and in ``directory`` with ``persist``)."""
        text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=repr)
        if text in self._values:
            self._values.move_to_end(text)
            return self._values[text]
        path = self._path(text) if persist and self.directory is not None else None
        value = _load(path) if path is not None and path.is_file() else _MISSING
        if value is _MISSING:
            value = compute()
            self.computed += 1
            if path is not None:
                _save(path, value)
        else:
            self.loaded += 1
        self._values[text] = value
        while len(self._values) > self.maxsize:
            self._values.popitem(last=False)
        return value

    def _path(self, text: str) -> Path:
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"

    def __len__(self):
        return len(self._values)


_MISSING = object()


def _flatten(value, arrays: dict):
    """The JSON structure of ``value`` with its arrays moved into ``arrays`` (None when a leaf is unsupported)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            return None
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"array": name}
    if isinstance(value, dict):
        items = {str(k): _flatten(v, arrays) for k, v in value.items()}
        return None if any(v is None for v in items.values()) else {"dict": items}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, arrays) for v in value]
        return None if any(i is None for i in items) else {"tuple" if isinstance(value, tuple) else "list": items}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    return None


def _unflatten(node, arrays):
    if node is None:
        return None
    if "array" in node:
        return arrays[node["array"]]
    if "dict" in node:
        return {k: _unflatten(v, arrays) for k, v in node["dict"].items()}
    if "tuple" in node:
        return tuple(_unflatten(v, arrays) for v in node["tuple"])
    if "list" in node:
        return [_unflatten(v, arrays) for v in node["list"]]
    return node["value"]


def _save(path: Path, value) -> None:
    """Write ``value`` atomically (a temporary file, then os.replace); values it cannot hold, and a full disk,
    only cost the resume its shortcut (the value is recomputed then)."""
    arrays = {}
    structure = _flatten(value, arrays)
    if structure is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, __structure__=np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _load(path: Path):
    """The value saved at ``path``, or _MISSING when it cannot be read back (torn, foreign): then it is recomputed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "__structure__"}
            structure = json.loads(bytes(data["__structure__"]).decode())
    except Exception:   # noqa: BLE001  torn zip, foreign file, missing entry: recompute, never trust it
        return _MISSING
    return _unflatten(structure, arrays)
