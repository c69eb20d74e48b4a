"""Imported first by every stage script: stop with a clear message when goodfit is not installed,
then pin the numeric code paths (``repro.portable``) before torch or numpy is imported.

DVC runs ``python stages/<name>.py`` with the first ``python`` on PATH. When that is
not the environment goodfit was installed into (typically: the project's ``.venv``
was not activated), say so and how to fix it, instead of a bare traceback.
"""

import sys

try:
    import goodfit  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "goodfit":
        raise
    print(
        f"error: goodfit is not installed for {sys.executable} (the 'python' that DVC found first on PATH).\n"
        "Activate the project's environment and run again: source .venv/bin/activate   "
        "(`make run` creates it), or install goodfit into this Python: "
        "pip install -r requirements.txt && pip install -e .",
        file=sys.stderr,
    )
    sys.exit(2)  # the exit code of every input error a stage reports

from goodfit.numerics import pin_for_stage  # noqa: E402

pin_for_stage(sys.argv[1:])  # before anything imports torch or numpy: they choose their CPU kernels when they load
