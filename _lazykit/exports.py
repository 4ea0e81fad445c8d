"""Lazy package exports (PEP 562): ``import kernels`` (or ``nets``) stays cheap; a public name loads its module
on first use. Measured on a 2-core machine: ``import torch`` alone takes about 1.5 s and scikit-learn about 1 s,
while most uses of ``kernels`` (NumPy kernels, solvers) need neither."""
import importlib


def lazy_exports(package: str, exports: dict, modules: tuple = ()):
    """Return ``(__getattr__, __dir__)`` for a package whose public names map to submodules; the names in
    ``modules`` are public submodules themselves (``kernels.stax``), imported on first use."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        if name in modules:
            module = importlib.import_module(f"{package}.{name}")
            namespace[name] = module
            return module
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(exports) | set(modules))

    return __getattr__, __dir__
