"""Solvers on kernel matrices: ridge regression and its eigen path, Nyström + PCG (``ridge``); kernel gradient
flows of any loss (``flow``); solves of Gram matrices kept on disk (``stored``); their building blocks (``krylov``:
conjugate gradients; ``lapack_blocks``: blocked Cholesky and triangular solves beyond LAPACK's limits)."""
