# One command to set up and run, one to set up and test. Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: run test test-slow test-all browser wheel-check bench clean

$(BIN)/glassgpt: pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -e ".[test]"
	touch $(BIN)/glassgpt

run: $(BIN)/glassgpt
	$(BIN)/glassgpt chat   # fetches SmolLM2-135M-Instruct into ~/.cache/glassgpt on first use

test: $(BIN)/glassgpt browser
	$(BIN)/glassgpt models pull smollm2
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(BIN)/glassgpt browser
	$(BIN)/glassgpt models pull smollm2
	$(BIN)/python -m pytest -q -m slow

test-all: test test-slow

# The explorer's browser tests drive Debian's chromium. Installed through apt-get when possible (as root,
# or with passwordless sudo); otherwise one line says what to do, and make stops.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	      && command -v chromium >/dev/null || { echo "make: apt-get could not install chromium (see above)" >&2; exit 1; }; \
	  else \
	    echo "make: the explorer's browser tests need chromium: install it (Debian/Ubuntu: sudo apt-get install chromium) and run make again" >&2; exit 1; \
	  fi; }

# The built wheel in a new venv: the CLI, python -m glassgpt, and serve with its static files.
wheel-check: $(BIN)/glassgpt
	$(BIN)/python -m pytest -q -m slow tests/test_package.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
