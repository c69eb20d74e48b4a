"""benchmarks/cross_cpu.py natively: the shortened pipeline runs in both settings (qemu is not needed)."""

import hashlib

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("cross_cpu")


@pytest.mark.slow
def test_native_runs_write_every_output_and_the_setting_reaches_the_worker(bench, tmp_path):
    digests = {}
    for name, portable in (("a", True), ("off", False)):
        where = bench.scratch_project(tmp_path / name, portable)
        note = bench.run(where, ["split", "augment", "train", "evaluate"], None)
        assert note.startswith("ATen capability"), note
        digests[name] = {o: hashlib.sha256((where / o).read_bytes()).hexdigest() for o in bench.OUTPUTS}
        if portable:
            assert note.endswith(("AVX2", "DEFAULT"))  # pinned (DEFAULT: a CPU without AVX2)
    assert digests["a"]["data/split/train.npz"] == digests["off"]["data/split/train.npz"]  # no float sums there
    assert "max_epochs: 3" in (tmp_path / "a/params.yaml").read_text()
    assert "portable: false" in (tmp_path / "off/params.yaml").read_text()
