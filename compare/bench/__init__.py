"""Benchmarks against peers measured in the same run: ``python -m compare bench NAME``.

Each benchmark module exposes ``main(argv: list[str]) -> int`` and prints a Markdown table.
"""
BENCHMARKS = {
    "analytic": "compare.bench.analytic",      # analytic NNGP/NTK vs neural-tangents stax
    "empirical": "compare.bench.empirical",    # empirical NTK vs torch.func Jacobian contraction
    "solvers": "compare.bench.solvers",        # KRR / ridge path / random features vs scikit-learn
    "gram": "compare.bench.gram",              # Fashion-MNIST NTK regression end to end vs KernelRidge
}
# Not a speed benchmark (so `gpu-check` does not run it): reruns every figure that README.md and --help quote
FIGURE_SCRIPTS = {
    "readme": "compare.bench.readme",
}
