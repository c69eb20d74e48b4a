"""``python -m goodfit.ui`` (``make ui``): the MLflow UI on goodfit's store, with the link to the runs table.

For the SQLite store (``mlflow.db`` at the project root) it prints the link to the
experiment's runs table and starts ``mlflow ui`` on it; for a tracking server
(``MLFLOW_TRACKING_URI=http://...``) it prints the link on that server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from goodfit.errors import GoodfitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goodfit.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the address mlflow ui listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="its port (default 5000)")
    parser.add_argument("--params", default="params.yaml", help="mlflow.experiment is read from it")
    args = parser.parse_args(argv)
    from goodfit.params import load_params
    from goodfit.tracking import runs_page_url, tracking_uri

    try:
        experiment = load_params(args.params).mlflow.experiment if Path(args.params).is_file() else "goodfit"
        uri = tracking_uri()
        server = uri.startswith(("http://", "https://"))
        url = runs_page_url(uri if server else f"http://{args.host}:{args.port}", experiment)
    except GoodfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the store could not be read
        print(f"error: cannot read the MLflow store {tracking_uri()}: {exc}", file=sys.stderr)
        return 2
    print(f"The runs of experiment {experiment!r}: {url}", flush=True)
    if server:
        return 0
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)])
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
