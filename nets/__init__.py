"""lazykit nets: PyTorch networks, the α-scaled lazy model, its exact linearization, trainers, diagnostics."""
from _lazykit.exports import lazy_exports

_EXPORTS = {
    # models.py
    "TwoLayer": "models", "MLP": "models", "CNN": "models", "VGG": "models", "ResNet": "models",
    # lazy.py
    "Lazy": "lazy", "Linearized": "lazy",
    # train.py
    "train": "train", "History": "train", "DivergenceError": "train", "random_crop_flip": "train",
    # estimators.py
    "LazyNetRegressor": "estimators", "LazyNetClassifier": "estimators",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The submodule nets.train shares its name with the function train: the first import of the submodule makes the
# package attribute `train` the module. Importing the function here once binds `nets.train` to the function for
# good (a later `import nets.train` finds the submodule in sys.modules and does not rebind the attribute).
from nets.train import train  # noqa: E402
