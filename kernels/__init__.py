"""lazykit kernels: analytic NNGP/NTK, empirical NTK, classic kernels, random features, solvers, estimators.

Public names are imported lazily, so ``import kernels`` stays cheap (torch loads only when needed).
"""
from kernels.lazy_exports import lazy_exports

_EXPORTS = {
    # analytic.py
    "FullyConnected": "analytic", "Convolutional": "analytic",
    # empirical.py
    "empirical_ntk": "empirical",
    # classic.py
    "RBF": "classic", "Laplace": "classic", "Polynomial": "classic",
    # features.py
    "RandomFourierFeatures": "features", "ArcCosineFeatures": "features", "NTKFeatures": "features",
    # estimators.py
    "NTKRegressor": "estimators", "NTKClassifier": "estimators", "KernelRegressor": "estimators",
    "KernelClassifier": "estimators", "RandomFeaturesRegressor": "estimators",
    "RandomFeaturesClassifier": "estimators",
    # gram_tiles.py, gram_store.py
    "gram": "gram_tiles", "EmpiricalNTK": "gram_tiles", "GramStore": "gram_store",
    # backend.py
    "resolve_device": "backend", "gpu_available": "backend",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
