"""Array backend: choose the namespace and device, hand arrays to and from torch (checks: ``kernels.validation``).

Device policy (docs/conventions.md, *Devices*): kernels compute where CuPy sees a GPU (``resolve_device``), nets
where torch does; ``resolve_devices`` decides both at once for code that runs the two (the experiments), and
each component receives its own resolved device.

Array code in lazykit is written once against an array namespace ``xp`` (the Python array API standard,
through ``array-api-compat``): NumPy on the CPU, CuPy on the GPU. Tests run the same functions under
``array-api-strict`` to prove they use only the standard API.

Dtype policy: kernel functions keep the input's floating dtype and refuse integers unless ``dtype=`` asks for
a cast (``kernels.validation.check_array``); where a default is needed (the estimators), float64 on the CPU, float32 on the GPU.
Torch tensors cross over zero-copy through DLPack with their dtype preserved.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import array_api_compat
import numpy as np

DEVICES = ("auto", "cpu", "cuda")
RESOLVED_DEVICES = ("cpu", "cuda")          # what "auto" becomes
FLOAT_DTYPES = ("float32", "float64")


# ----------------------------------------------------------------------------------------------- devices
@functools.lru_cache(maxsize=1)
def cupy_device_count() -> int:
    """Number of CUDA devices CuPy can see (0 when CuPy is missing or sees no GPU)."""
    try:
        import cupy   # optional (the GPU extra): imported only where a GPU is asked about or used
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # ImportError, CUDARuntimeError, missing driver: all mean "no usable GPU"
        return 0


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return cupy_device_count() > 0


def resolve_device(device="auto") -> str:
    """Map ``device`` ("auto" | "cpu" | "cuda") to "cpu" or "cuda".

    "auto" picks "cuda" when CuPy imports and sees a GPU, else "cpu". "cuda" without a usable GPU is an
    error, never a silent fallback.
    """
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    device = device.lower()
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    if device == "cuda" and not gpu_available():
        raise ValueError("device='cuda' was requested but CuPy is not installed or sees no GPU; "
                         "install cupy (e.g. pip install cupy-cuda12x) on a machine with a CUDA GPU, "
                         "or pass device='cpu' or device='auto'")
    return device


def torch_gpu_available() -> bool:
    """True when torch is installed and sees a CUDA GPU (imports torch: the nets' side of a device choice)."""
    try:
        import torch   # imported here: most kernel code never needs torch (1.5 s to import on 2 cores)
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclasses.dataclass(frozen=True)
class Devices:
    """Where each component computes: ``nets`` on torch's device, ``kernels`` on CuPy's ("cpu" or "cuda")."""

    nets: str
    kernels: str

    def notice(self) -> str | None:
        """One line when the components run on different devices (None when they agree)."""
        if self.nets == self.kernels:
            return None
        why = ("torch sees a GPU but CuPy is not installed or sees none" if self.nets == "cuda" else
               "CuPy sees a GPU but torch does not (a CPU build of torch?)")
        return (f"device auto: nets on {self.nets} (torch), kernels on {self.kernels} (CuPy): {why}; "
                "install both GPU builds to run everything on the GPU")

    def as_dict(self) -> dict:
        return {"nets": self.nets, "kernels": self.kernels}


def resolve_devices(device="auto") -> Devices:
    """The device policy, in one place: "auto" puts the nets where torch sees a GPU and the kernels where CuPy
    does, each independently (the default PyPI torch is a CUDA build, CuPy an extra); "cpu" puts both on the
    CPU; "cuda" needs both, and names the one missing (never a silent fallback)."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    device = device.lower()
    if device == "cpu":
        return Devices("cpu", "cpu")
    torch_gpu, cupy_gpu = torch_gpu_available(), gpu_available()
    if device == "auto":
        return Devices("cuda" if torch_gpu else "cpu", "cuda" if cupy_gpu else "cpu")
    missing = [what for what, ok in (("torch (the nets) sees no CUDA GPU: install a CUDA build of torch", torch_gpu),
                                     ("CuPy (the kernels) is not installed or sees no GPU: pip install "
                                      "cupy-cuda13x[ctk] (or cupy-cuda12x[ctk])", cupy_gpu)) if not ok]
    if missing:
        raise ValueError("device 'cuda' was requested but " + "; and ".join(missing)
                         + "; or use device 'auto' (each part on the GPU where it can) or 'cpu'")
    return Devices("cuda", "cuda")


def get_namespace(*arrays):
    """The array-API namespace shared by ``arrays`` (NumPy, CuPy, array-api-strict, ...)."""
    return array_api_compat.array_namespace(*arrays)


def device_of(x) -> str:
    """"cuda" for a CuPy array or a CUDA torch tensor, else "cpu"."""
    if is_torch(x):
        return "cuda" if x.device.type == "cuda" else "cpu"
    return "cuda" if array_api_compat.is_cupy_array(x) else "cpu"


def default_dtype(device: str) -> str:
    """float64 on the CPU, float32 on the GPU."""
    return "float64" if device == "cpu" else ("float32" if resolve_device(device) == "cuda" else "float64")


def resolve_dtype(dtype, device: str, name: str = "dtype") -> str:
    """Normalise ``dtype`` (None, "float32", "float64", np.float32, torch.float64, ...) to a string."""
    if dtype is None:
        return default_dtype(device)
    text = str(dtype).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    if text in ("float", "double"):
        text = {"float": "float32", "double": "float64"}[text]
    if text not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be one of {FLOAT_DTYPES}, got {dtype!r}")
    return text


# ----------------------------------------------------------------------------------------------- torch
def is_torch(x) -> bool:
    return array_api_compat.is_torch_array(x)


def from_torch(t):
    """Zero-copy view of a torch tensor as a NumPy (CPU) or CuPy (CUDA) array, dtype preserved.

    A tensor that requires grad is detached first (the view shares memory with the tensor's data).
    """
    if not is_torch(t):
        raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.device.type == "cuda":
        import cupy   # optional: a CUDA tensor needs it
        return cupy.from_dlpack(t)
    if t.device.type != "cpu":
        raise ValueError(f"tensors on device {t.device} are not supported; move them to 'cpu' or 'cuda'")
    return np.from_dlpack(t)


def half_to_float(t):
    """A float16/bfloat16 tensor as float32 (DLPack cannot carry bfloat16 to NumPy); others unchanged."""
    import torch
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def to_torch(a):
    """Zero-copy view of a NumPy or CuPy array as a torch tensor, dtype preserved."""
    # Imported here, not at the top: every kernel imports this module and most never touch torch, whose import
    # takes 1.5 s on an idle 2-core machine (numpy: 0.1 s).
    import torch
    if is_torch(a):
        return a
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return torch.from_dlpack(a)


def to_numpy(a) -> np.ndarray:
    """Copy (when needed) any supported array to a NumPy array on the host."""
    if is_torch(a):
        return a.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def to_device(a, device: str):
    """Move a NumPy/CuPy array to ``device`` ("cpu", "cuda" or "auto")."""
    device = device if device == "cpu" else resolve_device(device)
    if device == "cuda":
        import cupy   # optional: resolve_device has checked that it imports
        return cupy.asarray(a)
    return to_numpy(a)


# ----------------------------------------------------------------------------------------------- arrays
def is_array(x) -> bool:
    """True for NumPy/CuPy/torch/array-api arrays (not lists, scalars or strings)."""
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (numbers.Number, str))


def thread_map(fn, items, n_jobs: int) -> None:
    """Call ``fn(item)`` for every item, on ``n_jobs`` threads when there is more than one item (for work that
    releases the GIL: BLAS, NumPy, compiled loops); exceptions propagate."""
    items = list(items)
    if n_jobs > 1 and len(items) > 1:
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(n_jobs) as pool:
            for _ in pool.map(fn, items):
                pass
    else:
        for item in items:
            fn(item)


# ----------------------------------------------------------------------------------------------- exact rescaling
def power_of_two_exponent(*arrays) -> int:
    """The exponent e with 2^(e−1) ≤ max|a| < 2^e over ``arrays`` (0 when all are zero): dividing by 2^e is
    exact and brings every entry inside (−1, 1), so products and sums of squares cannot overflow."""
    top = max(float(get_namespace(a).max(get_namespace(a).abs(a))) for a in arrays)
    return math.frexp(top)[1] if top > 0 else 0


def times_power_of_two(a, e: int):
    """a·2^e, exact barring overflow or underflow, in steps of at most 2^±100 (a factor that float32 can hold:
    a larger Python float would become inf in a float32 array, and 0·inf is NaN)."""
    while e:
        step = max(-100, min(100, e))
        a = a * 2.0 ** step
        e -= step
    return a
