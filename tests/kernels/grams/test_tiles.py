"""kernels.grams.tiles and kernels.grams.store: tiles equal the kernel's own blocks; stores resume, refuse, mirror;
a dask cluster gives the same bits; a killed driver or worker loses no finished tile."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")

from kernels import RBF, EmpiricalNTK, FullyConnected, GramStore, gram  # noqa: E402
from kernels.grams.tiles import cached_gram  # noqa: E402
from kernels.grams.store import StoreMismatchError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
THREADS = os.cpu_count() or 1     # gram(client=None) computes one tile per core at a time


@pytest.fixture
def x(rng):
    return rng.standard_normal((37, 6))


class CountingKernel:
    """A linear kernel that counts its calls on tiles (rows ≥ 2; the 1 × 1 dtype probe is not counted)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b=None):
        b = a if b is None else b
        if a.shape[0] > 1:
            self.calls += 1
        return a @ b.T


# ----------------------------------------------------------------------------------------------- in memory
def test_tiles_equal_the_kernels_own_blocks(x, rng):
    fc = FullyConnected(depth=2)
    x2 = rng.standard_normal((23, 6))
    # tile 10 does not divide 37: edge tiles are ragged; each entry is the same arithmetic as the whole call
    np.testing.assert_allclose(gram(fc, x, tile=10, progress=False), fc.ntk(x), rtol=1e-14, atol=0)
    nngp, ntk = gram(fc, x, x2, tile=10, progress=False, get=("nngp", "ntk"))
    ref_nngp, ref_ntk = fc.kernels(x, x2)
    np.testing.assert_allclose(nngp, ref_nngp, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ntk, ref_ntk, rtol=1e-14, atol=0)
    np.testing.assert_allclose(gram(fc.nngp, x, tile=10, progress=False), fc.nngp(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(gram(RBF(gamma=0.3), x, x2, tile=8, progress=False), RBF(gamma=0.3)(x, x2),
                               rtol=1e-14, atol=0)
    K = gram(fc, x, tile=10, progress=False)
    assert np.array_equal(K, K.T)   # diagonal tiles symmetrised, off-diagonal ones mirrored


def test_symmetric_gram_computes_only_the_upper_tiles(x):
    counting = CountingKernel()
    gram(counting, x, tile=10, progress=False)
    assert counting.calls == 4 * 5 // 2   # 37 rows = 4 tile rows: 10 tiles on or above the diagonal
    counting.calls = 0
    gram(counting, x, x[:12], tile=10, progress=False)
    assert counting.calls == 4 * 2        # a cross Gram matrix needs every tile


def test_empirical_ntk_wrapper_matches_empirical_ntk():
    torch = pytest.importorskip("torch")
    from kernels import empirical_ntk
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    x = torch.randn(13, 5, dtype=torch.float64)
    reference = np.asarray(empirical_ntk(model, x))
    np.testing.assert_allclose(gram(EmpiricalNTK(model), x.numpy(), tile=5, progress=False), reference,
                               rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- stores
def test_store_holds_the_same_matrix_and_plain_zarr_and_dask_read_it(x, tmp_path):
    fc = FullyConnected(depth=2)
    memory = gram(fc, x, tile=10, progress=False)
    store = gram(fc, x, tile=10, store=tmp_path / "k.zarr", progress=False)
    assert isinstance(store, GramStore)
    assert store.shape == (37, 37) and store.dtype == np.float64 and store.symmetric
    assert (store.tiles_done, store.tiles_total) == (10, 10)
    assert np.array_equal(store.to_numpy(), memory)
    assert np.array_equal(store.as_dask().compute(), memory)
    # without lazykit: the upper tiles as computed, the lower ones absent (NaN), the layout in the attributes
    raw = zarr.open_group(str(tmp_path / "k.zarr"), mode="r")["ntk"]
    assert raw.attrs["stored_triangle"] == "upper" and raw.chunks == (10, 10)
    assert np.array_equal(raw[:10, :], memory[:10, :]) and np.isnan(raw[10:, :10]).all()
    import dask.array as da
    assert np.array_equal(da.triu(da.from_zarr(str(tmp_path / "k.zarr"), component="ntk")).compute(),
                          np.triu(memory))
    reopened = GramStore(tmp_path / "k.zarr")
    assert reopened.name == "ntk" and np.array_equal(reopened.to_numpy(), memory)


def test_a_rerun_computes_only_the_missing_tiles(x, tmp_path):
    counting = CountingKernel()
    store = gram(counting, x, tile=10, store=tmp_path / "k.zarr", progress=False)
    full = store.to_numpy()
    assert counting.calls == 10
    gram(counting, x, tile=10, store=tmp_path / "k.zarr", progress=False)
    assert counting.calls == 10           # complete: nothing recomputed
    for index in [(0, 2), (3, 3)]:
        (tmp_path / "k.zarr" / "kernel" / "c" / str(index[0]) / str(index[1])).unlink()
    assert store.tiles_done == 8 and sorted(store.missing_tiles()) == [(0, 2), (3, 3)]
    with pytest.raises(ValueError, match="2 of 10 tiles are not computed yet"):
        store.to_numpy()
    store = gram(counting, x, tile=10, store=tmp_path / "k.zarr", progress=False)
    assert counting.calls == 12 and np.array_equal(store.to_numpy(), full)


def test_a_store_of_another_kernel_or_data_is_refused_with_what_differs(x, tmp_path):
    path = tmp_path / "k.zarr"
    gram(FullyConnected(depth=2), x, tile=10, store=path, progress=False)
    with pytest.raises(StoreMismatchError, match=r"kernel\.params\.depth: 2 in the store, 3 now"):
        gram(FullyConnected(depth=3), x, tile=10, store=path, progress=False)
    changed = x.copy()
    changed[0, 0] += 1e-9
    with pytest.raises(StoreMismatchError, match=r"x1\.sha256"):
        gram(FullyConnected(depth=2), changed, tile=10, store=path, progress=False)
    with pytest.raises(StoreMismatchError, match="tile: 10 in the store, 12 now"):
        gram(FullyConnected(depth=2), x, tile=12, store=path, progress=False)
    with pytest.raises(StoreMismatchError, match="get"):
        gram(FullyConnected(depth=2), x, tile=10, store=path, progress=False, get="nngp")
    # where or how a kernel runs does not change K: a resumed run may use other threads or block sizes
    gram(FullyConnected(depth=2, n_jobs=1, block_size=7), x, tile=10, store=path, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatchError, match="not a Gram store"):
        gram(RBF(), x, store=tmp_path / "other", progress=False)


def test_a_store_is_refused_after_the_torch_model_changed(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    x = np.random.default_rng(1).standard_normal((6, 3))
    gram(EmpiricalNTK(model), x, store=tmp_path / "e.zarr", progress=False)
    with torch.no_grad():
        model[0].weight[0, 0] += 0.1
    with pytest.raises(StoreMismatchError, match="state_sha256"):
        gram(EmpiricalNTK(model), x, store=tmp_path / "e.zarr", progress=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"tile": 0}, ValueError, "`tile` must be an integer ≥ 1, got 0"),
    ({"tile": 2.5}, TypeError, "`tile` must be an integer ≥ 1, got 2.5"),
    ({"store": 3}, TypeError, "store must be None"),
    ({"client": object()}, TypeError, "client must be None"),
    ({"progress": "yes"}, TypeError, "progress must be True or False"),
    ({"get": "gram"}, ValueError, "get must be 'ntk', 'nngp'"),
    ({"get": ("ntk", "ntk")}, ValueError, "get must be"),
])
def test_bad_arguments_are_named(x, kwargs, error, message):
    with pytest.raises(error, match=message):
        gram(FullyConnected(depth=1), x, **kwargs)


def test_bad_kernels_and_inputs_are_named(x):
    with pytest.raises(TypeError, match=r"get='nngp' needs the kernel to have \.nngp\(\)"):
        gram(RBF(), x, get="nngp")
    with pytest.raises(TypeError, match="kernel must have .ntk/.nngp methods or be a callable"):
        gram(42, x)
    with pytest.raises(ValueError, match="x2 must have the same feature shape"):
        gram(RBF(), x, x[:, :3])
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="x1 contains NaN"):
        gram(RBF(), bad)


