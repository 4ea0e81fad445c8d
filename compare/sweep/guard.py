"""Process safety of sweeps: one sweep per --out folder (a flock), loky workers that end with their parent,
and a pool shutdown on Ctrl-C that prints nothing."""
from __future__ import annotations

import os
import time
from pathlib import Path


class SweepLockedError(ValueError):
    """Another sweep is writing into the same --out folder."""


class FolderLock:
    """An exclusive ``fcntl.flock`` on the --out folder itself, held for a whole sweep: a second sweep into the
    same folder is refused with ``SweepLockedError`` instead of running every run again. No file is created,
    and the operating system releases the lock when the holder exits, even after SIGKILL, so a stale lock
    never blocks a resume."""

    def __init__(self, out: Path):
        self.path = Path(out)
        self.fd = None

    def __enter__(self):
        import fcntl
        self.fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise SweepLockedError(f"{self.path} is in use by another sweep (it holds a lock on the folder); "
                                   "wait for it to finish (then rerun to add any missing runs) or pass another "
                                   "--out") from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)   # closing releases the flock


def watch_parent(parent: int, interval: float = 0.5) -> None:
    """Worker initializer: a daemon thread that ends this worker once its parent is gone (after a SIGKILL the
    workers are re-parented, and would otherwise run on with nobody to collect their results)."""
    import threading

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="lazykit-parent-watch", daemon=True).start()


def quiet_shutdown(executor):
    """Kill the pool's workers now; loky's manager thread may report the futures it can no longer complete,
    which nobody will read (we are stopping), so its thread exceptions are not printed."""
    import threading
    previous = threading.excepthook

    def hook(args):
        if args.thread is None or "ExecutorManager" not in args.thread.name:
            previous(args)

    threading.excepthook = hook
    executor.shutdown(wait=True, kill_workers=True)
