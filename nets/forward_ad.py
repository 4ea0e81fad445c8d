"""One forward-mode AD computation at a time per process.

`torch.func.jvp` enters and leaves a dual level that is global to the process, not to the thread: two threads
running jvp at once (runs in threads of one dask worker, ``LocalCluster(processes=False)``) end each other's level
("Trying to create a dual Tensor for forward AD but no level exists"). Every forward-mode computation of `nets`
holds `FORWARD_AD` (re-entrant, so nested jvp/vjp of one computation are fine).
"""
import functools
import threading

FORWARD_AD = threading.RLock()


def serialized(function):
    """`function` run while holding `FORWARD_AD`."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with FORWARD_AD:
            return function(*args, **kwargs)
    return wrapper