def test_store_methods_name_their_bad_arguments(x, tmp_path):
    store = gram(RBF(), x, tile=16, store=tmp_path / "k.zarr", progress=False)     # 3 × 3 tiles, upper: 6
    with pytest.raises(TypeError, match="path must be a store directory"):
        GramStore(3)
    with pytest.raises(FileNotFoundError, match="path '.*absent.zarr' is not a Gram store"):
        GramStore(tmp_path / "absent.zarr")
    with pytest.raises(ValueError, match="is not a Gram store"):       # the same error is a ValueError, too
        GramStore(tmp_path / "absent.zarr")
    with pytest.raises(ValueError, match=r"index \(1, 0\) is not a tile of this store.*J >= I"):
        store.read_tile((1, 0))
    with pytest.raises(TypeError, match="index must be a tile index"):
        store.has_tile("00")
    with pytest.raises(ValueError, match=r"block must have the shape \(16, 5\)"):
        store.write_tile((0, 2), np.zeros((16, 16)))
    with pytest.raises(ValueError, match="block contains NaN"):
        store.write_tile((0, 0), np.full((16, 16), np.nan))
    with pytest.raises(TypeError, match="dtype must be None"):
        store.to_numpy(dtype="int8")
    with pytest.raises(ValueError, match=r"out must have shape \(37, 37\)"):
        store.to_numpy(out=np.empty((3, 3)))
    assert store.bounds((0, 2)) == (0, 16, 32, 37)
    np.testing.assert_array_equal(store.to_numpy(out=np.empty((37, 37))), store.to_numpy())


