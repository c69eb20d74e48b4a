"""Start-up stays lean: heavy libraries are imported only where they are used."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "matplotlib")


def imported(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("package, home", [("mlflow", "goodfit/tracking.py"), ("matplotlib", "goodfit/plots.py")])
def test_only_one_module_imports(package, home):
    users = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("goodfit/**/*.py"), *ROOT.glob("stages/*.py")]
                   if any(n == package or n.startswith(package + ".") for n in imported(p)))
    assert users == [home]


@pytest.mark.parametrize("stages, absent", [(("split",), HEAVY),
                                            (("augment", "train", "evaluate"), ("mlflow", "matplotlib"))])
def test_stage_imports_load_only_what_the_stages_use(stages, absent):
    # split never needs torch; mlflow loads when a stage's run opens, matplotlib when a figure is drawn.
    modules = sorted(n for stage in stages for n in imported(ROOT / "stages" / f"{stage}.py")
                     if n.startswith("goodfit") and (ROOT / (n.replace(".", "/") + ".py")).exists())
    assert len(modules) > 2, stages
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not loaded & set(absent), f"importing {modules} loads {sorted(loaded & set(absent))}"
