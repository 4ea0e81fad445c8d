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



def test_network_floor_is_the_counted_operations_at_the_rates():
    from compare.bench import cpu_floor
    from kernels import cpu_operation_counts, stax
    kernel = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    rate = {"add/mul": 1e-9, "sqrt": 2e-9, "atan2": 5e-9}
    counts = cpu_operation_counts(kernel, (3, 4, 4))
    want = 10 * (counts["add/mul"] * 1e-9 + counts["sqrt"] * 2e-9 + counts["atan2"] * 5e-9) / 2
    assert cpu_floor.network_seconds(kernel, (3, 4, 4), 10, 2, rate) == pytest.approx(want, rel=1e-12)
