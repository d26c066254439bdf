# gpustack-compose -- every entry point a developer, CI or a GPU host needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STACKS := $(sort $(wildcard stacks/*.yaml))
STACK ?= stacks/h100-idp.yaml

.DEFAULT_GOAL := help
.PHONY: help install example test lint fmt render check schema dist golden model-data images rehearse up status down bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv with the tool and its test tools (pinned)

example: install ## render and plan the example stack (no GPU, no Docker needed)
	$(PY) -m gpustack_compose render $(STACK)
	$(PY) -m gpustack_compose plan $(STACK)

test: install ## run the whole test suite
	$(BIN)/pytest

lint: install ## ruff (lint + format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

render: install ## render every stack in stacks/ into compose/ (compose files and the k8s/ base; and the GitOps example's)
	@for s in $(STACKS); do $(PY) -m gpustack_compose render $$s --target all || exit 1; done
	cd examples/gitops && ../../$(PY) -m gpustack_compose render stacks/idp.yaml

check: install ## fail (exit 3) if any committed compose/ output is stale
	$(PY) -m gpustack_compose check $(STACKS)
	cd examples/gitops && ../../$(PY) -m gpustack_compose check

schema: install ## regenerate schema/stack.schema.json from the spec model
	$(PY) -m gpustack_compose schema -o schema/stack.schema.json

dist: install ## build the wheel and sdist into dist/ (templates and image contexts inside)
	$(PY) -m build --outdir dist .

model-data: install ## regenerate data/models/ (each vLLM release's architecture registry, transformers' config defaults)
	$(PY) -c "from gpustack_compose.runtime.vllm_env import write_model_data; write_model_data(print)"

golden: install ## regenerate tests/golden/*/expected with the tool itself (k8s/ too where a case has one)
	@for d in tests/golden/*/; do \
	  $(PY) -m gpustack_compose render $$d/stack.yaml -o $$d/expected || exit 1; done

images: install ## build the rehearsal images locally: simulator, LiteLLM, real vLLM CPU (cached by content hash)
	$(PY) -m gpustack_compose images --vllm-cpu

rehearse: install ## boot STACK on Docker without a GPU (simulator + real LiteLLM), check it, tear it down
	$(PY) -m gpustack_compose rehearse $(STACK)

up: install ## start STACK on this GPU host and follow its boot
	$(PY) -m gpustack_compose up $(STACK)

status: install ## the services of STACK, from the engine
	$(PY) -m gpustack_compose status $(STACK)

down: install ## stop STACK
	$(PY) -m gpustack_compose down $(STACK)

bench: install images ## run the benchmarks on real Docker; writes bench/RESULTS.md
	$(PY) -m bench

lock: install ## refresh constraints.txt from the current .venv
	{ sed -n "1,2p" constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v "^gpustack"; echo "hatchling==1.27.0"; } > constraints.new && mv constraints.new constraints.txt

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
