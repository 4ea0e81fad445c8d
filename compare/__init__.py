"""lazykit compare: experiments that put nets, linearized nets and kernels side by side (CLI: python -m compare)."""
