"""Analytic NNGP and NTK of infinitely wide networks.

The layer table and its pure rules (``rules``), the dual activations (``duals``), what every kernel shares
(``base``: parameters, the public methods, the engine choice), the kernels of fixed architectures
(``networks``: ``FullyConnected``, ``Convolutional``), any network written in neural-tangents' stax language
(``architecture``: the spec → layer table compiler behind ``kernels.stax``), and the engines that read the table: the reference rule
chain (``rules.run``), the fused numba loops (``_cpu``, driven by ``_cpu_drivers``) and the CUDA kernels
(``_cuda``); ``_numerics`` (working precision, exact rescaling, range checks) and ``_tiles`` (tiling) serve them.
"""
