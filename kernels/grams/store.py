"""Gram matrices on disk: a zarr (>= 3) group with one array per kernel output, one chunk per tile.

Layout of ``path.zarr`` (readable by zarr, dask and xarray without lazykit)::

    path.zarr/zarr.json          group; attributes["lazykit_gram"] = what was computed (below)
    path.zarr/ntk/               one (n1, n2) array per output ("ntk", "nngp", or "kernel" for a callable)
    path.zarr/ntk/c/I/J          the tile of rows I·tile.. and columns J·tile.., uncompressed, followed by
                                 its CRC-32C (zarr's "crc32c" codec: 4 bytes, checked by every zarr reader)

Each tile is written to a temporary file, flushed to disk and renamed into place (``os.replace`` is atomic
on POSIX file systems; ``kernels.grams.atomic_files``), so a chunk file is either absent or complete: a tile is done exactly when its
chunk exists. Absent tiles read as NaN (the fill value). A symmetric store (``gram(kernel, x)`` with x2=None)
holds only the tiles on or above the diagonal; ``to_numpy`` and ``as_dask`` mirror the upper triangle, and a
reader without lazykit can do the same (``attributes["stored_triangle"] == "upper"``).

Both axes are named ("x1", "x2": rows are the points of x1, columns those of x2), so
``xarray.open_zarr(path)`` reads the outputs as one Dataset.

Damage. Every chunk carries its CRC-32C checksum (format 2; stores of format 1 have none and are checked by size
only), verified whenever a tile is read: a flipped or truncated chunk raises ``DamagedTileError`` naming the tile
and its file. ``GramStore.verify()`` lists every damaged tile, and a rerun of the same ``kernels.gram(...,
store=)`` call recomputes them. A write that fails (a full disk, a quota) raises ``StoreWriteError`` naming the
store; tiles already written stay intact.

``attributes["lazykit_gram"]`` records the kernel (class and parameters), which outputs, both inputs' shape,
dtype and SHA-256, the tile size and the dtype; ``open_store`` refuses a store whose record differs from the
call's, naming every difference.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from pathlib import Path

import numpy as np

from kernels import backend

FORMAT = 2              # 2: a CRC-32C per chunk; 1 (no checksums) is still read and resumed
META_KEY = "lazykit_gram"
CHECKSUM_BYTES = 4


class StoreMismatchError(ValueError):
    """The store on disk was computed for a different kernel, data, tile size or dtype."""


class StoreNotFoundError(FileNotFoundError, ValueError):
    """``GramStore(path)`` where no store is: a missing file (``FileNotFoundError``) and a bad ``path`` value."""


class DamagedTileError(ValueError):
    """A computed tile whose chunk file is truncated or fails its checksum; rerun the same ``kernels.gram``
    call to recompute it."""


class StoreWriteError(OSError, ValueError):
    """A tile could not be written (disk full, quota, read-only folder); the tiles already written are intact."""


class StoreDamageWarning(RuntimeWarning):
    """A rerun of ``kernels.gram(..., store=)`` found damaged tiles and is recomputing them."""


def _local_store(path, read_only: bool = False):
    """The zarr store of ``path``: every write atomic (``kernels.grams.atomic_local_store``)."""
    from kernels.grams.atomic_local_store import AtomicLocalStore
    return AtomicLocalStore(path, read_only=read_only)


# ----------------------------------------------------------------------------------------------- tiles
def tile_grid(n1: int, n2: int, tile: int, symmetric: bool) -> list:
    """Tile indices (I, J) of an (n1, n2) matrix cut into tile × tile blocks; only J >= I when symmetric."""
    rows, cols = math.ceil(n1 / tile), math.ceil(n2 / tile)
    return [(i, j) for i in range(rows) for j in range(i if symmetric else 0, cols)]


def tile_bounds(index, tile: int, shape) -> tuple:
    """(i0, i1, j0, j1) of tile (I, J)."""
    i, j = index
    return i * tile, min((i + 1) * tile, shape[0]), j * tile, min((j + 1) * tile, shape[1])


# ----------------------------------------------------------------------------------------------- the store
class GramStore:
    """One kernel output of a Gram matrix stored by ``kernels.gram`` (a zarr array, one chunk per tile).

    ``GramStore(path)`` reopens a store (``name`` picks the output when it holds several, e.g. "nngp").
    Attributes: ``path``, ``name``, ``shape``, ``dtype``, ``tile``, ``symmetric``, ``tiles_total``,
    ``tiles_done`` (finished tiles), ``complete``; ``metadata`` is the record of what was computed.
    """

    def __init__(self, path, name: str | None = None):
        import zarr
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a store directory (str or os.PathLike), got {type(path).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be None or the name of a stored output such as 'ntk', got {name!r}")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreNotFoundError(f"path {str(self.path)!r} is a file, not a Gram store (a folder made by "
                                     "kernels.gram(kernel, x, store=PATH))")
        if not (self.path / "zarr.json").is_file():
            raise StoreNotFoundError(f"path {str(self.path)!r} is not a Gram store (no zarr.json); create one with "
                                     "kernels.gram(kernel, x, store=PATH)")
        group = zarr.open_group(store=_local_store(self.path, read_only=True), mode="r")
        self.metadata = dict(group.attrs.get(META_KEY) or {})
        if not self.metadata:
            raise ValueError(f"{self.path} is a zarr group but not a lazykit Gram store (no {META_KEY!r} "
                             "attribute)")
        names = list(self.metadata["get"])
        if name is None:
            name = names[0]
        if name not in names:
            raise ValueError(f"name must be one of the stored outputs {names}, got {name!r}")
        self.name = name
        self.array = group[name]
        self.shape = tuple(self.array.shape)
        self.dtype = np.dtype(self.metadata["dtype"])
        self.tile = int(self.metadata["tile"])
        self.symmetric = bool(self.metadata["symmetric"])
        self.grid = tile_grid(self.shape[0], self.shape[1], self.tile, self.symmetric)
        self._grid_set = frozenset(self.grid)
        self.checksummed = int(self.metadata.get("format", 1)) >= 2
        self._chunk_bytes = math.prod(self.array.chunks) * self.dtype.itemsize + (
            CHECKSUM_BYTES if self.checksummed else 0)

    def __repr__(self):
        return (f"GramStore({str(self.path)!r}, name={self.name!r}, shape={self.shape}, dtype={self.dtype}, "
                f"tiles {self.tiles_done}/{self.tiles_total}{', symmetric' if self.symmetric else ''})")

    # tiles
    def _index(self, index) -> tuple:
        """``index`` as (I, J) of a tile of this store's grid, or a ValueError/TypeError naming it."""
        if (not isinstance(index, (tuple, list)) or len(index) != 2
                or not all(isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in index)):
            raise TypeError(f"index must be a tile index (I, J) of two integers, got {index!r}")
        index = (int(index[0]), int(index[1]))
        if index not in self._grid_set:
            rows, cols = math.ceil(self.shape[0] / self.tile), math.ceil(self.shape[1] / self.tile)
            raise ValueError(f"index {index} is not a tile of this store: 0 <= I < {rows}, "
                             f"{'I' if self.symmetric else '0'} <= J < {cols}"
                             + (" (a symmetric store keeps only J >= I)" if self.symmetric else ""))
        return index

    def _chunk_file(self, index) -> Path:
        return self.path / self.name / "c" / str(index[0]) / str(index[1])

    def has_tile(self, index) -> bool:
        return self._chunk_file(self._index(index)).is_file()

    def missing_tiles(self) -> list:
        """Indices (I, J) of the tiles not yet computed."""
        return [index for index in self.grid if not self.has_tile(index)]

    @property
    def tiles_total(self) -> int:
        return len(self.grid)

    @property
    def tiles_done(self) -> int:
        return self.tiles_total - len(self.missing_tiles())

    @property
    def complete(self) -> bool:
        return not self.missing_tiles()

    def bounds(self, index) -> tuple:
        """(i0, i1, j0, j1): the rows and columns tile (I, J) covers."""
        return tile_bounds(self._index(index), self.tile, self.shape)

    def read_tile(self, index) -> np.ndarray:
        """Tile (I, J) as stored (for a symmetric store I <= J); ``DamagedTileError`` when its chunk is damaged."""
        if not self.has_tile(index):
            raise ValueError(f"tile index {tuple(index)} of {self.path} has not been computed yet")
        i0, i1, j0, j1 = self.bounds(index)
        problem = self.tile_problem(index)
        if problem is None:
            try:
                return np.asarray(self.array[i0:i1, j0:j1])
            except Exception as exc:   # noqa: BLE001  zarr raises anything from ValueError to its codec errors
                problem = f"{type(exc).__name__}: {exc}"
        raise DamagedTileError(f"tile {tuple(index)} of the Gram store {self.path} is damaged ({problem}): its "
                               f"file {self._chunk_file(tuple(index))}; rerun the same kernels.gram(..., store=) "
                               "call to recompute it (GramStore.verify() lists every damaged tile)")

    def tile_problem(self, index):
        """What is wrong with the computed tile (I, J)'s chunk file ("truncated: ...", "checksum mismatch"), or
        None when it is sound (or not computed). Reads the file once."""
        path = self._chunk_file(self._index(index))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        if len(data) != self._chunk_bytes:
            return f"truncated or padded: {len(data)} bytes where {self._chunk_bytes} belong"
        if self.checksummed:
            import google_crc32c      # a dependency of zarr's crc32c codec
            stored = data[-CHECKSUM_BYTES:]
            computed = np.array([google_crc32c.value(data[:-CHECKSUM_BYTES])], dtype="<u4").tobytes()
            if stored != computed:
                return "checksum mismatch (CRC-32C)"
        return None

    def verify(self) -> list:
        """Every damaged computed tile as ``(index, chunk file, problem)``, in grid order; [] when all are sound.

        Reads each computed chunk once and checks its size and CRC-32C (size only for a format-1 store).
        A rerun of the same ``kernels.gram(..., store=)`` call recomputes the tiles listed here."""
        damaged = []
        for index in self.grid:
            problem = self.tile_problem(index)
            if problem is not None:
                damaged.append((index, self._chunk_file(index), problem))
        return damaged

    def write_tile(self, index, block) -> None:
        """Store tile (I, J) (one chunk, written atomically); ``block`` must be finite, of the tile's shape."""
        import zarr
        from kernels.validation import check_array
        i0, i1, j0, j1 = self.bounds(index)
        block = backend.to_numpy(check_array(block, "block", ndim=2))      # finite, float
        if block.shape != (i1 - i0, j1 - j0):
            raise ValueError(f"block must have the shape {(i1 - i0, j1 - j0)} of tile {tuple(index)}, got "
                             f"{block.shape}")
        stored = block.astype(self.dtype, copy=False)
        if stored.dtype.itemsize < block.dtype.itemsize and not np.all(np.isfinite(stored)):   # float64 → 32
            raise ValueError(f"block overflows the store's {self.dtype} (max |value| "
                             f"{float(np.max(np.abs(block))):.3g})")
        try:
            writable = zarr.open_array(store=_local_store(self.path), path=self.name, mode="r+")
            writable[i0:i1, j0:j1] = stored
        except OSError as exc:
            done = self.tiles_done
            raise StoreWriteError(exc.errno, f"could not write tile {tuple(index)} into the Gram store {self.path} "
                                  f"({exc.strerror or exc}); the {done} tiles written before are intact: free space "
                                  "(or fix the folder) and rerun the same kernels.gram(...) call to resume") from None

    def _check_complete(self, what: str):
        missing = len(self.missing_tiles())
        if missing:
            raise ValueError(f"{self.path}: {missing} of {self.tiles_total} tiles are not computed yet, so "
                             f"{what} is not available; rerun the same kernels.gram(...) call to finish them")

    # whole matrix
    def to_numpy(self, dtype=None, out=None) -> np.ndarray:
        """The full (n1, n2) matrix in memory (the lower triangle mirrored when symmetric).

        ``out`` (an (n1, n2) array) is filled instead of allocating; ``dtype`` casts (default: as stored).
        """
        if dtype is not None:
            try:
                dtype = np.dtype(dtype)
            except (TypeError, ValueError):
                dtype = None
            if dtype is None or dtype.kind != "f":
                raise TypeError("dtype must be None (as stored) or a floating dtype such as 'float64'")
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype.kind != "f" or not out.flags.writeable:
                raise TypeError(f"out must be a writable floating NumPy array, got {type(out).__name__}")
            if tuple(out.shape) != self.shape:
                raise ValueError(f"out must have shape {self.shape}, got {tuple(out.shape)}")
        self._check_complete("to_numpy()")
        if out is None:
            out = np.empty(self.shape, dtype=self.dtype if dtype is None else dtype)
        for index in self.grid:
            i0, i1, j0, j1 = self.bounds(index)
            block = self.read_tile(index)
            out[i0:i1, j0:j1] = block
            if self.symmetric and index[0] != index[1]:
                out[j0:j1, i0:i1] = block.T
        return out

    def as_dask(self):
        """The matrix as a lazy ``dask.array`` (chunks = tiles; the lower triangle mirrored when symmetric)."""
        import dask.array as da
        self._check_complete("as_dask()")
        damaged = self.verify()     # dask would meet a damaged chunk deep in a task, naming no tile
        if damaged:
            index, chunk, problem = damaged[0]
            raise DamagedTileError(f"tile {index} of the Gram store {self.path} is damaged ({problem}): its file "
                                   f"{chunk} ({len(damaged)} damaged in all); rerun the same kernels.gram(..., "
                                   "store=) call to recompute them")
        array = da.from_zarr(self.array)
        if not self.symmetric:
            return array
        return da.triu(array) + da.triu(array, 1).T


