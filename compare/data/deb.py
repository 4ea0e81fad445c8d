"""Files out of a Debian package (``.deb``) with the standard library only (no dpkg needed).

A .deb (deb(5)) is an ar archive: the magic ``!<arch>\\n``, then per member a 60-byte header (name 16 bytes,
mtime 12, owner 6, group 6, mode 8, size 10 in decimal, the two bytes ``\\x60\\n``) and its data, padded to an
even length. Its members are ``debian-binary``, ``control.tar.*`` and ``data.tar.*``, the package's files.
``data.tar`` is compressed with xz (Debian's default; bookworm's dataset-fashion-mnist uses it), gzip, bzip2,
zstd (Ubuntu's default since 21.10) or nothing. ``tarfile`` reads all of them but zstd, which Python's standard
library reads from 3.14 on (``compression.zstd``); before that the ``zstandard`` package is used when installed,
else the error says how to unpack it (``dpkg-deb -x FILE.deb DIR``, then ``--from DIR``).
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from compare.data.catalog import CorruptDataError

AR_MAGIC = b"!<arch>\n"
HEADER = 60


def ar_members(path) -> dict:
    """{member name: bytes} of the ar archive ``path`` (GNU ``name/`` endings stripped)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(AR_MAGIC):
        raise CorruptDataError(f"{path} is not a .deb (no ar magic {AR_MAGIC!r} at the start)")
    members, pos = {}, len(AR_MAGIC)
    while pos + HEADER <= len(raw):
        header = raw[pos:pos + HEADER]
        if header[58:60] != b"`\n":
            raise CorruptDataError(f"{path}: damaged ar member header at byte {pos}")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise CorruptDataError(f"{path}: damaged ar member size at byte {pos}") from exc
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        body = raw[pos + HEADER:pos + HEADER + size]
        if len(body) != size:
            raise CorruptDataError(f"{path}: member {name} is truncated ({len(body)} of {size} bytes)")
        members[name] = body
        pos += HEADER + size + size % 2
    return members


def _decompress_zstd(blob: bytes, path) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
        return zstd.decompress(blob)
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise CorruptDataError(
            f"{path} compresses its files with zstd (data.tar.zst), which Python's standard library reads only "
            "from Python 3.14 on; `pip install zstandard`, or unpack it with `dpkg-deb -x FILE.deb DIR` and pass "
            "`--from DIR/usr/share/datasets/fashion-mnist`") from None
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)) as reader:
        return reader.read()


def data_tar(path) -> tarfile.TarFile:
    """The package's ``data.tar.*`` member, opened."""
    members = ar_members(path)
    names = [n for n in members if n.startswith("data.tar")]
    if len(names) != 1:
        raise CorruptDataError(f"{path}: expected one data.tar.* member, found {sorted(members)}")
    blob = members[names[0]]
    if names[0].endswith(".zst"):
        blob = _decompress_zstd(blob, path)
    try:
        return tarfile.open(fileobj=io.BytesIO(blob))   # xz, gzip, bzip2 or plain: detected by tarfile
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptDataError(f"{path}: {names[0]} is not a readable tar archive ({exc})") from exc


def read_files(path, basenames) -> dict:
    """{basename: bytes} of the package's regular files whose file name is one of ``basenames``."""
    wanted, found = set(basenames), {}
    with data_tar(path) as archive:
        try:
            for member in archive:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted:
                    found[name] = archive.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CorruptDataError(f"{path}: damaged data archive ({exc})") from exc
    return found
