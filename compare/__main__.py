"""``python -m compare``: the command line (``compare.cli``).

``gpu-check`` is dispatched before the rest of compare is imported: on a bare GPU machine lazykit's own
dependencies (array-api-compat, ...) arrive only with gpu-check's offline bundle.
"""
import sys

if sys.argv[1:2] == ["gpu-check"]:
    from compare.gpu.check import main as gpu_check_main
    sys.exit(gpu_check_main(sys.argv[2:]))

from compare.cli import main  # noqa: E402  (after the gpu-check dispatch, on purpose)

sys.exit(main())
