# Two commands on a fresh machine (Python 3.13 + pip):  `make demo`  and  `make test`.
# Python 3.13, the functions' runtime (python3.13): the first that runs of `python3.13` on PATH, pyenv's 3.13
# (`pyenv prefix 3.13`; its shim fails unless 3.13 is selected) and ~/.pyenv/versions/3.13*; or PYTHON=...
ifndef PYTHON
PYTHON := $(shell for p in python3.13 "$$(pyenv prefix 3.13 2>/dev/null | head -n 1)/bin/python3.13" \
	$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; done)
endif
# Every recipe that makes a virtualenv first checks PYTHON is a working Python 3.13 (README: Two commands).
CHECK_PYTHON = @test -n "$(PYTHON)" || { echo "No working Python 3.13 found (python3.13 on PATH, pyenv 3.13.x):" \
	"install it (README, Two commands) or run make PYTHON=/path/to/python3.13" >&2; exit 1; }; \
	"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' \
	|| { echo "PYTHON=$(PYTHON) is not a working Python 3.13" >&2; exit 1; }
# Lambda architecture of the functions and the layer (template.yaml parameter Architecture): arm64 or x86_64.
ARCH ?= arm64
LAYER_PLATFORM = $(if $(filter arm64,$(ARCH)),manylinux2014_aarch64,manylinux2014_x86_64)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAM_VENV  ?= .venv-sam
SAM_BIN   := $(SAM_VENV)/bin
SAM_STAMP := $(SAM_VENV)/.installed
SCAN_VENV  ?= .venv-scan
SCAN_BIN   := $(SCAN_VENV)/bin
SCAN_STAMP := $(SCAN_VENV)/.installed

.PHONY: demo test lint types unit integration e2e sam-check bench chaos admin clean

$(STAMP): requirements-dev.txt layers/shared/requirements.txt layers/shared/constraints.txt
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Run the whole sync offline: ChartHop emulator + template.yaml's resources in moto.
demo: $(STAMP)
	PYTHONPATH=layers/shared:. $(BIN)/python -m offline.demo $(if $(TARGET),--target $(TARGET)) $(if $(ORGS),--orgs $(ORGS)) $(ARGS)

## The operator tool against a deployed stack: `make admin STACK=people-sync ARGS="orgs list"` (AWS credentials
## as for the AWS CLI; see tools/people_sync_admin/cli.py).
admin: $(STAMP)
	PYTHONPATH=layers/shared:. $(BIN)/python -m tools.people_sync_admin $(if $(STACK),--stack $(STACK)) $(ARGS)

## Lint, type-check and run every test (unit, integration, reliability, e2e, contract), then the fault
## campaign's fixed set of 50 seeds (`make chaos`). The suite runs in TEST_WORKERS pytest-xdist workers, a test
## file per worker (most tests wait on emulators and moto's Step Functions, not the CPU); TEST_WORKERS=0 runs it
## in one process.
TEST_WORKERS ?= 2
test: $(STAMP) lint types
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(MAKE) --no-print-directory chaos PYTEST_ARGS=

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy layers/shared functions offline tests bench tools

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

## Randomized fault campaign (tests/chaos, issue 11): seeds 1..50 by default, `SEEDS=1000` deeper,
## `FIRST_SEED=<n>` past them, `SEED=<n>` replays one schedule. Schedules mostly wait on the stack's clocks, so
## they run in CHAOS_WORKERS parallel pytest-xdist workers (a replay runs alone). `make test` runs the fixed set.
CHAOS_WORKERS ?= 4
chaos: $(STAMP)
	CHAOS=1 $(BIN)/python -m pytest tests/chaos/test_campaign.py -p no:cacheprovider -q -n $(if $(SEED),0,$(CHAOS_WORKERS)) $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(FIRST_SEED),--first-seed $(FIRST_SEED)) $(PYTEST_ARGS)

## `sam validate --lint`, the template scanners (cfn-lint with the serverless rules, checkov), `sam build`
## for ARCH (arm64 by default, `ARCH=x86_64`; no Docker needed: the functions' python3.13 builder runs the
## `python3.13` of PYTHON's directory, put first on PATH) and a check that the build is what Lambda should
## load (tools/check_build.py: cp313 bytecode, the pins, wheels and .so files for ARCH, handlers import).
## Any new finding fails; an accepted one is suppressed in its resource's Metadata (checkov: skip, cfn-lint:
## ignore_checks) with the reason. No runtime deprecation (cfn-lint E2533) is suppressed.
sam-check: $(STAMP) $(SAM_STAMP) $(SCAN_STAMP)
	$(SAM_BIN)/sam validate --lint --region us-east-1
	$(SAM_BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(SCAN_BIN)/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	PATH="$(dir $(PYTHON)):$$PATH" PYTHON=$(abspath $(BIN)/python) PLATFORM=$(LAYER_PLATFORM) \
		$(SAM_BIN)/sam build --region us-east-1 --parameter-overrides Architecture=$(ARCH)
	$(BIN)/python -m tools.check_build .aws-sam/build --architecture $(ARCH)

# SAM CLI in a virtualenv of its own: its pins (e.g. pydantic for aws-sam-translator) must not change the
# versions the tests run, which are the layer's (layers/shared/constraints.txt).
$(SAM_STAMP): requirements-sam.txt
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_BIN)/pip install --quiet --upgrade pip
	$(SAM_BIN)/pip install --quiet -r requirements-sam.txt
	touch $(SAM_STAMP)

# checkov in a virtualenv of its own: its pins (boto3 1.35) clash with aws-sam-cli's (requirements-scan.txt).
$(SCAN_STAMP): requirements-scan.txt
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_BIN)/pip install --quiet --upgrade pip
	$(SCAN_BIN)/pip install --quiet -r requirements-scan.txt
	touch $(SCAN_STAMP)

## Benchmarks, measured side by side in one run (see bench/run.py). The multi-org run (bench/multi_org.py):
## 200 orgs in a minute on a simulated clock (the real handlers; the offline stack, one process, cannot keep
## up with that many on the wall clock), `make bench ORGS=50` fewer; then WALL_ORGS (50) through the offline
## stack itself on the wall clock. Both lines: docs/performance.md (f).
WALL_ORGS ?= 50
bench: $(STAMP)
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.multi_org --clock simulated $(if $(ORGS),--orgs $(ORGS))
	$(BIN)/python -m bench.multi_org --clock wall --orgs $(WALL_ORGS)
	$(BIN)/python -m bench.org_flood

clean:
	rm -rf $(VENV) $(SAM_VENV) $(SCAN_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
