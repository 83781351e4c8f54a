# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test setup lint format migrate demo bench bench-matching bench-orders check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

migrate: setup
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo

# The demo market maker quotes through the REST API beside the server (MARKETMAKER=0: without).
MARKETMAKER ?= 1

# The server with Celery beat's schedule in a thread of its process (run_embedded: pool
# cut-offs, GTD expiry, the switch, the daily settlement...), so what the schedule does reaches
# the feed's in-memory channel layer; beside it the demo market maker. On Ctrl-C the market
# maker stops first, withdrawing its quotes through the server, then the server.
run: demo
	@echo "Serving the demo market on http://$(HOST):$(PORT)/ (admin: /admin/, see README for users)"
	@$(BIN)/python manage.py run_embedded $(HOST):$(PORT) & server=$$!; pids=""; \
	if [ "$(MARKETMAKER)" = "1" ]; then \
		$(BIN)/python manage.py run_marketmaker --url http://$(HOST):$(PORT) > var/marketmaker.log 2>&1 & \
		echo "demo market maker: pid $$!, log var/marketmaker.log"; \
		pids="$$!"; \
	fi; \
	trap '[ -z "$$pids" ] || { kill $$pids 2>/dev/null; wait $$pids; }; kill $$server 2>/dev/null; wait $$server' INT TERM EXIT; \
	wait $$server

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# One pytest process per core, at most 4 (TEST_WORKERS=0: all in this one), each with its own
# test database; more would only add PostgreSQL connections (a worker's tests open several).
TEST_WORKERS ?= auto

test: lint check
	mkdir -p var
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -n $(TEST_WORKERS) --maxprocesses 4

# The exchange package whole (its admin, commands, demo and settings too), but its generated
# migrations.
check: setup
	$(BIN)/mypy matching ledger pricing statements exchange_client \
		exchange --exclude '^exchange/migrations/'

bench-matching: setup
	$(BIN)/python -m matching.bench

bench-orders: setup
	$(BIN)/python manage.py bench_orders --orders 5000

bench: bench-matching bench-orders

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
