"""lazykit kernels: analytic NNGP/NTK, empirical NTK, classic kernels, random features, solvers, estimators.

Public names are imported lazily (``_lazykit.exports``), so ``import kernels`` stays cheap: torch loads only for
the empirical NTK, scikit-learn only for the estimators and random features. Other packages (nets, compare)
import what they use from here, not from the submodules.
"""
from _lazykit.exports import lazy_exports

_EXPORTS = {
    # analytic.py
    "FullyConnected": "analytic.networks", "Convolutional": "analytic.networks",
    # empirical/
    "empirical_ntk": "empirical",
    # classic.py
    "RBF": "classic", "Laplace": "classic", "Polynomial": "classic",
    # features.py
    "RandomFourierFeatures": "features", "ArcCosineFeatures": "features", "NTKFeatures": "features",
    # solvers.py
    "krr_solve": "solve.ridge", "EigenPath": "solve.ridge", "nystrom_krr": "solve.ridge", "GramWarning": "solve.ridge",
    # estimators.py
    "NTKRegressor": "estimators.kernel_models", "NTKClassifier": "estimators.kernel_models", "KernelRegressor": "estimators.kernel_models",
    "KernelClassifier": "estimators.kernel_models",
    # feature_estimators.py
    "RandomFeaturesRegressor": "estimators.random_features", "RandomFeaturesClassifier": "estimators.random_features",
    # gram_tiles.py, gram_store.py, gram_solvers.py
    "gram": "grams.tiles", "gram_in": "grams.tiles", "EmpiricalNTK": "empirical.kernel", "GramStore": "grams.store",
    "StoreMismatchError": "grams.store", "StoreNotFoundError": "grams.store",
    "solve_stored": "solve.stored", "available_memory": "solve.stored",
    # backend.py
    "resolve_device": "backend", "gpu_available": "backend", "to_numpy": "backend", "to_device": "backend",
    "device_of": "backend",
    # loss_flow.py
    "kernel_gradient_flow": "solve.flow", "loss_derivatives": "solve.flow",
    # validation.py
    "check_scalar": "validation", "check_choice": "validation", "check_array": "validation",
    "check_bool": "validation", "check_random_state": "validation", "check_writable": "validation", "UnwritablePathError": "validation",
    "ArgumentTypeError": "validation", "KernelOverflowError": "validation",
    # estimators/base.py: what nets' estimators share with the kernel ones
    "naming_inputs": "estimators.base", "n_samples": "estimators.base",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
