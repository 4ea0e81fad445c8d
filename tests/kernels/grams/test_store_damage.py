"""Gram stores that detect damage (a CRC-32C per tile), refuse unwritable paths before any work, report a full
disk in one line, and a ``gram`` that checks what a plain callable returns (issue #24)."""
import errno
import json

import numpy as np
import pytest

pytest.importorskip("zarr")

from kernels import RBF, FullyConnected, GramStore, cached_gram, gram  # noqa: E402
from kernels.grams import atomic_files  # noqa: E402
from kernels.grams import store as store_module  # noqa: E402
from kernels.grams.store import DamagedTileError, StoreDamageWarning, StoreWriteError  # noqa: E402
from kernels.validation import UnwritablePathError  # noqa: E402


@pytest.fixture
def x(rng):
    return rng.standard_normal((7, 3))


def _stored(x, path, tile=3):
    return gram(RBF(0.5), x, tile=tile, store=path, progress=False)


def _flip_byte(path, at=8):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------------------------- checksums
def test_every_chunk_carries_its_crc32c(x, tmp_path):
    store = _stored(x, tmp_path / "s.zarr")
    meta = json.loads((tmp_path / "s.zarr" / "kernel" / "zarr.json").read_text())
    assert {"name": "crc32c"} in meta["codecs"]            # zarr's own codec: any zarr reader verifies it
    assert store.metadata["format"] == 2 and store.verify() == []
    # 3 × 3 float64 tile + 4 checksum bytes
    assert store._chunk_file((0, 0)).stat().st_size == 9 * 8 + 4


def test_a_flipped_byte_is_detected_on_read_named_and_listed(x, tmp_path):
    store = _stored(x, tmp_path / "s.zarr")
    _flip_byte(store._chunk_file((0, 1)))
    with pytest.raises(DamagedTileError, match=r"tile \(0, 1\) of the Gram store .*checksum mismatch.*c/0/1"):
        store.read_tile((0, 1))
    with pytest.raises(DamagedTileError, match=r"tile \(0, 1\)"):
        store.to_numpy()
    assert [(i, p.name, why) for i, p, why in store.verify()] == [((0, 1), "1", "checksum mismatch (CRC-32C)")]


def test_a_truncated_chunk_is_named_not_a_reshape_error(x, tmp_path):
    store = _stored(x, tmp_path / "s.zarr")
    chunk = store._chunk_file((1, 2))
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(DamagedTileError, match=r"tile \(1, 2\) .*truncated or padded: 20 bytes where 76 belong"):
        store.read_tile((1, 2))


def test_verify_reports_every_damaged_tile(x, tmp_path):
    store = _stored(x, tmp_path / "s.zarr")
    _flip_byte(store._chunk_file((0, 0)))
    _flip_byte(store._chunk_file((2, 2)), at=0)
    chunk = store._chunk_file((1, 1))
    chunk.write_bytes(b"")
    assert [i for i, _, _ in store.verify()] == [(0, 0), (1, 1), (2, 2)]


def test_a_rerun_recomputes_damaged_tiles(x, tmp_path):
    path = tmp_path / "s.zarr"
    want = _stored(x, path).to_numpy()
    store = GramStore(path)
    _flip_byte(store._chunk_file((0, 2)))
    store._chunk_file((1, 1)).write_bytes(b"\0" * 10)
    with pytest.warns(StoreDamageWarning, match=r"recomputing 2 damaged tile\(s\).*\(0, 2\).*\(1, 1\)"):
        again = _stored(x, path)
    assert again.verify() == []
    np.testing.assert_array_equal(again.to_numpy(), want)


def test_a_format_1_store_without_checksums_still_resumes(x, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "FORMAT", 1)
    monkeypatch.setattr(store_module, "_checksum_codec", lambda: None)
    original = store_module.open_store

    def no_codec(path, record, shape, dtype):   # a store as format 1 wrote them: uncompressed, no checksum
        import zarr
        if not (path / "zarr.json").is_file():
            group = zarr.open_group(store=store_module._local_store(path), mode="w-",
                                    attributes={store_module.META_KEY: {"format": 1, **record, "dtype": np.dtype(
                                        dtype).name, "shape": list(shape)}})
            for name in record["get"]:
                group.create_array(name, shape=tuple(shape), chunks=(min(record["tile"], shape[0]),
                                                                     min(record["tile"], shape[1])), dtype=dtype,
                                   fill_value=np.nan, compressors=None, config={"write_empty_chunks": True},
                                   chunk_key_encoding={"name": "default", "separator": "/"})
        return original(path, record, shape, dtype)

    monkeypatch.setattr(store_module, "open_store", no_codec)
    import kernels.grams.tiles as tiles
    monkeypatch.setattr(tiles, "open_store", no_codec)
    old = _stored(x, tmp_path / "old.zarr")
    assert not old.checksummed and old.verify() == []
    monkeypatch.undo()
    resumed = _stored(x, tmp_path / "old.zarr")            # format 2 code resumes it (no mismatch on "format")
    chunk = resumed._chunk_file((0, 0))
    chunk.write_bytes(chunk.read_bytes()[:-8])
    assert [i for i, _, _ in GramStore(tmp_path / "old.zarr").verify()] == [(0, 0)]   # size still checked