# ----------------------------------------------------------------------------------------------- distributed
def test_a_two_worker_cluster_gives_the_same_bits(tmp_path):
    # float32 tiles of 512 (two 256-row kernel blocks each): OpenBLAS's float32 GEMM rounds differently with
    # more threads, so this fails unless every tile, here and on the workers, runs with one BLAS thread
    x = np.random.default_rng(3).standard_normal((1100, 20)).astype(np.float32)
    fc = FullyConnected(depth=3)
    local = gram(fc, x, tile=512, progress=False, get=("nngp", "ntk"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = gram(fc, x, tile=512, client=client, progress=False, get=("nngp", "ntk"))
        stored = gram(fc, x, tile=512, client=client, store=tmp_path / "k.zarr", progress=False,
                      get=("nngp", "ntk"))
    for a, b, s in zip(local, remote, stored):
        assert np.array_equal(a, b) and np.array_equal(a, s.to_numpy())


DRIVER = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from kernels import gram

    class LoggingKernel:
        '''A linear kernel that logs each tile it finished computing (its first row and column indices).'''
        def __init__(self, log):
            self.log = log
        def __call__(self, a, b=None):
            b = a if b is None else b
            time.sleep(0.03)
            out = a @ b.T
            if a.shape[0] > 1:
                with open(self.log, "a") as f:
                    f.write(f"{{int(a[0, 0])}} {{int(b[0, 0])}}\\n")
            return out

    n, tile = 48, 4
    x = np.random.default_rng(0).integers(-3, 4, (n, 3)).astype(float)   # small integers: exact products
    x[:, 0] = np.arange(n)
    gram(LoggingKernel(sys.argv[1]), x, tile=tile, store=sys.argv[2], progress=False)
    print("done", flush=True)
""")


def _tiles_logged(log: Path):
    if not log.exists():
        return []
    return [tuple(int(v) // 4 for v in line.split()) for line in log.read_text().split("\n") if line]


def _wait_for_lines(log: Path, count: int, process):
    while process.poll() is None and len(_tiles_logged(log)) < count:
        time.sleep(0.005)


def _kill_and_rerun(tmp_path, kills: int, seed: int):
    """SIGKILL the computing process ``kills`` times at random moments, then let a last run finish."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT)))
    store_path = tmp_path / "k.zarr"
    total = 12 * 13 // 2                           # 48 rows in tiles of 4: 78 tiles on or above the diagonal
    generator = random.Random(seed)
    done_before, computed = set(), 0
    for run in range(kills + 1):
        log = tmp_path / f"run{run}.log"
        process = subprocess.Popen([sys.executable, str(script), str(log), str(store_path)], cwd=tmp_path)
        killed = run < kills
        if killed:   # let a random number of tiles finish, then kill at a random moment within the next tile
            _wait_for_lines(log, generator.randrange(0, max(1, total - len(done_before))), process)
            time.sleep(generator.uniform(0.0, 0.03))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
        logged = _tiles_logged(log)
        store = GramStore(store_path) if (store_path / "zarr.json").exists() else None
        done_after = set() if store is None else set(store.grid) - set(store.missing_tiles())
        assert not set(logged) & done_before, f"run {run} recomputed finished tiles"
        assert done_before <= done_after, f"run {run} lost finished tiles"
        assert len(logged) == len(set(logged))
        # every tile this run stored was computed by it; only the tiles in flight (one per thread of the
        # driver's pool, one per core) were computed and not stored
        assert done_after - done_before <= set(logged)
        assert len(set(logged) - done_after) <= (THREADS if killed else 0)
        computed += len(logged)
        done_before = done_after
    assert len(done_before) == total and computed <= total + kills * THREADS
    x = np.random.default_rng(0).integers(-3, 4, (48, 3)).astype(float)
    x[:, 0] = np.arange(48)
    assert np.array_equal(GramStore(store_path).to_numpy(), x @ x.T)   # integer arithmetic: exact
    assert not list(store_path.rglob("*.partial"))    # no temporary file of a killed write is left behind


def test_killing_the_driver_loses_no_finished_tile_and_recomputes_none(tmp_path):
    _kill_and_rerun(tmp_path, kills=1, seed=15)   # one kill; the slow variant below kills eight times


@pytest.mark.slow
def test_killing_the_driver_many_times(tmp_path):
    _kill_and_rerun(tmp_path, kills=8, seed=7)


class KillOnce:
    """A linear kernel whose first call on tile row 1 in a worker kills that worker (SIGKILL, mid-tile).

    Every finished tile is logged as "pid device first-row first-column", the device being the worker's
    CUDA_VISIBLE_DEVICES (what a dask-cuda worker's GPU kernel would compute on).
    """

    def __init__(self, flag, log, driver_pid):
        self.flag, self.log, self.driver_pid = str(flag), str(log), driver_pid

    def __call__(self, a, b=None):
        b = a if b is None else b
        if os.getpid() != self.driver_pid and int(a[0, 0]) == 10 and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if a.shape[0] > 1:   # not the driver's 1 × 1 dtype probe
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES')} {int(a[0, 0])} {int(b[0, 0])}\n")
        return a @ b.T


def cuda_stand_in_cluster(n_gpus: int):
    """What dask-cuda's ``LocalCUDACluster`` builds, on the CPU: one single-threaded worker process per GPU,
    each seeing only its own card through CUDA_VISIBLE_DEVICES (restarted with it when it dies)."""
    workers = {f"gpu-{i}": {"cls": distributed.Nanny, "options": {
        "nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}, "silence_logs": 50}} for i in range(n_gpus)}
    return distributed.SpecCluster(workers=workers, silence_logs=50,
                                   scheduler={"cls": distributed.Scheduler, "options": {"dashboard": False}})


def test_a_worker_killed_mid_tile_is_retried_on_a_one_gpu_per_worker_cluster(tmp_path):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers need not import this test module
    x = np.random.default_rng(2).integers(-3, 4, (30, 3)).astype(float)   # small integers: exact products
    x[:, 0] = np.arange(30)
    flag, log = tmp_path / "killed", tmp_path / "tiles.log"
    with cuda_stand_in_cluster(2) as cluster, distributed.Client(cluster) as client:
        store = gram(KillOnce(flag, log, os.getpid()), x, tile=10, client=client, store=tmp_path / "k.zarr",
                     progress=False)
    assert flag.exists()                              # a worker did die in the middle of a tile ...
    assert store.tiles_done == store.tiles_total == 6    # ... and the scheduler ran that tile again
    assert np.array_equal(store.to_numpy(), x @ x.T)
    finished = [line.split() for line in log.read_text().splitlines()]
    # every tile finished somewhere (dask also reruns finished tasks whose small results died with the worker)
    assert {(int(i) // 10, int(j) // 10) for _, _, i, j in finished} == set(store.grid)
    devices = {}
    for pid, device, _, _ in finished:
        devices.setdefault(pid, set()).add(device)
    assert all(len(seen) == 1 for seen in devices.values())   # each worker process stays on its one "GPU"
    assert set().union(*devices.values()) <= {"0", "1"} and len(devices) >= 2   # in more than one process


# ----------------------------------------------------------------------------------------------- cached_gram
def test_gram_in_names_stores_by_content_and_finds_them_again(x, tmp_path):
    counting = CountingKernel()
    first = cached_gram(tmp_path, counting, x, tile=10)
    assert counting.calls == 10
    again = cached_gram(tmp_path, counting, x, tile=10)
    assert counting.calls == 10 and again.path == first.path             # found, nothing recomputed
    other = cached_gram(tmp_path, FullyConnected(depth=2), x, tile=10)
    assert other.path != first.path and len(list(tmp_path.iterdir())) == 2
    assert np.array_equal(other.to_numpy(), gram(FullyConnected(depth=2), x, tile=10, progress=False))


def _gram_in_task(directory, x):
    """A sweep run: what an experiment's run function does on a dask worker."""
    store = cached_gram(directory, FullyConnected(depth=2), x, tile=10)
    return store.to_numpy()


def test_gram_in_inside_a_dask_task_spreads_the_tiles_over_the_cluster(x, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            K = client.submit(_gram_in_task, tmp_path, x).result()
    tile_tasks = [t["key"] for t in stream.data if str(t["key"]).startswith("gram-tile-")]
    assert len(tile_tasks) == 10                      # the 10 upper tiles of 37 rows ran as tasks of their own
    assert np.array_equal(K, gram(FullyConnected(depth=2), x, tile=10, progress=False))


def test_only_the_leftovers_of_dead_writers_are_removed(tmp_path):
    from kernels.grams.atomic_files import host_name, remove_partial_files
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = host_name()
    (tmp_path / f".1.{host}.{int(dead.stdout)}.aa.partial").write_bytes(b"torn")    # its writer has exited
    (tmp_path / f".2.{host}.{os.getpid()}.bb.partial").write_bytes(b"busy")         # this process: alive
    (tmp_path / ".3.other-host.123.cc.partial").write_bytes(b"remote")                # another machine, fresh
    assert remove_partial_files(tmp_path) == 1
    assert sorted(p.name.split(".")[1] for p in tmp_path.iterdir()) == ["2", "3"]
    assert remove_partial_files(tmp_path, stale_after=-1) == 1                        # now old enough
