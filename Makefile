# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV := .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# pip-compile lives in a venv of its own: it is needed only to update the locks, never to run.
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
PIP_COMPILE := $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links
# Stage commands in dvc.yaml say `python -m stages.X`: put the venv first on PATH so that is ours.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# DVC and DVCLive would otherwise try to send usage analytics (no network here, and none wanted).
export DVC_NO_ANALYTICS := 1

.PHONY: run test test-slow seeds bench bench-quick bench-blending bench-scale bench-scenes bench-geotiff gpu-wheels install install-remote install-vector install-runtime install-region install-viewer lock clean

run: $(BIN)/.installed
	$(BIN)/dvc repro

# Lint, format and type checks first (pyproject.toml), then the suite, listing its 15 slowest tests.
# The slow tests (documented command blocks, benchmark scripts and the GPU check's dry run, end to end)
# are `make test-slow`; CI runs both.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=15
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PYTEST) -m "not slow"

test-slow: $(BIN)/.installed
	$(PYTEST) -m slow

# The spread of the test scores over N training seeds (default 5): the workspace's params as N queued DVC
# experiments seed-1 ... seed-N, differing only in train.seed; a table of each headline score's mean, sd, min and
# max, and metrics/seeds.json. More options (--first-seed, --set KEY=VALUE, --prefix) in SEEDS_ARGS; docs/statistics.md.
N ?= 5
SEEDS_ARGS ?=
seeds: $(BIN)/.installed
	$(BIN)/python -m tools.seed_spread --seeds $(N) --json metrics/seeds.json $(SEEDS_ARGS)

# Speed against the seed notebooks' way and against the hardware: table + benchmarks/results.json.
# Every benchmark runs as a module from here (python -m benchmarks.NAME --help: its options).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.speed

# The quick run keeps its figures apart (benchmarks/results_quick.json), so the full run's stay as they were.
bench-quick: $(BIN)/.installed
	$(BIN)/python -m benchmarks.speed --quick --output benchmarks/results_quick.json

# Blending on the device (as predict does) against on the host, s per 2448 px image.
bench-blending: $(BIN)/.installed
	$(BIN)/python -m benchmarks.blending

# The data stages, DVC and the training loader at DeepGlobe's real size (803 images of 2448 px):
# table + benchmarks/scale.json. Options go in SCALE_ARGS, e.g. make bench-scale SCALE_ARGS="--images 80".
SCALE_ARGS ?=
bench-scale: $(BIN)/.installed
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

# Your own imagery at size: tile, encode, split on 10 scenes of 10,000 px, 4-band uint16 with polygon labels, and
# the training loader's windows: table + benchmarks/scenes.json. Options in SCENES_ARGS (--scenes, --size).
SCENES_ARGS ?=
bench-scenes: $(BIN)/.installed
	$(BIN)/python -m benchmarks.scenes $(SCENES_ARGS)

# Streaming GeoTIFF prediction: peak RSS and MP/s on a large scene, streaming against in memory.
# SIZE=20000 by default (a 20000 x 20000 scene, cached outside the repo); docs/mapping.md.
bench-geotiff: $(BIN)/.installed
	$(BIN)/python -m benchmarks.geotiff_streaming $(if $(SIZE),--size $(SIZE))

# The wheels the GPU check (tools/gpu_check.sh, docs/gpu-check.md) carries to a lent GPU machine, whose own
# Python lacks them: tools/gpu-wheels.txt's packages with the lock's versions and hashes, for CPython 3.12 on
# manylinux x86_64, into gpu-wheels/ (git-ignored). Fails if they are not exactly the list, or above 60 MiB.
GPU_WHEELS := gpu-wheels
gpu-wheels: $(BIN)/.installed
	rm -rf $(GPU_WHEELS) && mkdir $(GPU_WHEELS)
	$(BIN)/python -m tools.gpu_check --wheel-requirements >$(GPU_WHEELS)/requirements.txt
	$(BIN)/python -m pip download --quiet --no-deps --require-hashes --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
		--dest $(GPU_WHEELS) -r $(GPU_WHEELS)/requirements.txt
	$(BIN)/python -m tools.gpu_check --check-wheel-folder $(GPU_WHEELS)

install: $(BIN)/.installed

# Installs exactly the lock (reinstalling only when it changes): --require-hashes refuses any
# file whose hash is not in it, --no-deps anything it does not list; pip check then proves the
# pinned set is complete and consistent. Then the project itself, editable and without dependencies,
# for its console script landcover-map.
$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip check
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

# Optional cloud-storage DVC remotes (requirements-remote.txt): its lock is the core lock plus
# what the remotes add, with every shared package at the core lock's version.
install-remote: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-remote.lock
	$(BIN)/python -m pip check

# Optional vector output (requirements-vector.txt: pyogrio, for predict --polygons), locked the
# same way: the core lock plus what it adds.
install-vector: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-vector.lock
	$(BIN)/python -m pip check

# Optional OpenVINO runtime (requirements-runtime.txt), for predict.runtime openvino, locked the
# same way: the core lock plus what it adds.
install-runtime: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-runtime.lock
	$(BIN)/python -m pip check

# Optional region mapping (requirements-region.txt: Dask.distributed, for landcover-region),
# locked the same way: the core lock plus what it adds.
install-region: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-region.lock
	$(BIN)/python -m pip check

# Optional map viewer (requirements-viewer.txt: rio-tiler for the tiles, Playwright for its browser tests), locked
# the same way: the core lock plus what it adds; then the page's MapLibre GL JS from the npm registry, exactly as
# viewer/package-lock.json pins it (npm ci checks each package's sha512; no install scripts run) into
# viewer/node_modules, which landcover-view serves: the page needs no internet.
install-viewer: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-viewer.lock
	$(BIN)/python -m pip check
	npm ci --prefix viewer --ignore-scripts --no-audit --no-fund

# Re-resolves the locks from requirements.txt and the optional groups' files (network needed).
# Versions already in a lock are kept where the requirements allow; to move everything to the
# newest allowed versions, delete the .lock files first. The optional locks start from the core
# lock so that the packages they share keep the core lock's versions.
lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) --output-file requirements.lock requirements.txt
	cp requirements.lock requirements-remote.lock
	$(PIP_COMPILE) --output-file requirements-remote.lock requirements.txt requirements-remote.txt
	cp requirements.lock requirements-vector.lock
	$(PIP_COMPILE) --output-file requirements-vector.lock requirements.txt requirements-vector.txt
	cp requirements.lock requirements-runtime.lock
	$(PIP_COMPILE) --output-file requirements-runtime.lock requirements.txt requirements-runtime.txt
	cp requirements.lock requirements-region.lock
	$(PIP_COMPILE) --output-file requirements-region.lock requirements.txt requirements-region.txt
	cp requirements.lock requirements-viewer.lock
	$(PIP_COMPILE) --output-file requirements-viewer.lock requirements.txt requirements-viewer.txt

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(PIP_TOOLS)

clean:
	rm -rf $(VENV)
