"""Atomic, byte-reproducible writes.

Every output is built in memory (or in a temporary file in the destination folder)
and moved into place with ``os.replace``, so a crash or a kill never leaves a
half-written file that DVC could cache. Inside :func:`all_or_nothing` (every stage
runs in one) the files a stage wrote are put back as they were when the stage
fails, so its outputs are never a mix of new and stale files. Nothing here writes
wall-clock time.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

import numpy as np

from goodfit.errors import GoodfitError

# Fixed timestamp for zip members: np.savez stamps the current time into every
# member, which makes identical arrays produce different files.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


_OS_REASONS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is exceeded; free some space",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f) or the file system allows; "
                 "raise the limit or write elsewhere",
    errno.EROFS: "the file system is read-only; write to a writable folder",
    errno.EACCES: "permission denied; make the folder writable",
    errno.EPERM: "permission denied; make the folder writable",
}


def os_error_reason(exc: OSError) -> str | None:
    """A full disk, a read-only folder or a missing permission, in words; ``None`` for other errors."""
    return _OS_REASONS.get(exc.errno)


# The files written inside the current all_or_nothing() block, as (path, backup of
# the previous version or None); None outside such a block. Stages are single-threaded.
_JOURNAL: list[tuple[Path, str | None]] | None = None


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Group the atomic writes in the block: if it raises, every file it wrote is put back.

    A file that existed before gets its previous bytes back; a new file is removed.
    This covers bad input found late, a full disk on the third output, and Ctrl-C or
    SIGTERM between two writes. Nested blocks join the outermost one.
    """
    global _JOURNAL
    if _JOURNAL is not None:
        yield
        return
    _JOURNAL = journal = []
    try:
        yield
    except BaseException:
        for path, backup in reversed(journal):
            with contextlib.suppress(OSError):
                if backup is None:
                    path.unlink(missing_ok=True)
                else:
                    os.replace(backup, path)
        raise
    else:
        for _, backup in journal:
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)
    finally:
        _JOURNAL = None


def _keep_previous(path: Path) -> str | None:
    """Hard-link the current version of ``path`` aside (no copy, no window without a file)."""
    if not path.exists():
        return None
    fd, backup = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    try:
        os.unlink(backup)
        os.link(path, backup)
    except OSError:  # a file system without hard links: copy instead
        shutil.copy2(path, backup)
    return backup


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, journaled: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; move it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    ``journaled=False`` keeps the file even when an enclosing :func:`all_or_nothing`
    block fails (the train stage's resume checkpoint, which must outlive a Ctrl-C).

    Raises:
        GoodfitError: the folder cannot be created or written (read-only, disk full).
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)
        if _JOURNAL is not None and journaled:
            _JOURNAL.append((path, _keep_previous(path)))
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        reason = os_error_reason(exc) or exc.strerror or str(exc)
        raise GoodfitError(f"Cannot write {path}: {reason}. Nothing was written.") from exc
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, journaled: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename).

    ``journaled``: see :func:`atomic_open`.

    Raises:
        GoodfitError: the folder cannot be created or written (read-only, disk full).
    """
    with atomic_open(path, journaled=journaled) as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, 2-space indent, final newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as deterministic JSON, atomically."""
    write_text(path, dumps_json(obj))


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` header (format 1.0) of a C-ordered array, as ``np.save`` writes it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(int(n) for n in shape)})
    return buf.getvalue()


def _write_npz_members(fh: BinaryIO, arrays: Mapping[str, np.ndarray],
                       streamed: Mapping[str, tuple]) -> None:
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(set(arrays) | set(streamed)):
            if key in arrays:
                array = np.ascontiguousarray(arrays[key])
                if array.dtype.hasobject:
                    raise GoodfitError(f"internal: array {key!r} holds Python objects; goodfit writes numeric "
                                       "arrays only.")
                shape, dtype, chunks = array.shape, array.dtype, [array]
            else:
                shape, chunks, *rest = streamed[key]
                dtype = np.dtype(rest[0] if rest else np.float32)
            header = _npy_header(shape, dtype)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            # The size is known before writing, so zipfile uses zip64 only for members that need it
            # (about 4 GiB and more). Forcing zip64 for every member would make the bytes depend on the
            # Python release: CPython 3.11.4 changed the sizes it writes into a zip64 local header.
            info.file_size = len(header) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            with zf.open(info, "w") as member:
                member.write(header)
                written = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype=dtype)
                    if chunk.size:
                        member.write(memoryview(chunk).cast("B"))  # no copy of the chunk
                    written += len(chunk)
                if key in streamed and written != shape[0]:
                    raise GoodfitError(f"internal: streamed {written} rows of {key!r}, expected {shape[0]}.")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays to the ``.npz`` format with fixed member timestamps."""
    buf = io.BytesIO()
    _write_npz_members(buf, arrays, {})
    return buf.getvalue()


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` as a byte-reproducible ``.npz``, atomically (straight to the file: no
    copy of the archive in memory)."""
    with atomic_open(path) as fh:
        _write_npz_members(fh, arrays, {})


def write_npz_streamed(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                       streamed: Mapping[str, tuple]) -> None:
    """Write an ``.npz`` whose large members arrive chunk by chunk.

    Args:
        arrays: small arrays written whole.
        streamed: ``{name: (full shape, iterable of row chunks)}`` (float32) or
            ``{name: (full shape, iterable of row chunks, dtype)}``; rows are written
            as they come, so memory stays bounded by one chunk.

    The file is byte-identical to :func:`write_npz` of the concatenated arrays.
    """
    with atomic_open(path) as fh:
        _write_npz_members(fh, arrays, streamed)


def _missing(path: Path) -> GoodfitError:
    return GoodfitError(f"{path} does not exist. Run the stage that produces it first (dvc repro).")


def _unreadable(path: Path, exc: Exception) -> GoodfitError:
    if "Object arrays" in str(exc):
        problem = "holds arrays of Python objects, which goodfit never unpickles (that can run code)"
    elif "pickled" in str(exc):
        problem = "is not an .npz archive (numpy could only read it by unpickling, which goodfit never does)"
    else:
        problem = f"is not a readable .npz file ({exc}); it may be truncated"
    return GoodfitError(f"{path} {problem}. Delete it and re-create it (dvc repro -f).")


def _no_array(path: Path, key: str, files: list[str]) -> GoodfitError:
    return GoodfitError(
        f"{path} has no array named {key!r} (it has {sorted(files)}); re-create it with the stage that writes it."
    )


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] = ("x", "y")) -> dict[str, np.ndarray]:
    """Read named arrays from an ``.npz`` file written by goodfit (no pickles).

    Raises:
        GoodfitError: the file is missing, truncated, or lacks one of ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise _no_array(path, missing[0], npz.files)
            return {k: npz[k] for k in keys}
    except GoodfitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _unreadable(path, exc) from exc


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (PKZIP APPNOTE 4.3.7)


