"""The empirical-NTK benchmark's pieces: its baseline computes the same kernel, its FLOP count is the sum of
the listed matmuls, and --device cuda without a GPU is an error naming the option."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compare.bench import empirical as bench  # noqa: E402
from kernels.empirical import empirical_ntk  # noqa: E402


def test_tutorial_baseline_equals_empirical_ntk():
    """Both are Σ_w ∂f/∂w·∂f/∂w in float64 over the same parameters: equal to rounding (1e-12 relative)."""
    net = bench.mlp_model(5, 16, dtype=torch.float64)
    x1, x2 = torch.randn(4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    baseline = bench.tutorial_ntk(net, x1, x2).detach().numpy()
    assert baseline.shape == (4, 3, 1, 1)
    ours = empirical_ntk(net, x1, x2, output="full", method="structured")
    np.testing.assert_allclose(ours, baseline, rtol=1e-12)


def test_floor_flops_are_forward_backward_and_grams():
    """2·m·k·n per product: forward 2n(dw + w² + w), backward signals 2n(w + w²), Grams 2n²(d + 4w + 1)."""
    n, d, w = 7, 3, 5
    _, flops = bench.mlp_floor(n, d, w, "cpu", torch.float64)
    assert flops == 2 * n * (d * w + w * w + w) + 2 * n * (w + w * w) + 2 * n * n * (d + 4 * w + 1)


def test_cuda_without_gpu_is_an_error(capsys):
    # an exit status of 0 here would let gpu-check pass its empirical step on a machine whose torch sees no GPU
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--device", "cuda"])
    assert exit_.value.code == 2 and "--device cuda: torch sees no CUDA device" in capsys.readouterr().err


def test_quick_sizes_keep_the_jacobians_small():
    """--quick must stay well under 1 GB: the tutorial's and "jacobian"'s per-sample Jacobians hold n·P float32
    per side, P = d·w + w² + w for the MLP (2.3 GB per side at the full size, the old quick run's 4.8 GB)."""
    def jacobian_bytes(n, d, width):
        return n * (d * width + width * width + width) * 4
    assert jacobian_bytes(**bench.MLP) > 2e9
    assert jacobian_bytes(**bench.MLP_QUICK) < 50e6
    net = bench.cnn_model(bench.CNN_QUICK["channels"], bench.CNN["outputs"])
    cnn_params = sum(p.numel() for p in net.parameters())
    assert bench.CNN_QUICK["n"] * bench.CNN["outputs"] * cnn_params * 4 < 10e6


@pytest.mark.slow
def test_quick_run_prints_both_tables(capsys):
    assert bench.main(["--quick", "--skip-peer", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torch threads 1" in out and "MLP 100→256→256→1" in out and "conv3×3(16)" in out
    assert out.count("| ntvp ") == 1 and out.count("| structured ") == 2
