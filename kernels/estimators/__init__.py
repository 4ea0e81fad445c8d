"""scikit-learn estimators: kernel models (``kernel_models``: NTK/NNGP and any kernel) and random-features models
(``random_features``), on what they share with the lazy-net estimators of ``nets`` (``base``)."""
