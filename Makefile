# The two README commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing scribbles into $(VENV) (log: $(VENV)/install.log) ..."
	@$(BIN)/pip install -e '.[dev]' > $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

demo: install
	@$(BIN)/scribbles data build
	@$(BIN)/scribbles run configs/activity.yaml

# The project is compiled first: where PYTHONDONTWRITEBYTECODE is set (as on this workplace's machines) each
# of the suite's hundreds of scribbles processes compiled its modules again (all 141 imported: 6.0-7.1 s of
# CPU from source, 5.5 s compiled).
test: install
	@$(BIN)/python -m compileall -q core flows plugins testing > /dev/null
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/training.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/splitters.py

clean:
	rm -rf $(VENV) mlflow.db mlruns .pytest_cache
