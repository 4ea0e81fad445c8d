"""Read-only, non-contiguous and memory-mapped inputs reach the compiled loops as the one array type they are
compiled for (issue #24: a read-only array recompiled ``image_pairs`` for 55 s), and give the same kernel."""
import numpy as np
import pytest

from kernels import Convolutional, FullyConnected
from kernels.analytic import _cpu


def _is_loop_type(a):
    """The type every loop is compiled for: a plain C-contiguous, aligned, writeable float64 ndarray."""
    return (type(a) is np.ndarray and a.dtype == np.float64 and a.flags.c_contiguous and a.flags.aligned
            and a.flags.writeable)


@pytest.fixture
def recorded(monkeypatch):
    """Replace the compiled loops by recorders of the array arguments they are called with (no compilation)."""
    calls = []

    def recorder(name):
        def record(*args):
            calls.append((name, [a for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]))
            raise _Stop
        return record

    monkeypatch.setattr(_cpu, "image_pairs", recorder("image_pairs"))
    monkeypatch.setattr(_cpu, "fc_tile", recorder("fc_tile"))
    return calls


class _Stop(Exception):
    pass


def _layouts(x, tmp_path):
    read_only = x.copy()
    read_only.flags.writeable = False
    path = tmp_path / "x.npy"
    np.save(path, x)
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    wide[..., ::2] = x
    return {"read-only": read_only, "memory-mapped": np.load(path, mmap_mode="r"), "strided": wide[..., ::2],
            "fortran": np.asfortranarray(x), "broadcast": np.broadcast_to(x[:1], x.shape)}


@pytest.mark.parametrize("layout", ["read-only", "memory-mapped", "strided", "fortran", "broadcast"])
def test_conv_loop_gets_its_compiled_type(layout, recorded, rng, tmp_path):
    x = _layouts(rng.standard_normal((2, 1, 3, 3)), tmp_path)[layout]
    with pytest.raises(_Stop):
        Convolutional(depth=1, cpu_impl="fused", n_jobs=1).ntk(x)
    (name, arrays), = recorded
    assert name == "image_pairs" and arrays and all(_is_loop_type(a) for a in arrays)


@pytest.mark.parametrize("layout", ["read-only", "memory-mapped", "strided", "fortran"])
def test_fc_loop_gets_its_compiled_type(layout, recorded, rng, tmp_path):
    x = _layouts(rng.standard_normal((3, 4)), tmp_path)[layout]
    with pytest.raises(_Stop):
        FullyConnected(depth=2, cpu_impl="fused", n_jobs=1).ntk(x)
    assert recorded and all(_is_loop_type(a) for _, arrays in recorded for a in arrays)


def test_layouts_give_the_same_kernel(rng, tmp_path):
    x = rng.standard_normal((3, 1, 4, 4))
    want = Convolutional(depth=1, cpu_impl="fused").ntk(x)
    for layout, view in _layouts(x, tmp_path).items():
        expected = want if layout != "broadcast" else Convolutional(depth=1, cpu_impl="fused").ntk(
            np.broadcast_to(x[:1], x.shape).copy())
        np.testing.assert_array_equal(Convolutional(depth=1, cpu_impl="fused").ntk(view), expected, err_msg=layout)
