"""lazykit nets: PyTorch networks, the α-scaled lazy model, its exact linearization, trainers, diagnostics."""
from _lazykit.exports import lazy_exports

_EXPORTS = {
    # models.py
    "TwoLayer": "models", "MLP": "models", "CNN": "models", "VGG": "models", "ResNet": "models",
    # lazy.py
    "Lazy": "lazy", "Linearized": "lazy",
    # training.py
    "train": "training", "History": "training", "DivergenceError": "training", "random_crop_flip": "training",
    # gates.py
    "FrozenGates": "gates", "unchanged_gates_per_layer": "gates",
    # step_size.py
    "ntk_lambda_max": "step_size", "kernel_step": "step_size", "stability_limit": "step_size",
    "loss_curvature": "step_size", "KernelStep": "step_size", "CURVATURES": "step_size",
    # trained_kernel.py
    "KernelTracker": "trained_kernel", "after_training_kernel_regression": "trained_kernel",
    # diagnostics.py
    "relative_weight_change": "diagnostics", "ntk_drift": "diagnostics",
    "unchanged_activation_fraction": "diagnostics", "parameter_distance": "diagnostics",
    "function_distance": "diagnostics", "scale_criterion": "diagnostics",
    # estimators.py
    "LazyNetRegressor": "estimators", "LazyNetClassifier": "estimators",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