# ----------------------------------------------------------------------------------------------- paths
def test_store_on_a_file_or_unwritable_folder_is_refused_before_any_work(x, tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UnwritablePathError, match=r"`store` .* is a file, not a folder"):
        gram(RBF(), x, store=a_file, progress=False)
    with pytest.raises(UnwritablePathError, match=r"`directory` .* is a file"):
        cached_gram(a_file, RBF(), x)
    from kernels import validation
    monkeypatch.setattr(validation, "_probe_write", lambda folder: "Read-only file system")
    calls = []
    with pytest.raises(UnwritablePathError, match=r"`store` .*Read-only file system"):
        gram(lambda a, b: calls.append(1) or a @ b.T, x, store=tmp_path / "new.zarr", progress=False)
    assert calls == [] and not (tmp_path / "new.zarr").exists()


def test_a_gram_store_path_on_a_file_names_the_file():
    from kernels.grams.store import StoreNotFoundError
    import tempfile
    with tempfile.NamedTemporaryFile() as handle:
        with pytest.raises(StoreNotFoundError, match="is a file, not a Gram store"):
            GramStore(handle.name)


@pytest.mark.parametrize("pickled", [False, True])
def test_a_full_disk_mid_run_gives_one_line_and_keeps_the_tiles_written(x, tmp_path, monkeypatch, pickled):
    # pickled: a store sent to a worker and back in this process first (cloudpickle, as dask and loky do). A
    # store class built inside a function was pickled by value, and unpickling it overwrote its methods with
    # copies holding a snapshot of the module's globals: writes then bypassed the writer below.
    path = tmp_path / "s.zarr"
    if pickled:
        cloudpickle = pytest.importorskip("cloudpickle")
        cloudpickle.loads(cloudpickle.dumps(store_module._local_store(tmp_path / "other.zarr")))
    writes = []
    real = atomic_files.write_atomically

    def fill_up(target, data):
        if "/c/" in str(target):
            writes.append(target)
            if len(writes) > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(target, data)

    monkeypatch.setattr(atomic_files, "write_atomically", fill_up)
    with pytest.raises(StoreWriteError) as info:
        gram(RBF(0.5), x, tile=3, store=path, progress=False)
    message = str(info.value)
    assert "No space left on device" in message and str(path) in message and "\n" not in message
    assert isinstance(info.value, ValueError) and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    store = GramStore(path)
    assert 1 <= store.tiles_done <= 2 and store.verify() == []     # what was written is intact
    np.testing.assert_allclose(_stored(x, path).to_numpy(), RBF(0.5)(x), rtol=1e-15)   # and it resumes


# ----------------------------------------------------------------------------------------------- plain callables
def test_a_plain_callable_is_called_with_two_arrays_on_diagonal_tiles(x):
    seen = []

    def k(x1, x2):            # documented as k(x1, x2): never called with None
        seen.append(x2 is None)
        return x1 @ x2.T

    np.testing.assert_allclose(gram(k, x, tile=3, progress=False), x @ x.T, rtol=1e-15)
    assert seen and not any(seen)


def test_kernels_declaring_x2_none_still_get_none():
    # FullyConnected pins its diagonal exactly when given x2=None: diagonal tiles keep that path
    x = np.random.default_rng(0).standard_normal((5, 3))
    fc = FullyConnected(depth=2)
    np.testing.assert_array_equal(gram(fc, x, tile=5, progress=False), fc.ntk(x))


@pytest.mark.parametrize("returns, kind, match", [
    (lambda a, b: (a @ b.T).tolist(), TypeError, r"kernel returned list for the tile x1\[\d:\d\]"),
    (lambda a, b: np.ones((2, 2)), ValueError, r"kernel returned shape \(2, 2\) .*expected \(\d, \d\)"),
    (lambda a, b: a @ b.T + 1j, TypeError, r"kernel returned complex128 values"),
    (lambda a, b: (a @ b.T) > 0, TypeError, r"kernel returned bool values"),
    (lambda a, b: np.full((len(a), len(b)), np.nan), ValueError, r"kernel returned NaN or inf"),
])
@pytest.mark.parametrize("where", ["memory", "store"])
def test_what_a_callable_returns_is_checked_naming_kernel(returns, kind, match, where, x, tmp_path):
    # before: a list or None failed deep in numpy ('NoneType' has no attribute 'T'), NaN and complex blocks
    # were returned in memory although the store refused them
    with pytest.raises(kind, match=match):
        gram(returns, x, tile=3, store=None if where == "memory" else tmp_path / "s.zarr", progress=False)


def test_integer_blocks_are_cast_to_float64(x):
    K = gram(lambda a, b: np.ones((len(a), len(b)), dtype=np.int64), x, tile=3, progress=False)
    assert K.dtype == np.float64 and np.all(K == 1)


@pytest.mark.parametrize("tile", [1, 3, 64])
def test_an_asymmetric_callable_is_refused(tile, x):
    def asymmetric(a, b):
        return a @ b.T + a[:, :1]                           # k(x_i, x_j) − k(x_j, x_i) = x_i0 − x_j0

    with pytest.raises(ValueError, match=r"kernel is not symmetric: k\(x1\[\d\], x1\[\d\]\)"):
        gram(asymmetric, x, tile=tile, progress=False)
    K = gram(asymmetric, x, x, tile=tile, progress=False)  # the full matrix of any function is fine
    np.testing.assert_allclose(K, asymmetric(x, x), rtol=1e-15)
