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
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; move it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched.

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
        if _JOURNAL is not None:
            _JOURNAL.append((path, _keep_previous(path)))
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        reason = os_error_reason(exc) or exc.strerror or str(exc)
        raise GoodfitError(f"Cannot write {path}: {reason}. Nothing was written.") from exc
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename).

    Raises:
        GoodfitError: the folder cannot be created or written (read-only, disk full).
    """
    with atomic_open(path) as fh:
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


def _write_npz_members(fh: BinaryIO, arrays: Mapping[str, np.ndarray],
                       streamed: Mapping[str, tuple[tuple[int, ...], Iterable[np.ndarray]]]) -> None:
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(set(arrays) | set(streamed)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                if key in arrays:
                    np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
                    continue
                shape, chunks = streamed[key]
                header = {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_1_0(member, header)
                written = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype=np.float32)
                    member.write(chunk.tobytes())
                    written += len(chunk)
                if written != shape[0]:
                    raise GoodfitError(f"internal: streamed {written} rows of {key!r}, expected {shape[0]}.")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays to the ``.npz`` format with fixed member timestamps."""
    buf = io.BytesIO()
    _write_npz_members(buf, arrays, {})
    return buf.getvalue()


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` as a byte-reproducible ``.npz``, atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))


def write_npz_streamed(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                       streamed: Mapping[str, tuple[tuple[int, ...], Iterable[np.ndarray]]]) -> None:
    """Write an ``.npz`` whose large float32 members arrive chunk by chunk.

    Args:
        arrays: small arrays written whole.
        streamed: ``{name: (full shape, iterable of row chunks)}``; rows are written
            as they come, so memory stays bounded by one chunk.

    The file is byte-identical to :func:`write_npz` of the concatenated arrays.
    """
    with atomic_open(path) as fh:
        _write_npz_members(fh, arrays, streamed)


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] = ("x", "y")) -> dict[str, np.ndarray]:
    """Read named arrays from an ``.npz`` file written by goodfit (no pickles).

    Raises:
        GoodfitError: the file is missing, truncated, or lacks one of ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist. Run the stage that produces it first (dvc repro).")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise GoodfitError(
                    f"{path} has no array named {missing[0]!r} (it has {sorted(npz.files)}); "
                    "re-create it with the stage that writes it."
                )
            return {k: npz[k] for k in keys}
    except GoodfitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if "Object arrays" in str(exc):
            problem = "holds arrays of Python objects, which goodfit never unpickles (that can run code)"
        elif "pickled" in str(exc):
            problem = "is not an .npz archive (numpy could only read it by unpickling, which goodfit never does)"
        else:
            problem = f"is not a readable .npz file ({exc}); it may be truncated"
        raise GoodfitError(f"{path} {problem}. Delete it and re-create it (dvc repro -f).") from exc


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise GoodfitError(f"{path} does not exist. Run the stage that produces it first (dvc repro).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GoodfitError(f"{path} is not valid JSON ({exc}); re-create it (dvc repro -f).") from exc
