# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV := .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Stage commands in dvc.yaml say `python -m stages.X`: put the venv first on PATH so that is ours.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# DVC and DVCLive would otherwise try to send usage analytics (no network here, and none wanted).
export DVC_NO_ANALYTICS := 1

.PHONY: run test bench bench-quick install clean

run: $(BIN)/.installed
	$(BIN)/dvc repro

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# Speed against the seed notebooks' way and against the hardware: table + benchmarks/results.json.
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/speed.py

bench-quick: $(BIN)/.installed
	$(BIN)/python benchmarks/speed.py --quick

install: $(BIN)/.installed

# Reinstalls only when requirements.txt changes.
$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

clean:
	rm -rf $(VENV)
