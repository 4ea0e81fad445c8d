"""The analytic benchmark's peer plumbing: a missing neural-tangents venv is reported, a present one agrees."""
import os

import numpy as np
import pytest

from compare.bench import analytic, peers


def test_missing_peer_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("LAZYKIT_NT_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(RuntimeError, match=peers.NOT_INSTALLED):
        peers.nt_kernels(dict(kind="fc", depth=1), np.ones((2, 3)))
    seconds, note = analytic._peer(analytic.FC_CONFIG, np.ones((2, 3)), "float64", 1, 0, skip=False)
    assert note == peers.NOT_INSTALLED and seconds != seconds   # NaN: shown as "-" in the table


def test_bench_rejects_bad_options():
    with pytest.raises(SystemExit):
        analytic.main(["--repeats", "0"])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(peers.nt_python()), reason="neural-tangents venv not installed")
def test_peer_worker_agrees_with_lazykit():
    # End to end through the subprocess: stax's kernel of a cross pair equals ours to float64 rounding.
    from kernels import FullyConnected
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    config = dict(kind="fc", depth=2, activation="erf", w_std=1.2, b_std=0.3, parameterization="ntk")
    nngp, ntk = peers.nt_kernels(config, x1, x2)
    ours = FullyConnected(2, "erf", 1.2, 0.3).kernels(x1, x2)
    np.testing.assert_allclose(nngp, ours[0], rtol=1e-12)
    np.testing.assert_allclose(ntk, ours[1], rtol=1e-12)


@pytest.mark.parametrize("device, want", [("cpu", ["cpu", "fused", "stax"]), ("cuda", ["gpu", "gpu-stax"]),
                                          ("auto", ["cpu", "gpu", "fused", "stax", "gpu-stax"])])
def test_device_selects_the_cases(monkeypatch, device, want):
    # the rows themselves are replaced: this checks the routing, not the timings
    called = []
    monkeypatch.setattr(analytic, "_cpu_rows", lambda args, rng: called.append("cpu") or [])
    monkeypatch.setattr(analytic, "_gpu_rows", lambda args, rng: called.append("gpu") or [])
    monkeypatch.setattr(analytic, "_fused_table", lambda args, rng: called.append("fused") or [])   # CPU tables
    monkeypatch.setattr(analytic, "_stax_table", lambda args, rng: called.append("stax") or [])
    monkeypatch.setattr(analytic, "_gpu_stax_table", lambda args, rng: called.append("gpu-stax") or [])
    analytic.run(type("Args", (), dict(device=device, repeats=5, argv=["--device", device]))())
    assert called == want


def test_device_cuda_without_a_gpu_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("kernels.backend.gpu_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        analytic.main(["--device", "cuda"])
    assert exit_.value.code == 2 and "--device cuda: CuPy is not installed or sees no GPU" in capsys.readouterr().err
