"""Identities of runs and sweeps: canonical JSON of a configuration and its SHA-256 fingerprint.

A run's key is the fingerprint of its flat configuration; a sweep's fingerprint (in DIR/config.json) is that of
its shared settings. Where the data was found (``LOCATION_KEYS``) is left out of both.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np


def to_jsonable(value):
    """Plain-JSON form of a value: NumPy scalars/arrays to Python, NaN/inf to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def canonical(value) -> str:
    """Canonical JSON text (sorted keys, no spaces): equal configurations give equal strings."""
    try:
        return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"a run config must hold only numbers, strings, lists and dicts (JSON): {exc}") from None


def fingerprint(value) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:16]


# Settings that say where inputs were found, not what they are: the same data reached through another folder is
# the same run. They stay in the rows and in config.json, but run keys and sweep fingerprints see them as None
# (what a sweep without them stored, so older results folders still resume); the experiments put the data's
# content checksum (``data_sha256``, compare.data.content_sha256) in the configuration instead.
LOCATION_KEYS = ("data_dir",)


def identity(config: dict) -> dict:
    """``config`` with its :data:`LOCATION_KEYS` set to None: what run keys and sweep fingerprints are made of."""
    return {k: None if k in LOCATION_KEYS else v for k, v in config.items()}


def run_key(config: dict) -> str:
    """The identity of one run: the fingerprint of its configuration, where its data was found left out."""
    return fingerprint(identity(config))
