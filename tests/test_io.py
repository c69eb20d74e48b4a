import io
import os
import io
import stat

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.io import (all_or_nothing, atomic_open, npz_bytes, os_error_reason, read_json, read_npz, write_json,
                        write_npz)


def test_npz_is_byte_reproducible_and_readable(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 0])
    assert npz_bytes({"x": x, "y": y}) == npz_bytes({"x": x, "y": y})
    write_npz(tmp_path / "a.npz", x=x, y=y)
    data = read_npz(tmp_path / "a.npz")
    assert np.array_equal(data["x"], x) and np.array_equal(data["y"], y)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["out.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_gives_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(GoodfitError, match="permission denied"):
        write_json(ro / "x.json", {})


def test_missing_truncated_and_wrong_keys(tmp_path):
    with pytest.raises(GoodfitError, match="does not exist"):
        read_npz(tmp_path / "none.npz")
    write_npz(tmp_path / "a.npz", x=np.zeros(3), y=np.zeros(3))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(GoodfitError, match="may be truncated"):
        read_npz(tmp_path / "t.npz")
    write_npz(tmp_path / "k.npz", features=np.zeros(3))
    with pytest.raises(GoodfitError, match="has no array named 'x'"):
        read_npz(tmp_path / "k.npz")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(GoodfitError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_json_is_deterministic(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, "x"]})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": [\n    1.5,\n    "x"\n  ],\n  "b": 1\n}\n'


def test_all_or_nothing_puts_back_what_a_failed_block_wrote(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "sub" / "new.json"
    write_json(old, {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with all_or_nothing():
            write_json(old, {"v": 2})
            write_json(old, {"v": 3})  # written twice: the first version still comes back
            write_json(new, {"v": 2})
            assert read_json(old) == {"v": 3}
            raise KeyboardInterrupt  # Ctrl-C between two writes
    assert read_json(old) == {"v": 1} and not new.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["old.json"]  # no temp or backup left


def test_all_or_nothing_keeps_a_successful_block(tmp_path):
    write_json(tmp_path / "a.json", {"v": 1})
    with all_or_nothing():
        with all_or_nothing():  # nested blocks join the outer one
            write_json(tmp_path / "a.json", {"v": 2})
        write_json(tmp_path / "b.json", {"v": 2})
    assert read_json(tmp_path / "a.json") == {"v": 2} and read_json(tmp_path / "b.json") == {"v": 2}
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]


def test_file_size_limit_is_a_clear_error(tmp_path):
    """A real OS limit (RLIMIT_FSIZE: writes past it fail with EFBIG; Python ignores SIGXFSZ)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    write_json(tmp_path / "out.json", {"old": True})
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(GoodfitError, match=r"Cannot write .*big\.npz: the file is larger than this process may "
                                               r"write \(ulimit -f\)"):
            write_npz(tmp_path / "big.npz", x=np.zeros(10_000, np.float32))
        with pytest.raises(GoodfitError, match="Nothing was written"):
            write_json(tmp_path / "out.json", {"new": "x" * 10_000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert read_json(tmp_path / "out.json") == {"old": True}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_os_error_reasons():
    import errno

    assert "disk is full" in os_error_reason(OSError(errno.ENOSPC, "No space left on device"))
    assert "read-only" in os_error_reason(OSError(errno.EROFS, "Read-only file system"))
    assert os_error_reason(OSError(errno.ENOENT, "No such file")) is None


def test_npz_with_pickles_or_not_an_npz_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(GoodfitError, match=r"obj\.npz holds arrays of Python objects, which goodfit never "
                                           r"unpickles.*re-create it"):
        read_npz(tmp_path / "obj.npz")
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    with pytest.raises(GoodfitError, match=r"text\.npz is not an \.npz archive"):
        read_npz(tmp_path / "text.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(GoodfitError, match=r"empty\.npz is not a readable \.npz file"):
        read_npz(tmp_path / "empty.npz")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "caf\xe9"}')
    with pytest.raises(GoodfitError, match="not valid JSON"):
        read_json(tmp_path / "latin1.json")

def test_npz_array_reads_rows_on_demand(tmp_path):
    from goodfit.io import NpzArray, open_npz_array

    x = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    write_npz(tmp_path / "a.npz", x=x, y=np.arange(5))
    a = open_npz_array(tmp_path / "a.npz", "x")
    assert isinstance(a, NpzArray) and a.shape == x.shape and len(a) == 5 and a.dtype == np.float32
    assert np.array_equal(a[1:4], x[1:4]) and np.array_equal(a[-1], x[-1]) and np.array_equal(a[::2], x[::2])
    assert np.array_equal(a[np.array([4, 0, 2])], x[[4, 0, 2]]) and np.array_equal(np.asarray(a), x)
    assert a[7:9].shape == (0, 2, 3)
    assert np.array_equal(open_npz_array(tmp_path / "a.npz", "y")[:], np.arange(5))
    with pytest.raises(IndexError):
        a[5]
    # Members that cannot be read in parts (compressed) are loaded whole.
    np.savez_compressed(tmp_path / "c.npz", x=x)
    assert np.array_equal(open_npz_array(tmp_path / "c.npz", "x"), x)


def test_npz_array_errors(tmp_path):
    from goodfit.io import open_npz_array

    with pytest.raises(GoodfitError, match="does not exist"):
        open_npz_array(tmp_path / "none.npz", "x")
    write_npz(tmp_path / "k.npz", features=np.zeros(3))
    with pytest.raises(GoodfitError, match="has no array named 'x'"):
        open_npz_array(tmp_path / "k.npz", "x")
    (tmp_path / "n.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(GoodfitError, match="not a readable .npz"):
        open_npz_array(tmp_path / "n.npz", "x")
    write_npz(tmp_path / "a.npz", x=np.ones((1000, 4), dtype=np.float32))
    a = open_npz_array(tmp_path / "a.npz", "x")
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[:8000])  # cut inside the rows
    with pytest.raises(GoodfitError, match="may be truncated"):
        a[900:1000]


def test_npz_members_carry_their_sizes_so_the_bytes_do_not_depend_on_the_python_release():
    """zip64 headers (once forced for every member) are written differently before and after CPython 3.11.4."""
    import struct
    import zipfile

    from goodfit.io import npz_bytes

    arrays = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "y": np.array([0, 1]),
              "empty": np.zeros((0, 5), np.float32)}
    data = npz_bytes(arrays)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            assert info.extra == b"" and info.create_version == info.extract_version == 20
            local = struct.unpack("<4s2B4HL2L2H", data[info.header_offset:info.header_offset + 30])
            assert local[8] == local[9] == info.file_size  # real sizes, not zip64's 0xFFFFFFFF
            assert np.array_equal(np.load(io.BytesIO(zf.read(info))), arrays[info.filename[:-4]])
