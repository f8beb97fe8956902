# The two commands: `make run` and `make test`. Everything else is what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test unit e2e bench controlplane venv lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint requirements.lock --editable '.[test]'
	@touch $@

venv: $(STAMP)

$(VENV)/.bench-stamp: $(STAMP)
	$(PY) -m pip install --quiet --constraint requirements.lock --editable '.[test,bench]'
	@touch $@

## Build etcd, kube-apiserver, kubectl and helm once per version into ~/.cache/inori-operator.
controlplane: $(STAMP)
	$(PY) -m inori_operator.localcluster.build

## The operator in the foreground, on an embedded local control plane unless KUBECONFIG is set.
run: controlplane
	$(VENV)/bin/inori-operator dev

## Every test: unit tests, then end-to-end tests on a real control plane.
test: controlplane
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

## Benchmarks; BENCH_PROFILE=<dir> also samples the operator with py-spy (figures then not comparable).
bench: controlplane $(VENV)/.bench-stamp
	$(PY) -m bench $(BENCH_ARGS)

## Refresh the constraints file after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) .run .pytest_cache