# ----------------------------------------------------------------------------------------------- open or create
def fingerprint(record: dict) -> str:
    """First 16 hex digits of the SHA-256 of a record's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(_plain(record), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def describe_differences(stored, wanted, prefix: str = "") -> list:
    """Human-readable 'key: A in the store, B now' lines for every leaf where two records differ."""
    lines = []
    for key in sorted(set(stored) | set(wanted), key=str):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += describe_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} in the store, {b!r} now")
    return lines


def open_store(path, record: dict, shape, dtype) -> dict:
    """The stores (one per output named in ``record["get"]``) at ``path``, created when absent.

    An existing store must carry the same record (kernel, inputs' checksums, tile, dtype, outputs), else
    ``StoreMismatchError`` lists what differs and nothing is touched.
    """
    import zarr
    path = Path(path)
    record = {"format": FORMAT, **record, "dtype": np.dtype(dtype).name, "shape": list(shape)}
    if (path / "zarr.json").is_file():
        group = zarr.open_group(store=_local_store(path, read_only=True), mode="r")
        stored = dict(group.attrs.get(META_KEY) or {})
        if not stored:
            raise StoreMismatchError(f"{path} is a zarr group but not a lazykit Gram store; choose another "
                                     "store path")
        # the format only says whether chunks carry checksums: a format-1 store is resumed as it is
        differences = describe_differences({k: v for k, v in stored.items() if k != "format"},
                                           {k: v for k, v in _plain(record).items() if k != "format"})
        if differences:
            raise StoreMismatchError(f"{path} holds a Gram matrix of a different computation; refusing to mix "
                                     "tiles. What differs: " + "; ".join(differences)
                                     + ". Use another store path, or delete this one to start afresh.")
    elif path.exists() and any(path.iterdir()):
        raise StoreMismatchError(f"{path} exists and is not a Gram store; choose a new or empty path")
    else:
        # "w-": never replace a group that another process created since the check above
        group = zarr.open_group(store=_local_store(path), mode="w-", attributes={META_KEY: record})
        tile = int(record["tile"])
        for name in record["get"]:
            group.create_array(
                name, shape=tuple(shape), chunks=(min(tile, shape[0]), min(tile, shape[1])), dtype=dtype,
                fill_value=np.nan, compressors=[_checksum_codec()], chunk_key_encoding={"name": "default", "separator": "/"},
                config={"write_empty_chunks": True}, dimension_names=("x1", "x2"),
                attributes={"symmetric": bool(record["symmetric"]),
                            "stored_triangle": "upper" if record["symmetric"] else "full", "tile": tile})
    return {name: GramStore(path, name) for name in record["get"]}


def _checksum_codec():
    from zarr.codecs import Crc32cCodec
    return Crc32cCodec()


def _plain(value):
    """A record as it reads back from JSON (tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
