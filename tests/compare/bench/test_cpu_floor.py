"""The arithmetic floor of the conv kernel: operation counts at measured rates."""
import pytest


def test_cpu_floor_counts_operations_at_measured_rates():
    # floor = pixel-pair layers × (25 add/mul·t_add + 2·t_sqrt + t_atan2) / threads, with positive rates.
    from compare.bench import cpu_floor
    rate = {"add/mul": 1e-9, "sqrt": 2e-9, "atan2": 5e-9}
    assert cpu_floor.floor_seconds(1e6, 2, rate) == pytest.approx(1e6 * (25e-9 + 2 * 2e-9 + 5e-9) / 2, rel=1e-12)
    measured = cpu_floor.rates(repeats=1)
    assert set(measured) == set(cpu_floor.OPS_PER_PIXEL_PAIR)
    assert all(0 < seconds < 1e-6 for seconds in measured.values())


def test_network_operations_count_each_row_at_its_resolution():
    # VGG-like on 3 × 8 × 8: input 2·3 add/mul on 64² pixel pairs; conv 3×3 (stride 1: 2·(2 + 2) + 4 = 12
    # add/mul) and its ReLU (13 add/mul, 2 sqrt, 1 atan2) at 64², 16², 4² pixel pairs; two 2×2 pools
    # (2·4² + 2 = 34 add/mul per output pixel pair: 16², 4²); the GAP readout (2 per pixel pair, 4²)
    from compare.bench import cpu_floor
    from kernels import stax
    conv = lambda: stax.Conv(4, (3, 3), padding="SAME")   # noqa: E731
    net = stax.serial(conv(), stax.Relu(), stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(),
                      stax.AvgPool((2, 2), (2, 2)), conv(), stax.Relu(), stax.GlobalAvgPool(),
                      stax.Dense(1)).network(3, 8, 8)
    counts = cpu_floor.network_operations(net, (3, 8, 8))
    pairs = [64 ** 2, 16 ** 2, 4 ** 2]
    assert counts["add/mul"] == 6 * pairs[0] + 25 * sum(pairs) + 34 * (pairs[1] + pairs[2]) + 2 * pairs[2]
    assert counts["sqrt"] == 2 * sum(pairs) and counts["atan2"] == sum(pairs)
    # matching pixels (Flatten, no pooling): H·W numbers per layer; a strided conv sums its 9 aligned pairs
    flat = stax.serial(stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME"), stax.Relu(), stax.Flatten(),
                       stax.Dense(1)).network(2, 8, 8)
    assert cpu_floor.network_operations(flat, (2, 8, 8))["add/mul"] == 4 * 64 + (2 * 8 + 4 + 13 + 2) * 16
