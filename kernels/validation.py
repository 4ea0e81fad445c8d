"""Argument checks: the one place where lazykit decides what a valid parameter or input array is.

Modelled on ``sklearn.utils.validation`` (``check_scalar``, ``check_array``), with one message style:

* ``check_scalar(-1, "depth", int, min_val=0)``       → "`depth` must be an integer ≥ 0, got -1"
* ``check_choice("rellu", "activation", ("relu", "erf"))`` → "unknown activation 'rellu'; valid: relu, erf"
* ``check_array(x, "X", ndim=2)``                     → "X must be 2-dimensional, got shape (3,)",
  "X contains NaN or inf", "X is empty (shape (0, 3)); ...".

Rules shared by every check: booleans are never numbers (``True`` is not the integer 1 here); NumPy scalars
count (``np.int64(3)`` is an integer, ``np.float32(0.5)`` a number); NaN is never a valid number and ±inf
only where a check allows it. A value of the wrong type raises ``ArgumentTypeError`` — a ``TypeError``, as in
scikit-learn, that is also a ``ValueError``, so callers catching either see it; a value of the right type
outside its range raises ``ValueError``.
"""
from __future__ import annotations

import math
import numbers
import os
import uuid
from pathlib import Path

import numpy as np

from kernels import backend

BOUNDARIES = ("both", "left", "right", "neither")
_BOOLS = (bool, np.bool_)


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError, and a ValueError for code that catches any bad argument)."""


class GramWarning(RuntimeWarning):
    """The Gram matrix was singular or indefinite to working precision; a pseudo-inverse was used instead."""


class KernelOverflowError(ValueError):
    """A kernel of finite inputs and parameters would leave (or left) the dtype's range: the message names the
    input and the range that works."""


# ----------------------------------------------------------------------------------------------- scalars
def _number_text(value) -> str:
    return str(value) if isinstance(value, numbers.Integral) else f"{value:g}"


def _range_text(min_val, max_val, include_boundaries: str) -> str:
    """"≥ 0", "> 0", "≤ 1", "in [0, 1)", ... (empty when unbounded)."""
    left = include_boundaries in ("both", "left")
    right = include_boundaries in ("both", "right")
    if min_val is not None and max_val is not None:
        return (f" in {'[' if left else '('}{_number_text(min_val)}, {_number_text(max_val)}"
                f"{']' if right else ')'}")
    if min_val is not None:
        return f" {'≥' if left else '>'} {_number_text(min_val)}"
    if max_val is not None:
        return f" {'≤' if right else '<'} {_number_text(max_val)}"
    return ""


def _expected(kind: str, min_val, max_val, include_boundaries: str, allow_inf: bool, allow_none) -> str:
    noun = "an integer" if kind == "int" else ("a number" if allow_inf else "a finite number")
    text = noun + _range_text(min_val, max_val, include_boundaries)
    if allow_none:
        meaning = f" ({allow_none})" if isinstance(allow_none, str) else ""
        text = f"None{meaning} or {text}"
    return text


def check_scalar(x, name: str, type, *, min_val=None, max_val=None, include_boundaries: str = "both",
                 allow_inf: bool = False, allow_none=False):
    """Validate a scalar parameter and return it as a Python ``int`` or ``float`` (or None).

    ``type`` is ``int`` (any ``numbers.Integral``: Python or NumPy integers, never bools) or ``float`` (any
    ``numbers.Real``: integers too, never bools, never NaN; ±inf only with ``allow_inf``). ``min_val`` and
    ``max_val`` bound it; ``include_boundaries`` ("both", "left", "right", "neither") says which bounds are
    allowed values (as ``sklearn.utils.check_scalar``). ``allow_none`` lets None through (returned as None); a
    string there names what None means and appears in the message ("None (no bias) or a finite number ≥ 0").
    """
    if type in (int, numbers.Integral):
        kind = "int"
    elif type in (float, numbers.Real):
        kind = "float"
    else:
        raise ValueError(f"check_scalar: type must be int or float, got {type!r}")
    if include_boundaries not in BOUNDARIES:
        raise ValueError(f"check_scalar: include_boundaries must be one of {', '.join(BOUNDARIES)}, "
                         f"got {include_boundaries!r}")
    if not isinstance(allow_inf, _BOOLS):
        raise ArgumentTypeError(f"`allow_inf` must be True or False, got {allow_inf!r}")
    if allow_none is not None and not isinstance(allow_none, _BOOLS + (str,)):
        raise ArgumentTypeError(f"`allow_none` must be True, False (or None) or a string saying what None means, "
                                f"got {allow_none!r}")
    for bound, bound_name in ((min_val, "min_val"), (max_val, "max_val")):
        if bound is not None and (isinstance(bound, _BOOLS) or not isinstance(bound, numbers.Real)):
            raise ArgumentTypeError(f"`{bound_name}` must be None or a number, got {bound!r}")
    if x is None and allow_none:
        return None
    expected = _expected(kind, min_val, max_val, include_boundaries, allow_inf, allow_none)
    message = f"`{name}` must be {expected}, got {x!r}"
    wanted = numbers.Integral if kind == "int" else numbers.Real
    if isinstance(x, _BOOLS) or not isinstance(x, wanted):
        raise ArgumentTypeError(message)
    value = int(x) if kind == "int" else float(x)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(message)
    left = include_boundaries in ("both", "left")
    right = include_boundaries in ("both", "right")
    if min_val is not None and (value < min_val or (value == min_val and not left)):
        raise ValueError(message)
    if max_val is not None and (value > max_val or (value == max_val and not right)):
        raise ValueError(message)
    return value


def check_choice(x, name: str, choices):
    """Return ``x`` if it is one of ``choices``, else raise "unknown {name} {x!r}; valid: a, b, ...".

    Membership is by equality, except that a bool never matches a number (``True`` is not the choice 1).
    """
    choices = tuple(choices)
    for choice in choices:
        if isinstance(x, _BOOLS) != isinstance(choice, _BOOLS):
            continue
        try:
            equal = x == choice
        except Exception:   # objects whose == raises: never a choice
            continue
        # only a plain truth value counts: an array's elementwise == (np.array([1]) == 1 is array([True]),
        # truthy) is never a choice
        if isinstance(equal, _BOOLS) and equal:
            return x
    raise ValueError(f"unknown {name} {x!r}; valid: {', '.join(map(str, choices))}")


def check_bool(x, name: str) -> bool:
    """``x`` if it is True or False (a Python or NumPy bool), else ``ArgumentTypeError`` naming ``name``: a
    string such as "yes" or "false", or a number, is never a flag (``bool("false")`` is True)."""
    if not isinstance(x, _BOOLS):
        raise ArgumentTypeError(f"`{name}` must be True or False, got {type(x).__name__} {x!r}")
    return bool(x)


def check_random_state(random_state, name: str = "random_state"):
    """``random_state`` if it can seed NumPy: None, an integer in [0, 2³²), a ``numpy.random.Generator`` or
    ``RandomState``; else an error naming ``name`` (NumPy's own says "Seed must be between 0 and 2**32 - 1")."""
    if random_state is None or isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    return check_scalar(random_state, name, int, min_val=0, max_val=2 ** 32 - 1)


# ----------------------------------------------------------------------------------------------- paths
class UnwritablePathError(ValueError):
    """A path an option names cannot be written (a file where a folder is wanted, a missing or read-only folder);
    checked before any work, so a long computation never fails at its end."""


def _probe_write(folder: Path) -> str | None:
    """Why a new file cannot be created in the existing ``folder`` (None when it can): a real create-and-delete,
    so read-only mounts, permissions and a full inode table all count (os.access is always true for root)."""
    probe = folder / f".lazykit-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        handle = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(handle)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def check_writable(path, name: str, *, directory: bool = False) -> Path:
    """``path`` as a ``Path`` that can be written, or ``UnwritablePathError`` naming the option ``name``.

    ``directory=True`` (a store, a results folder): ``path`` must not be a file; it is created later if absent,
    so its nearest existing ancestor must be a writable folder. ``directory=False`` (a file written at the end,
    e.g. a checkpoint): ``path`` must not be a folder, and its folder must exist and be writable.
    """
    check_bool(directory, "directory")
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ArgumentTypeError(f"`{name}` must be a path (str or os.PathLike), got {type(path).__name__} {path!r}")
    path = Path(path)
    if directory:
        if path.exists() and not path.is_dir():
            raise UnwritablePathError(f"`{name}` {str(path)!r} is a file, not a folder; pass a folder path (it is "
                                      "created if needed)")
        folder = path
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise UnwritablePathError(f"`{name}` {str(path)!r} cannot be created: {str(folder)!r} is a file")
    else:
        if path.is_dir():
            raise UnwritablePathError(f"`{name}` {str(path)!r} is a folder; pass a file path inside it")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise UnwritablePathError(f"`{name}` {str(path)!r}: its folder {str(folder)!r} does not exist; create "
                                      "it first or pass another path")
    problem = _probe_write(folder)
    if problem:
        raise UnwritablePathError(f"`{name}` {str(path)!r}: cannot write in {str(folder)!r} ({problem}); pass a "
                                  "writable location")
    return path


# ----------------------------------------------------------------------------------------------- arrays
def check_finite(x, name: str):
    """Raise ValueError if the array ``x`` contains NaN or inf (NumPy, CuPy, torch or any array-API array)."""
    xp = backend.get_namespace(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    return x


def check_array(x, name: str, *, ndim=None, min_ndim=None, device=None, dtype=None, allow_empty=False,
                ensure_all_finite=True):
    """Validate an input array and return it as a real floating NumPy/CuPy array.

    - torch tensors become NumPy/CuPy arrays through DLPack (zero-copy when no cast or move is needed);
    - half precision (float16, torch.bfloat16) is upcast to float32, exactly: lazykit computes in float32 or
      float64 only (half-precision products overflow at |x| ≈ 256, and DLPack cannot carry bfloat16);
    - lists, scalars and other non-arrays raise TypeError; integer/bool/complex dtypes raise TypeError
      unless ``dtype`` asks for a cast (integers only: complex and bool are never silently cast);
    - NaN/inf (unless ``ensure_all_finite=False``), empty arrays (unless ``allow_empty``) and a wrong ``ndim``
      / ``min_ndim`` raise ValueError naming ``name``;
    - ``device`` ("auto"/"cpu"/"cuda" or None = stay where the input lives) and ``dtype`` (None = keep a
      float dtype) move and cast.
    """
    check_bool(allow_empty, "allow_empty")
    check_bool(ensure_all_finite, "ensure_all_finite")
    for value, what in ((ndim, "ndim"), (min_ndim, "min_ndim")):
        check_scalar(value, what, int, min_val=0, allow_none="any")
    if not backend.is_array(x):
        raise TypeError(f"{name} must be an array (NumPy, CuPy or torch), got {type(x).__name__}")
    if backend.is_torch(x):
        x = backend.from_torch(backend.half_to_float(x))
    xp = backend.get_namespace(x)
    if getattr(x.dtype, "kind", "f") not in "biufc":      # strings, bytes, objects: never cast to numbers
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if xp.isdtype(x.dtype, "real floating") and x.dtype not in (xp.float32, xp.float64):
        x = xp.astype(x, xp.float32)   # float16 (NumPy, CuPy): exact upcast
    if xp.isdtype(x.dtype, "complex floating") or x.dtype == xp.bool:
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if dtype is None and not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype (float32 or float64), got {x.dtype}; "
                        f"convert it with .astype('float64') or pass dtype=")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); at least one sample is needed")
    if device is not None:
        target = backend.resolve_device(device)
        if target != backend.device_of(x):
            x = backend.to_device(x, target)
            xp = backend.get_namespace(x)
    if dtype is not None:
        want = getattr(xp, backend.resolve_dtype(dtype, backend.device_of(x), "dtype"))
        if x.dtype != want:
            x = xp.astype(x, want)
    return check_finite(x, name) if ensure_all_finite else x
