# Set-up is two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPAT_VENV := .venv-tf517
COMPAT_PY := $(COMPAT_VENV)/bin/python
OUT ?= build/smoke

.PHONY: install compat lock test test-latest mini-test demo demo-deps demo-train recipe-ablation demo-train-gpu mini-train-gpu smoke-train bench clean
DEMO_APT := flite festival festvox-kallpc16k festvox-us-slt-hts espeak-ng sox fortunes fortunes-min pocketsphinx-testdata
MINI_SWEEP_STEPS ?= 300
MINI_SWEEP_CONFIGS ?= 8:linear:real 4:linear:real 2:linear:real
MINI_STEPS ?= 2000

LATEST_VENV := .venv-latest
LATEST_PY := $(LATEST_VENV)/bin/python

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The lock files pin every package (the CPU build of torch included) to the versions CI passed on.
install: $(PY) requirements.lock
	$(PY) -m pip install -q -r requirements.lock
	@touch $(VENV)/.installed

$(VENV)/.installed: requirements.lock | $(PY)
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

# Default suite (CPU, no downloads): the remote-code files are also loaded under transformers 5.17.
test: $(VENV)/.installed $(COMPAT_VENV)/.installed
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

# Debian packages for the speech corpus (TTS voices, sox, fortunes, real recordings).
demo-deps:
	@missing=$$(for p in $(DEMO_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The main job: the mini graft (real Whisper base + Qwen2.5-0.5B, committed trained pieces) through
# the stock pipeline() on real and TTS dev-test speech, beside Whisper base.
demo: $(VENV)/.installed demo-deps
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m mini.make_corpus --out build/demo-corpus --train_size 0 --digit_strings 0 --no_progress
	$(PY) -m mini.demo assemble
	$(PY) -m mini.demo score

# Retrain the committed pieces from scratch on CPU (docs/mini-graft.md says how long): the 20,000-clip
# corpus, the audio_downsample sweep (MINI_SWEEP_STEPS of joint training each), then the chosen run
# continued to MINI_STEPS (--resume true) and kept in mini/trained (with each training segment the stages
# recorded in segments.json); then those pieces carried to audio_downsample 4 and LoRA r=11 (train.refine),
# trained on with decaying rates (train/configs/mini_stage2_refined.yaml) and kept; then trained on with
# 15% of the items several clips joined (train/configs/mini_stage2_joined.yaml) and kept; then 600 steps more of
# that config (seed 3), averaged with the kept pieces (train.average) and kept; then 800 steps more of it
# (seed 7) averaged with those and kept; then 800 more (seed 11) averaged and kept likewise; then 800 more
# (seed 17) with the corpus's spoken digit strings added (digits.jsonl) averaged and kept likewise; and scored.
SWEEP_COMMAND = $(PY) -m mini.sweep --steps $(MINI_SWEEP_STEPS) --configs $(MINI_SWEEP_CONFIGS) --promote
LONG_COMMAND = $(PY) -m train.stage2_qlora --config train/configs/mini_stage2.yaml --resume true --max_steps $(MINI_STEPS)
REFINED_BASE := build/mini-base-k4-linear-real
WITH_DIGITS := build/corpus/train.jsonl,build/corpus/digits.jsonl
REFINE_COMMANDS = $(PY) -m mini.sweep --configs 4:linear:real --build_only && \
	$(PY) -m train.refine --adapter mini/trained/stage2 --model_path $(REFINED_BASE) --output build/refined/k4-r11 --lora_r 11 && \
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2_refined.yaml --resume true
# One more phase of mini_stage2_joined.yaml from the kept pieces, averaged with them and kept:
# $(call AVERAGED_PHASE,run under build/mini-train,seed,max_steps,eval_steps,average under build/average[,more arguments])
define AVERAGED_PHASE
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2_joined.yaml --output_dir build/mini-train/$(1) \
		--seed $(2) --max_steps $(3) --eval_steps $(4) --resume true $(6)
	$(PY) -m train.average --adapters mini/trained/stage2 build/mini-train/$(1) --output build/average/$(5)
	$(PY) -m mini.demo keep --run build/average/$(5) --continues
endef
demo-train: $(VENV)/.installed demo-deps
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m mini.make_corpus --out build/corpus --no_progress
	$(SWEEP_COMMAND)
	$(LONG_COMMAND)
	$(PY) -m mini.demo keep --run build/mini-train/stage2
	$(REFINE_COMMANDS)
	$(PY) -m mini.demo keep --run build/mini-train/k4-r11 --continues
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2_joined.yaml --resume true
	$(PY) -m mini.demo keep --run build/mini-train/k4-joined --continues
	$(call AVERAGED_PHASE,k4-p4,3,600,300,p3-p4)
	$(call AVERAGED_PHASE,k4-p7,7,800,400,p34-p7)
	$(call AVERAGED_PHASE,k4-p8,11,800,400,p347-p8)
	$(call AVERAGED_PHASE,k4-p10,17,800,400,p5300-p10,--train_data $(WITH_DIGITS))
	$(PY) -m train.refine --adapter mini/trained/stage2 --model_path $(REFINED_BASE) --output build/refined/k4-r22 --lora_r 22 --seed 23
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2_joined.yaml --init_adapter build/refined/k4-r22 \
		--output_dir build/mini-train/k4-p12-r22 --seed 23 --max_steps 800 --eval_steps 400 --resume true --train_data $(WITH_DIGITS)
	$(PY) -m train.average --adapters build/refined/k4-r22 build/mini-train/k4-p12-r22 --output build/average/p6100-p12-r22
	$(PY) -m train.refine --adapter build/average/p6100-p12-r22 --model_path $(REFINED_BASE) --output build/refined/p6100-p12-r11 --lora_r 11
	$(PY) -m mini.demo keep --run build/refined/p6100-p12-r11 --continues
	$(PY) -m train.evaluate --model $(REFINED_BASE) --adapter mini/trained/stage2 --data build/corpus/devtest.jsonl \
		--output build/mini-train/eval-stage2 --max_new_tokens 64 --dtype float32 --num_beams 4

# The recipe's other measured choices (docs/training.md): projector gain 1.0 against the text-embedding
# RMS, joint training against stage 1 then stage 2, at the sweep's budget and the chosen downsample 8.
recipe-ablation: $(VENV)/.installed
	$(PY) -m mini.sweep --steps $(MINI_SWEEP_STEPS) --configs 8:linear:real 8:linear:real:gain=embedding 8:linear:real:staged=150

# Retrain the committed pieces on one GPU: a 12,000-clip corpus (training clips in Ogg Opus), then
# mini-train-gpu.
MINI_GPU_CORPUS ?= build/corpus-12k
SWEEP_STEPS ?= 600
SWEEP_OVERRIDES ?=
STAGE2_OVERRIDES ?=
demo-train-gpu: $(VENV)/.installed demo-deps
	$(PY) -m mini.fetch_components --out build/components
	$(PY) -m mini.make_corpus --out $(MINI_GPU_CORPUS) --train_size 12000 --train_codec opus --no_progress
	$(MAKE) mini-train-gpu

# The GPU part: the downsample sweep side by side on the one GPU (train/configs/mini_stage2_gpu.yaml), the
# chosen run continued, kept in mini/trained and scored.
mini-train-gpu:
	$(PY) -m mini.sweep --stage_config train/configs/mini_stage2_gpu.yaml --corpus $(MINI_GPU_CORPUS) \
		--steps $(SWEEP_STEPS) --configs $(MINI_SWEEP_CONFIGS) --parallel --eval_batch_size 32 \
		--out build/mini-sweep-gpu --promote --stage_overrides "$(SWEEP_OVERRIDES)"
	$(PY) -m train.stage2_qlora --config train/configs/mini_stage2_gpu.yaml --train_data $(MINI_GPU_CORPUS)/train.jsonl \
		--eval_data $(MINI_GPU_CORPUS)/devtest.jsonl --resume true $(STAGE2_OVERRIDES)
	$(PY) -m mini.demo keep --run build/mini-train/stage2 --note "make mini-train-gpu on $$($(PY) -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")')"
	$(PY) -m train.evaluate --model build/mini-base --adapter mini/trained/stage2 --data $(MINI_GPU_CORPUS)/devtest.jsonl \
		--output build/mini-train/eval-stage2 --max_new_tokens 64 --dtype bfloat16 --batch_size 32

# Tests that need the downloaded mini components (make demo first).
mini-test: $(VENV)/.installed
	$(PY) -m pytest -q -m mini

# The whole training recipe on the tiny graft and a generated audio set (CPU, a few minutes).
smoke-train: $(VENV)/.installed
	rm -rf $(OUT)
	$(PY) -m train.build --tiny --output $(OUT)/tiny-graft
	$(PY) -m train.toy_audio --output $(OUT)/audio
	$(PY) -m train.stage1_align --config train/configs/tiny_stage1.yaml --model_path $(OUT)/tiny-graft \
		--train_data $(OUT)/audio/train.jsonl --eval_data $(OUT)/audio/devtest.jsonl --output_dir $(OUT)/stage1
	$(PY) -m train.stage2_qlora --config train/configs/tiny_stage2.yaml --model_path $(OUT)/tiny-graft \
		--projector_path $(OUT)/stage1 --train_data $(OUT)/audio/train.jsonl \
		--eval_data $(OUT)/audio/devtest.jsonl --output_dir $(OUT)/stage2
	$(PY) -m train.merge --base $(OUT)/tiny-graft --adapter $(OUT)/stage2 --output $(OUT)/merged --max_shard_size 300KB
	$(PY) -m train.evaluate --model $(OUT)/merged --data $(OUT)/audio/devtest.jsonl --output $(OUT)/eval \
		--max_new_tokens 6 --dataset_name "toy tones"
	$(PY) -m train.card --results $(OUT)/eval/results.json --repo_id you/tiny-audio-graft \
		--base_model Qwen/Qwen2-VL-7B-Instruct --base_model openai/whisper-large-v3-turbo \
		--output $(OUT)/merged/README.md --widget_audio $(OUT)/audio/devtest-000.wav
	$(PY) -m train.push --folder $(OUT)/merged --repo_id you/tiny-audio-graft --fake_api_record $(OUT)/push.json
	@echo "smoke-train: everything is under $(OUT); uploaded files listed in $(OUT)/push.json"

# CPU benchmark, reference way vs ours (mini graft when built, else the tiny graft); under 10 minutes.
bench: $(VENV)/.installed
	$(PY) -m bench.bench --out bench/cpu-results.json

clean:
	rm -rf build $(VENV) $(COMPAT_VENV) $(LATEST_VENV) .venv-lock
