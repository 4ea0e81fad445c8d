"""Files that are either absent or complete: each written to a temporary file beside its target, fsynced, then
renamed into place (``os.replace`` is atomic on POSIX file systems); and the cleanup of the temporary files of
writers that were killed mid-write. No zarr here: ``kernels.grams.atomic_local_store`` routes zarr's writes
through ``write_atomically``."""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    The temporary name carries the writer's host and process id, so ``remove_partial_files`` can tell the
    leftovers of a killed writer from the files of one still writing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{host_name()}.{os.getpid()}.{uuid.uuid4().hex}.partial")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_partial_files(path, stale_after: float = 3600.0) -> int:
    """Delete temporary files left by writers that were killed mid-write; returns how many.

    A file of this host is removed when its process is gone; one of another host when it is older than
    ``stale_after`` seconds (its writer cannot be asked). Files of live writers stay.
    """
    removed, host = 0, host_name()
    for leftover in Path(path).rglob(".*.partial"):
        parts = leftover.name.rsplit(".", 4)       # .NAME . HOST . PID . UUID . partial
        try:
            writer_host, pid = parts[1], int(parts[2])
        except (IndexError, ValueError):
            writer_host, pid = None, None
        if writer_host == host:
            stale = not process_alive(pid)
        else:
            try:
                stale = time.time() - leftover.stat().st_mtime > stale_after
            except FileNotFoundError:
                continue
        if stale:
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def host_name() -> str:
    """This machine's name, without dots (it is one dot-separated field of a temporary file's name)."""
    return socket.gethostname().replace(".", "-") or "localhost"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
