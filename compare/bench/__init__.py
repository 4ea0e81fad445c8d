"""Benchmarks against peers measured in the same run: ``python -m compare bench NAME``.

Each benchmark is declared here once, as a ``Benchmark`` record (the way experiments are declared): its module
exposes ``main(argv: list[str]) -> int`` and prints a Markdown table; ``gpu_args`` are the arguments
``python -m compare gpu-check`` runs it with on a GPU (None: a CPU-only benchmark, listed as skipped there).
``bench readme`` is not a speed benchmark: it reruns every figure that README.md, the docs and --help quote.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    summary: str
    gpu_args: tuple | None = ("--device", "cuda")


BENCHMARKS = {b.name: b for b in (
    Benchmark("analytic", "compare.bench.analytic", "analytic NNGP/NTK vs neural-tangents stax",
              ("--device", "cuda", "--quick")),
    # gpu-check gives a benchmark 15% of its 480 s budget (72 s): the --quick sizes, as for analytic
    Benchmark("empirical", "compare.bench.empirical", "empirical NTK vs torch.func Jacobian contraction",
              ("--device", "cuda", "--quick")),
    Benchmark("solvers", "compare.bench.solvers", "KRR / ridge path / random features vs scikit-learn",
              ("--device", "cuda", "--sizes", "2000", "5000", "--features", "1000", "4000")),
    Benchmark("gram", "compare.bench.gram", "Fashion-MNIST NTK regression end to end vs KernelRidge", None),
)}
FIGURE_SCRIPTS = {b.name: b for b in (
    Benchmark("readme", "compare.bench.readme", "reruns every figure README.md, the docs and --help quote", None),
)}
