# The targets behind README's two commands. They create .venv on first use and
# put .venv/bin first on PATH, so DVC's `python stages/...` uses it whether or
# not the venv is activated.

PYTHON ?= python3
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND := Agg

.PHONY: run test install check-repro compare clean bench preset

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

## make run: install if needed, then run the pipeline (dvc repro)
run: install
	@git config user.email >/dev/null || git config user.email "goodfit@localhost"
	@git config user.name >/dev/null || git config user.name "goodfit"
	dvc repro

## make test: install if needed, then run the test suite
test: install
	python -m pytest

## make bench: the speed and memory benchmarks (not part of `make test`; see benchmarks/README.md)
bench: install
	python benchmarks/bench_augment.py
	python benchmarks/bench_train.py
	python benchmarks/bench_cnn_floor.py
	python benchmarks/bench_pipeline.py
	python benchmarks/bench_augment_memory.py

## make preset NAME=breastmnist: merge presets/NAME.yaml into params.yaml (see README)
preset: install
	python -m goodfit.preset $(NAME)

clean:
	rm -rf data models mlflow.db mlflow.db.lock mlartifacts

## make compare: compare the finished runs of a sweep (MLflow) -> reports/compare/
compare: install
	python -m goodfit.compare $(ARGS)

## make check-repro: dvc repro -f twice, compare with the committed dvc.lock and metrics
check-repro: install
	python -m goodfit.reprocheck
