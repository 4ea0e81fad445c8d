"""seeded_torch: the same seed gives the same draws even when threads of one process draw at once (a dask
worker with several threads), and the global generator's state is restored afterwards."""
import threading

import torch

from compare.seeding import seeded_torch


def _draw(seed):
    with seeded_torch(seed):
        return torch.randn(2000)


def test_threads_drawing_at_once_get_their_seeds_draws():
    expected = {seed: _draw(seed) for seed in range(4)}
    got, barrier = {}, threading.Barrier(4)

    def worker(seed):
        barrier.wait()              # all four start together
        for _ in range(20):
            got.setdefault(seed, []).append(_draw(seed))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, draws in got.items():
        assert all(torch.equal(d, expected[seed]) for d in draws)


def test_global_generator_is_restored():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    _draw(7)
    assert torch.equal(torch.random.get_rng_state(), before)
