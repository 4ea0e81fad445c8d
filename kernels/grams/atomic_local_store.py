"""A zarr ``LocalStore`` whose every write (chunks and metadata) goes through
``kernels.grams.atomic_files.write_atomically`` (a temporary file, fsync, then an atomic rename).

A class of its own importable module, not one built inside a function: cloudpickle pickles a class defined in a
function by value, and unpickling such a class in a process that already holds it overwrites its methods with
copies whose globals are a snapshot (a store pickled to a worker and back then wrote through the snapshot).
A module-level class is pickled by reference. Imported only where zarr is used (zarr is optional).
"""
from __future__ import annotations

import asyncio

from zarr.storage import LocalStore

from kernels.grams import atomic_files


class AtomicLocalStore(LocalStore):
    async def set(self, key, value):
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(atomic_files.write_atomically, self.root / key, value.to_bytes())
