"""``python -m compare gpu-check``: the GPU tests, benchmarks and experiment run on a GPU machine (``check``), and
the offline bundle that brings what that machine lacks (``bundle``)."""
