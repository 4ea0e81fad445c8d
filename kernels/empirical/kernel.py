"""``EmpiricalNTK``: the empirical NTK of a torch model as a kernel object (``.ntk``), for ``kernels.gram``, the
Gram stores and the estimators."""
from __future__ import annotations

from kernels import backend
from kernels.empirical import METHODS, OUTPUTS, empirical_ntk
from kernels.validation import check_choice

class EmpiricalNTK:
    """The empirical NTK of a torch model as a kernel object for ``gram``: ``.ntk(x1, x2=None)``.

    Wraps ``kernels.empirical_ntk(model, x1, x2, output="mean", method=...)``; the store records the model's
    class and a SHA-256 of its weights, so a store is refused after the model changed. Not thread-safe (the
    model is traced while computing), so its tiles run one at a time per process; torch's own threads share
    each tile.
    """

    thread_safe = False

    def __init__(self, model, output="mean", method="auto"):
        import torch
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        if check_choice(output, "output", OUTPUTS) != "mean":
            raise ValueError("output must be 'mean' for gram: a Gram tile is one (n1, n2) matrix, not the "
                             "(n1, n2, O, O) blocks of output='full' (call kernels.empirical_ntk for those)")
        self.output = output
        self.method = check_choice(method, "method", METHODS)

    def get_params(self, deep: bool = True) -> dict:
        return {"model": self.model, "output": self.output, "method": self.method}

    def ntk(self, x1, x2=None):
        theta = empirical_ntk(self.model, x1, x2, output=self.output, method=self.method)
        return backend.to_numpy(theta) if backend.is_torch(theta) else theta

    __call__ = ntk