class NpzArray:
    """One array of an ``.npz`` written by goodfit, read from disk a few rows at a time.

    goodfit stores ``.npz`` members uncompressed, so rows ``[a:b]`` are one byte
    range of the file: reading them costs only their own memory, and the whole
    array never has to fit in RAM (50,000 x 128 x 128 float32 images are 3.3 GB).
    Explicit reads rather than ``np.memmap``: mapped pages would count towards the
    process's resident memory until unmapped.

    Indexing by an int, a slice or an array of ints returns an ``ndarray`` (a copy);
    ``np.asarray(a)`` reads everything.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._row_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"NpzArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def _rows(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        if out.size == 0:
            return out
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self._row_items * self.dtype.itemsize)
            got = fh.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise _unreadable(self.path, EOFError(f"rows {start}:{stop} end past the end of the file"))
        return out

    def __getitem__(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._rows(start, max(start, stop))
            key = np.arange(start, stop, step)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of bounds for {n} rows")
            return self._rows(i, i + 1)[0]
        idx = np.asarray(key)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"NpzArray rows are indexed by an int, a slice or a 1-D int array, got {key!r}")
        rows = [self[int(i)] for i in idx]
        return np.stack(rows) if rows else np.empty((0, *self.shape[1:]), dtype=self.dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_items * self.dtype.itemsize

    def head(self, n: int) -> "NpzArray":
        """The first ``n`` rows, still on disk."""
        return NpzArray(self.path, self.offset, (min(int(n), len(self)), *self.shape[1:]), self.dtype)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) in that order, read with one open file.

        Rows are read in file order, consecutive ones with one read, then put in the
        order asked for: a shuffled batch costs one read per row, a sorted block one read.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row indices must lie in 0..{len(self) - 1}")
        order = np.argsort(idx, kind="stable")
        rows = idx[order]
        sorted_rows = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        buffer = memoryview(sorted_rows.reshape(-1).view(np.uint8))
        row_bytes = self._row_items * self.dtype.itemsize
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows: one read each
        with open(self.path, "rb", buffering=0) as fh:
            for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]) if len(rows) else ():
                want = buffer[start * row_bytes:stop * row_bytes]
                fh.seek(self.offset + int(rows[start]) * row_bytes)
                got = 0
                while got < len(want):  # a read may return less than asked
                    n = fh.readinto(want[got:])
                    if not n:
                        raise _unreadable(self.path, EOFError(f"row {int(rows[stop - 1])} ends past the end of "
                                                              "the file"))
                    got += n
        out = np.empty_like(sorted_rows)
        out[order] = sorted_rows
        return out


def open_npz_array(path: str | os.PathLike, key: str) -> NpzArray | np.ndarray:
    """Open array ``key`` of the ``.npz`` at ``path`` for reading rows on demand.

    Returns an :class:`NpzArray`; a compressed or Fortran-ordered member (not
    written by goodfit) cannot be read in parts and is loaded whole instead.

    Raises:
        GoodfitError: the file is missing, truncated or not an ``.npz``, or lacks ``key``.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            if key not in names:
                raise _no_array(path, key, names)
            info = zf.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return read_npz(path, (key,))[key]
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
            if header[0] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header for member {key}.npy")
            start = info.header_offset + _LOCAL_HEADER.size + header[10] + header[11]
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except GoodfitError:
        raise
    except (OSError, ValueError, struct.error, zipfile.BadZipFile, EOFError) as exc:
        raise _unreadable(path, exc) from exc
    if dtype.hasobject:
        raise GoodfitError(f"{path}: array {key!r} holds Python objects; goodfit reads numeric arrays only. "
                           "Re-create it with the stage that writes it.")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + nbytes != info.file_size:
        raise _unreadable(path, ValueError(f"member {key}.npy holds {info.file_size} bytes, "
                                           f"its header describes {offset - start + nbytes}"))
    if fortran or len(shape) == 0:
        return read_npz(path, (key,))[key]
    return NpzArray(path, offset, shape, dtype)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist. Run the stage that produces it first (dvc repro).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GoodfitError(f"{path} is not valid JSON ({exc}); re-create it (dvc repro -f).") from exc
