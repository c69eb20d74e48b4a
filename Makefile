# The targets behind README's two commands. They create .venv on first use and
# put .venv/bin first on PATH, so DVC's `python stages/...` uses it whether or
# not the venv is activated.

PYTHON ?= python3
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND := Agg

PIP := $(VENV)/bin/python -m pip --disable-pip-version-check
LOCK := requirements.lock
# `make lock LOCKFLAGS=--upgrade` (or --upgrade-package NAME) lets uv move pins the
# existing lock would otherwise keep.
LOCKFLAGS ?=

.PHONY: run test mutate install lock lock-check check-repro compare clean bench preset data data-curve ui predict

## make install: pip first, then exactly requirements.lock (hash-checked; packages
## the lock lacks are removed), then goodfit itself (editable); the last step checks
## that requirements.txt, the lock and the venv agree
$(VENV)/.installed: $(LOCK) requirements.txt requirements-exclude.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m goodfit.envlock requirement pip > $(VENV)/lock-pip.txt
	$(PIP) install --quiet --no-deps --require-hashes -r $(VENV)/lock-pip.txt
	$(VENV)/bin/python -m goodfit.envlock requirement setuptools > $(VENV)/lock-setuptools.txt
	$(PIP) install --quiet --no-deps --require-hashes -r $(VENV)/lock-setuptools.txt
	$(PIP) install --quiet --no-deps --require-hashes --no-build-isolation -r $(LOCK)
	$(VENV)/bin/python -m goodfit.envlock unlocked > $(VENV)/unlocked.txt
	test ! -s $(VENV)/unlocked.txt || $(PIP) uninstall --quiet --yes -r $(VENV)/unlocked.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m goodfit.envlock check
	touch $@

install: $(VENV)/.installed

## make lock: resolve requirements.txt into requirements.lock (needs the network);
## then commit both. Needs the venv's uv: a first `make install` provides it (and
## stops, if the lock is stale, after installing it).
lock:
	test -x $(VENV)/bin/uv || $(MAKE) --no-print-directory $(VENV)/.installed || test -x $(VENV)/bin/uv
	$(VENV)/bin/uv pip compile --quiet --no-config --universal --python-version 3.11 \
	  --generate-hashes --no-header --excludes requirements-exclude.txt $(LOCKFLAGS) \
	  requirements.txt --output-file $(LOCK)
	$(VENV)/bin/python -m goodfit.envlock stamp

## make lock-check: requirements.txt vs requirements.lock, and the venv vs the lock
lock-check: install
	python -m goodfit.envlock check

## make run: install if needed, then run the pipeline (dvc repro).
## make run DVC_CACHE_TYPE=hardlink (or symlink, reflink): first set DVC's cache link type in
## .dvc/config.local, so data/ and the DVC cache share one copy of each file (README, Reproducibility)
DVC_CACHE_TYPE ?=
run: install
	@git config user.email >/dev/null || git config user.email "goodfit@localhost"
	@git config user.name >/dev/null || git config user.name "goodfit"
	$(if $(DVC_CACHE_TYPE),dvc config --local cache.type $(DVC_CACHE_TYPE))
	dvc repro

## make test: install if needed, then run the test suite
test: install
	python -m pytest

## make mutate [ARGS="evaluation training"]: mutation testing of the core modules (mutmut; slow, not part
## of `make test`; see README, Testing)
mutate: install
	python tests/mutate.py $(ARGS)

## make bench: the speed and memory benchmarks (not part of `make test`; see benchmarks/README.md)
bench: install
	python benchmarks/bench_augment.py
	python benchmarks/bench_train.py
	python benchmarks/bench_cnn_floor.py
	python benchmarks/bench_pipeline.py
	python benchmarks/bench_augment_memory.py
	python benchmarks/bench_portable.py
	python benchmarks/bench_train_eval.py

## make data SRC=/path/to/dataset [ARGS="--source csv --target label"]: copy a dataset into
## data/raw/, put it under DVC control (dvc add) and point data.path at it (see README)
data: install
	python -m goodfit.rawdata $(SRC) $(ARGS)

## make preset NAME=breastmnist: merge presets/NAME.yaml into params.yaml (see README)
preset: install
	python -m goodfit.preset $(NAME)

clean:
	rm -rf data models mlflow.db mlflow.db.lock mlartifacts

## make compare: compare the finished runs of a sweep (MLflow) -> reports/compare/
compare: install
	python -m goodfit.compare $(ARGS)

## make data-curve [ARGS="--fractions 0.1 0.25 0.5 1.0 --seeds 0 1 2"]: would more data help? Trains the
## recipe on subsets of the training split -> reports/data_curve/ (needs dvc repro first; see README)
data-curve: install
	python -m goodfit.data_curve $(ARGS)

## make ui: the MLflow UI on mlflow.db; prints the link that opens the experiment's runs table (see README)
ui: install
	python -m goodfit.ui $(ARGS)

## make predict [IN=data/split/test.npz] [OUT=predictions.csv] [ARGS="--model models:/NAME@champion"]:
## apply the model to new data -> one CSV row per sample (see README)
IN ?= data/split/test.npz
OUT ?= predictions.csv
predict: install
	python -m goodfit.predict $(IN) --out $(OUT) $(ARGS)

## make check-repro: dvc repro -f twice, compare with the committed dvc.lock and metrics
check-repro: install
	python -m goodfit.reprocheck
