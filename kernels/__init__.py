"""lazykit kernels: analytic NNGP/NTK (fixed architectures, neural-tangents' ``stax`` layers, any torch module via
``infinite_width``), empirical and Monte Carlo NTK, classic kernels, random features, solvers, estimators.

Public names are imported lazily (``_lazykit.exports``), so ``import kernels`` stays cheap: torch loads only for
the empirical NTK, scikit-learn only for the estimators and random features. Other packages (nets, compare)
import what they use from here, not from the submodules.
"""
from _lazykit.exports import lazy_exports

_EXPORTS = {
    # analytic.py
    "FullyConnected": "analytic.networks", "Convolutional": "analytic.networks",
    # stax.py (the module itself is public too: `from kernels import stax`)
    "StaxKernel": "stax",
    # from_torch.py: the infinite-width kernel of a torch module
    "infinite_width": "from_torch", "NoAnalyticKernelError": "from_torch",
    # empirical/
    "empirical_ntk": "empirical",
    "monte_carlo_kernel": "empirical.monte_carlo", "MonteCarloKernel": "empirical.monte_carlo",
    "MonteCarloEstimate": "empirical.monte_carlo",
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
    "gram": "grams.tiles", "cached_gram": "grams.tiles", "EmpiricalNTK": "empirical.kernel", "GramStore": "grams.store",
    "StoreMismatchError": "grams.store", "StoreNotFoundError": "grams.store",
    "solve_stored": "solve.stored", "available_memory": "solve.stored",
    # analytic/rates.py: the fused CPU loops' arithmetic rates on this machine and counts (the CPU floor benchmark)
    "cpu_operation_rates": "analytic.rates", "cpu_operation_counts": "analytic.rates",
    # errors and warnings users catch
    "KernelOverflowError": "validation", "ArgumentTypeError": "validation", "ConvergenceWarning": "solve.stored",
    "NystromKRR": "solve.ridge",
    # vocabularies (defined once)
    "DEVICES": "backend", "RESOLVED_DEVICES": "backend", "READOUTS": "analytic.networks", "ACTIVATIONS": "analytic.duals",
    # backend.py
    "resolve_device": "backend", "resolve_devices": "backend", "Devices": "backend", "gpu_available": "backend", "to_numpy": "backend", "to_device": "backend",
    "device_of": "backend",
    # solve/flow.py (and the one vocabulary of losses)
    "kernel_gradient_flow": "solve.flow", "loss_derivatives": "solve.flow", "LOSSES": "solve.flow",
    "MARGIN_LOSSES": "solve.flow",
    # validation.py
    "check_scalar": "validation", "check_choice": "validation", "check_array": "validation",
    "check_bool": "validation", "check_random_state": "validation", "check_writable": "validation", "UnwritablePathError": "validation",
    "ArgumentTypeError": "validation", "KernelOverflowError": "validation",
    # estimators/base.py: what nets' estimators share with the kernel ones
    "naming_inputs": "estimators.base", "n_samples": "estimators.base",
}

_MODULES = ("stax",)

__all__ = sorted(_EXPORTS) + list(_MODULES)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _MODULES)
