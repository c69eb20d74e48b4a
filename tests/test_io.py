import os
import stat

import numpy as np
import pytest

from goodfit.errors import GoodfitError
from goodfit.io import atomic_open, npz_bytes, read_json, read_npz, write_json, write_npz


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
