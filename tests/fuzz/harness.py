"""The fuzz harness: run one call of a public entry point and classify it.

Every call must end in one of two ways:

* a **clear error**: an exception of an agreed type (``ValueError`` or ``TypeError``, their subclasses such as
  ``ArgumentTypeError``, ``KernelOverflowError``, scikit-learn's ``NotFittedError``, and the project's
  ``DivergenceError``) whose message names one of the call's arguments (the bad one, or another when the
  combination is what is refused, e.g. a 2-column y for a one-output model);
* a **finite valid result**: every number in the returned value (arrays, tensors, floats, tuples, lists,
  dicts, dataclasses such as ``History``) is finite.

Anything else fails the test: NaN or inf in a result, an exception of another type (IndexError, KeyError,
AssertionError, RuntimeError, ZeroDivisionError, … from inside NumPy/torch/DLPack), a message that names no
argument, or a value the case marks "must be rejected" (NaN/inf, a bool where a number is expected) that was
accepted. ``COUNTS`` tallies the outcomes per entry point; ``tests/fuzz/conftest.py`` prints the totals.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import re
import signal
import warnings

import numpy as np
import torch

from nets.training import DivergenceError

CLEAR_ERRORS = (ValueError, TypeError, DivergenceError)
CALL_SECONDS = 10.0     # per call: longer is a hang (every call here is on a handful of points)


class CallTimeout(BaseException):
    """The call ran past ``CALL_SECONDS`` (a BaseException, so library code catching Exception cannot hide it)."""


@contextlib.contextmanager
def time_limit(seconds=CALL_SECONDS):
    """Raise CallTimeout in the main thread after ``seconds`` (SIGALRM): the campaigns' hang detection."""
    def expire(signum, frame):
        raise CallTimeout(f"no answer within {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
COUNTS: collections.Counter = collections.Counter()   # (entry point, outcome) -> number of calls
OUTCOMES = ("finite result", "clear error")


class Case:
    """The arguments of one call, drawn one by one; at most one of them is bad.

    ``arg(name, good, bad=(), reject=())`` draws a value: from ``good`` (valid), or — for at most one argument
    per case, with probability about 1/4 each — from ``bad`` (invalid or extreme: the call may refuse it with
    a clear error naming ``name``, or accept it and return finite values) or ``reject`` (must be refused).
    """

    def __init__(self, data):
        self.data = data
        self.bad = None          # (name, aliases) of the bad argument, if any
        self.must_reject = False
        self.names = []

    def draw(self, strategy):
        return self.data.draw(strategy)

    def arg(self, name, good, bad=(), reject=(), aliases=()):
        from hypothesis import strategies as st
        self.names.append(name)
        self.names.extend(aliases)
        options = [("good", v) for v in good]
        if self.bad is None and (bad or reject) and self.draw(st.integers(0, 3)) == 0:
            options = [("bad", v) for v in bad] + [("reject", v) for v in reject]
        kind, value = self.draw(st.sampled_from(options))
        if kind != "good":
            self.bad = (name,) + tuple(aliases)
            self.must_reject = kind == "reject"
        return value() if callable(value) and getattr(value, "lazy", False) else value


def lazy(fn):
    """Mark a zero-argument function as a value built only when drawn (arrays, models)."""
    fn.lazy = True
    return fn


def nonfinite(value, where="result", depth=0):
    """Where in ``value`` a NaN or inf sits (a short path), or None when every number is finite."""
    if depth > 6 or value is None or isinstance(value, (str, bytes, bool)):
        return None
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value.detach()).all()):
            return where
        return None
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        if value.dtype.kind in "fc" and not bool(np.all(np.isfinite(value))):
            return where
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        for k, v in value.items():
            found = nonfinite(v, f"{where}[{k!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value[:10000]):
            found = nonfinite(v, f"{where}[{i}]", depth + 1)
            if found:
                return found
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return nonfinite({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where, depth + 1)
    return None


def names_any(message: str, names) -> bool:
    """True when ``message`` contains one of ``names`` as a whole word (backticks and quotes allowed around it)."""
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names)


def check_call(entry: str, case: Case, fn):
    """Call ``fn()`` and classify it (see the module docstring); raises AssertionError with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with time_limit():
                result = fn()
    except CallTimeout as exc:
        raise AssertionError(f"{entry}: hang, {exc} (bad argument: {case.bad})") from None
    except CLEAR_ERRORS as exc:
        message = str(exc)
        wanted = case.names + list(case.bad or ())
        if not names_any(message, wanted):
            raise AssertionError(f"{entry}: {type(exc).__name__} whose message names none of {list(wanted)}: "
                                 f"{message!r}") from exc
        outcome = "clear error"
    except Exception as exc:   # noqa: BLE001  anything else is, by definition, an unclear error
        raise AssertionError(f"{entry}: unclear {type(exc).__name__} (bad argument: {case.bad}): {exc}") from exc
    else:
        where = nonfinite(result)
        if where:
            raise AssertionError(f"{entry}: NaN or inf in {where} (bad argument: {case.bad})")
        if case.must_reject:
            raise AssertionError(f"{entry}: accepted an invalid {case.bad[0]} without an error")
        outcome = "finite result"
    COUNTS[(entry, outcome)] += 1
    return outcome


def registry():
    """(ENTRIES, entry): a dict of case builders by entry-point name and the decorator that fills it."""
    entries = {}

    def entry(name):
        def register(builder):
            entries[name] = builder
            return builder
        return register

    return entries, entry
