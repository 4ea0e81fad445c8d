"""lazykit kernels: analytic NNGP/NTK, empirical NTK, classic kernels, random features, solvers, estimators.

Public names are imported lazily (``_lazykit.exports``), so ``import kernels`` stays cheap: torch loads only for
the empirical NTK, scikit-learn only for the estimators and random features. Other packages (nets, compare)
import what they use from here, not from the submodules.
"""
from _lazykit.exports import lazy_exports

_EXPORTS = {
    # analytic.py
    "FullyConnected": "analytic", "Convolutional": "analytic",
    # empirical/
    "empirical_ntk": "empirical",
    # classic.py
    "RBF": "classic", "Laplace": "classic", "Polynomial": "classic",
    # features.py
    "RandomFourierFeatures": "features", "ArcCosineFeatures": "features", "NTKFeatures": "features",
    # solvers.py
    "krr_solve": "solvers", "EigenPath": "solvers", "nystrom_krr": "solvers", "GramWarning": "solvers",
    # estimators.py
    "NTKRegressor": "estimators", "NTKClassifier": "estimators", "KernelRegressor": "estimators",
    "KernelClassifier": "estimators",
    # feature_estimators.py
    "RandomFeaturesRegressor": "feature_estimators", "RandomFeaturesClassifier": "feature_estimators",
    # gram_tiles.py, gram_store.py, gram_solvers.py
    "gram": "gram_tiles", "gram_in": "gram_tiles", "EmpiricalNTK": "gram_tiles", "GramStore": "gram_store",
    "StoreMismatchError": "gram_store", "StoreNotFoundError": "gram_store",
    "solve_stored": "gram_solvers", "available_memory": "gram_solvers",
    # backend.py
    "resolve_device": "backend", "gpu_available": "backend", "to_numpy": "backend", "to_device": "backend",
    "device_of": "backend",
    # loss_flow.py
    "kernel_gradient_flow": "loss_flow", "loss_derivatives": "loss_flow",
    # validation.py
    "check_scalar": "validation", "check_choice": "validation", "check_array": "validation",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
