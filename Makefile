# equiforce: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.equiforce-installed

.PHONY: install test demo clean bench-neighbors bench-peers

install: $(STAMP)

$(STAMP): requirements.txt setup.py $(wildcard plugin/*.cpp plugin/*.h plugin/*.cu) CMakeLists.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/equiforce demo

clean:
	rm -rf build python/equiforce/*.so python/*.egg-info

bench-neighbors: install
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	$(BIN)/python benchmarks/neighbors.py

bench-peers: install
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	$(BIN)/python benchmarks/peers/nequip/build.py
