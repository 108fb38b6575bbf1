"""The training recipe on the tiny graft: two steps of each stage, resume, merge, data-parallel runs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import train.stages.common
from train import stage1_align
from train import stage2_qlora
from train.stages.data import JoinedClips, SpeechDataset, load_rows
from train.weights.loading import load_graft
from train.building.folder import save_graft
from train.merge import check_saved, merge, merge_and_save, probe_inputs
from train.building.tiny import build_tiny
from train.building.toy_audio import make_toy_audio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    build_tiny(folder / "graft")
    manifests = make_toy_audio(folder / "audio", train=8, devtest=4)
    return folder, manifests


def _common(folder, manifests, output, steps, extra=()):
    return [
        "--model_path", str(folder / "graft"), "--train_data", str(manifests["train"]),
        "--output_dir", str(output), "--max_steps", str(steps), "--per_device_train_batch_size", "2",
        "--learning_rate", "0.01", "--logging_steps", "1", "--save_steps", "2", "--report_to", "none",
        "--use_cpu", "true", "--seed", "0", "--eval_strategy", "no", "--precision", "float32", *extra,
    ]  # fmt: skip


def test_broken_rows_are_skipped_and_counted(setup):
    _, manifests = setup
    dataset = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    assert len(dataset) == 8
    assert dict(dataset.skips) == {"missing or undecodable audio": 1, "empty text": 1, "audio over 120 s": 1}
    assert dataset.skips.report() == (
        "skipped 3 rows: 1 audio over 120 s, 1 empty text, 1 missing or undecodable audio"
    )


def test_comma_separated_manifests_are_concatenated_in_order(setup):
    _, manifests = setup
    train, devtest = load_rows(str(manifests["train"])), load_rows(str(manifests["devtest"]))
    both = load_rows(f"{manifests['train']}, {manifests['devtest']}")
    assert list(both["text"]) == list(train["text"]) + list(devtest["text"])
    assert [a["path"] for a in both["audio"]] == [a["path"] for a in train["audio"]] + [a["path"] for a in devtest["audio"]]
    streamed = load_rows(f"{manifests['train']},{manifests['devtest']}", streaming=True)  # local: read whole as well
    assert list(streamed["text"]) == list(both["text"])
    with pytest.raises(ValueError, match=r"^expected comma-separated \.jsonl/\.json/\.csv manifests, got 'a\.jsonl,b'$"):
        load_rows("a.jsonl,b")


def test_joined_clips_join_audio_text_and_ids_with_gaps(setup):
    _, manifests = setup
    clips = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    joined = JoinedClips(clips, probability=1.0, max_clips=3, max_seconds=120, gap_seconds=0.5, seed=0)
    assert len(joined) == len(clips) and joined.skips is clips.skips
    assert [plan[0] for plan in joined.plans] == list(range(len(clips)))
    several = [i for i, plan in enumerate(joined.plans) if len(plan) > 1]
    assert several  # probability 1: every item draws partners (one equal to itself is passed over)
    for i in several:
        plan, item = joined.plans[i], joined[i]
        parts = [clips[k] for k in plan]
        gap = np.zeros(8000, dtype=np.float32)
        expected = np.concatenate([piece for part in parts for piece in (gap, part["audio"])][1:])
        np.testing.assert_array_equal(item["audio"], expected)
        assert item["text"] == " ".join(part["text"] for part in parts)
        assert item["id"] == "+".join(part["id"] for part in parts)
        # the gaps count as audio tokens at the grouping rate: 0.5 s is 25 encoder frames, 1 s is 50 -> 13
        gaps = {2: 7, 3: 13}[len(plan)]
        assert joined.lengths[i] == sum(clips.lengths[k] for k in plan) + gaps
    again = JoinedClips(clips, probability=1.0, max_clips=3, max_seconds=120, gap_seconds=0.5, seed=0)
    assert again.plans == joined.plans  # drawn once from the seed: the same items every epoch and run
    assert JoinedClips(clips, 1.0, 3, 120, seed=1).plans != joined.plans


def test_joined_clips_keep_single_clips_at_probability_zero_and_within_max_seconds(setup):
    _, manifests = setup
    clips = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    none = JoinedClips(clips, probability=0.0)
    assert none.plans == [[i] for i in range(len(clips))] and none.lengths == clips.lengths
    assert none[2]["text"] == clips[2]["text"] and np.array_equal(none[2]["audio"], clips[2]["audio"])
    shortest_pair = 2 * min(clips.seconds) + 0.3
    capped = JoinedClips(clips, probability=1.0, max_clips=4, max_seconds=shortest_pair - 0.01)
    assert capped.plans == [[i] for i in range(len(clips))]
    for plan in JoinedClips(clips, probability=1.0, max_clips=4, max_seconds=max(clips.seconds) + 1.0).plans:
        assert sum(clips.seconds[k] for k in plan) + 0.3 * (len(plan) - 1) <= max(clips.seconds) + 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"probability": 1.5}, "join_clips is a probability, between 0 and 1; got 1.5"),
    ({"probability": 0.5, "max_clips": 1}, "join_max_clips must be at least 2 to join anything; got 1"),
])  # fmt: skip
def test_joined_clips_refuse_bad_settings(setup, kwargs, message):
    _, manifests = setup
    clips = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    with pytest.raises(ValueError) as info:
        JoinedClips(clips, **kwargs)
    assert str(info.value) == message


def test_join_clips_refuses_an_encoder_cache(setup, tmp_path):
    folder, manifests = setup
    with pytest.raises(ValueError) as info:
        stage1_align.main(_common(folder, manifests, tmp_path / "j", 1,
                                  ["--join_clips", "0.5", "--encoder_cache_dir", str(tmp_path / "cache")]))
    assert str(info.value) == ("join_clips joins clips' audio before the encoder: it works with neither streaming "
                               "nor encoder_cache_dir")


def test_stage2_trains_on_joined_clips(setup, tmp_path):
    folder, manifests = setup
    extra = ["--join_clips", "1.0", "--join_max_clips", "3", "--load_in_4bit", "false", "--lora_r", "2",
             "--train_sampling_strategy", "group_by_length"]
    trainer = stage2_qlora.main(_common(folder, manifests, tmp_path / "joined", 2, extra))
    assert trainer.state.global_step == 2
    assert isinstance(trainer.train_dataset, JoinedClips)
    assert any(len(plan) > 1 for plan in trainer.train_dataset.plans)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_stage1_changes_only_the_projector(setup, tmp_path):
    folder, manifests = setup
    trainer = stage1_align.main(_common(folder, manifests, tmp_path / "s1", 2))
    assert trainer.state.global_step == 2
    before, _ = load_graft(folder / "graft")
    after = trainer.model.state_dict()
    changed = {k for k, v in before.state_dict().items() if not torch.equal(v, after[k])}
    assert changed == {"model.audio_projector.linear_1.weight", "model.audio_projector.linear_1.bias",
                       "model.audio_projector.norm.weight"}
    saved = load_file(str(tmp_path / "s1" / "model.safetensors"))
    assert set(saved) == changed
    assert (tmp_path / "s1" / "training.png").stat().st_size > 0
    assert json.loads((tmp_path / "s1" / "skipped_rows.json").read_text())["train"]["empty text"] == 1
    assert json.loads((tmp_path / "s1" / "train_results.json").read_text())["train_runtime"] > 0  # the sweep's train seconds


class _Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated interruption at step 3")


def with_callback(monkeypatch, callback):
    """Make the stages' Trainers carry `callback` too; returns the original `make_trainer`."""
    make_trainer = train.stages.common.make_trainer

    def extended(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.add_callback(callback)
        return trainer

    monkeypatch.setattr(train.stages.common, "make_trainer", extended)
    return make_trainer


def test_interrupt_and_resume_continues_the_step_count(setup, tmp_path, monkeypatch):
    folder, manifests = setup
    # --resume where there is no checkpoint yet starts from step 0 (a command that can be rerun after a cut)
    straight = stage1_align.main(_common(folder, manifests, tmp_path / "straight", 4, ["--resume", "true"]))
    make_trainer = with_callback(monkeypatch, _Interrupt())
    with pytest.raises(KeyboardInterrupt):
        stage1_align.main(_common(folder, manifests, tmp_path / "resumed", 4))
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*")) == ["checkpoint-2"]
    monkeypatch.setattr(train.stages.common, "make_trainer", make_trainer)
    resumed = stage1_align.main(_common(folder, manifests, tmp_path / "resumed", 4, ["--resume", "true"]))
    assert resumed.state.global_step == 4
    steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert steps == [1, 2, 3, 4]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert straight.state.global_step == 4


class _RecordWeights(TrainerCallback):
    """The trainable weights at the start and after every optimizer step."""

    def __init__(self):
        self.seen = []

    def _record(self, model):
        self.seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._record(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._record(model)


def test_ema_of_the_trained_weights_is_saved_and_resumed(setup, tmp_path, monkeypatch):
    folder, manifests = setup
    recorder = _RecordWeights()
    make_trainer = with_callback(monkeypatch, recorder)
    ema_args = ["--ema_decay", "0.5", "--resume", "true"]
    stage1_align.main(_common(folder, manifests, tmp_path / "straight", 4, ema_args))
    expected = {k: v.float() for k, v in recorder.seen[0].items()}
    for step, weights in enumerate(recorder.seen[1:], start=1):
        decay = min(0.5, (1 + step) / (10 + step))
        expected = {k: decay * expected[k] + (1 - decay) * weights[k].float() for k in expected}
    saved = load_file(str(tmp_path / "straight" / "ema" / "model.safetensors"))
    assert set(saved) == set(expected) and len(recorder.seen) == 5
    for key in expected:
        torch.testing.assert_close(saved[key], expected[key])
        assert not torch.equal(saved[key], recorder.seen[-1][key])  # an average, not the end
    assert (tmp_path / "straight" / "checkpoint-4" / "ema.safetensors").exists()
    monkeypatch.setattr(train.stages.common, "make_trainer", make_trainer)
    with_callback(monkeypatch, _Interrupt())
    with pytest.raises(KeyboardInterrupt):
        stage1_align.main(_common(folder, manifests, tmp_path / "resumed", 4, ema_args))
    monkeypatch.setattr(train.stages.common, "make_trainer", make_trainer)
    stage1_align.main(_common(folder, manifests, tmp_path / "resumed", 4, ema_args))
    resumed = load_file(str(tmp_path / "resumed" / "ema" / "model.safetensors"))
    for key in expected:
        torch.testing.assert_close(resumed[key], saved[key], rtol=1e-5, atol=1e-6)
    # the training clock: the straight run's total is Trainer's runtime; the resumed run's continues from
    # the checkpoint's count, where Trainer's runtime covers its last part only
    straight = json.loads((tmp_path / "straight" / "training_clock.json").read_text())
    runtime = json.loads((tmp_path / "straight" / "train_results.json").read_text())["train_runtime"]
    assert straight["step"] == 4 and straight["parts"] == 1 and abs(straight["seconds"] - runtime) <= 0.5
    checkpoints = sorted((tmp_path / "resumed").glob("checkpoint-*/training_clock.json"))
    first = json.loads(checkpoints[0].read_text())
    total = json.loads((tmp_path / "resumed" / "training_clock.json").read_text())
    last_part = json.loads((tmp_path / "resumed" / "train_results.json").read_text())["train_runtime"]
    assert 0 < first["seconds"] and first["step"] < 4 and total["step"] == 4
    assert (first["parts"], total["parts"]) == (1, 2)  # continued once: not one go
    assert abs(total["seconds"] - (first["seconds"] + last_part)) <= 0.5
    with pytest.raises(ValueError, match=r"^ema_decay must be between 0 and 1 \(0 turns the average off\), got 1\.0$"):
        stage1_align.main(_common(folder, manifests, tmp_path / "bad", 1, ["--ema_decay", "1"]))


@pytest.fixture(scope="module")
def stage2_output(setup, tmp_path_factory):
    folder, manifests = setup
    output = tmp_path_factory.mktemp("s2")
    extra = ["--lora_r", "8"]
    trainer = stage2_qlora.main(_common(folder, manifests, output, 2, extra))
    return trainer, output


def test_stage2_trains_only_lora_and_projector(stage2_output):
    trainer, output = stage2_output
    assert trainer.state.global_step == 2
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or "audio_projector.modules_to_save" in n for n in trainable)
    assert any("language_model.layers.0.self_attn.q_proj.lora_A" in n for n in trainable)
    assert not any("audio_tower" in n or "visual" in n for n in trainable)
    quantized = type(trainer.model.base_model.model.model.language_model.layers[0].mlp.up_proj.base_layer).__name__
    assert quantized == "Linear4bit"
    assert type(trainer.model.base_model.model.model.audio_tower.layers[0].fc1).__name__ == "Linear"
    saved = load_file(str(output / "adapter_model.safetensors"))
    assert {k.split(".")[-2] for k in saved} <= {"lora_A", "lora_B", "linear_1", "norm"}


def test_stage2_can_start_from_a_saved_adapter(setup, stage2_output, tmp_path):
    """--init_adapter: LoRA and projector start from the saved pieces (zero learning rate: unchanged)."""
    folder, manifests = setup
    _, first = stage2_output
    args = _common(folder, manifests, tmp_path / "again", 1, ["--init_adapter", str(first)])
    args[args.index("--learning_rate") + 1] = "0"
    trainer = stage2_qlora.main(args)
    assert trainer.state.global_step == 1
    before = load_file(str(first / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "again" / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and len(before) > 0
    for key in before:
        torch.testing.assert_close(after[key], before[key])


def test_merged_logits_equal_adapter_logits(setup, stage2_output, tmp_path):
    folder, _ = setup
    _, output = stage2_output
    error = merge_and_save(tmp_path / "merged", folder / "graft", adapter=output)
    assert error <= 1e-4
    reloaded, processor = load_graft(tmp_path / "merged")
    adapter_model, _ = load_graft(folder / "graft", adapter=output)
    inputs = probe_inputs(processor)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, adapter_model(**inputs).logits, rtol=1e-4, atol=1e-4)


def test_a_projector_merge_is_checked_against_base_plus_projector_loaded_apart(setup, tmp_path):
    folder, manifests = setup
    stage1_align.main(_common(folder, manifests, tmp_path / "s1", 2))
    assert merge_and_save(tmp_path / "merged", folder / "graft", projector=tmp_path / "s1") <= 1e-4
    # The check reads the written folder: a saved model that is not base + projector is refused and removed.
    other, processor = load_graft(folder / "graft")  # the untrained projector
    save_graft(other, processor, tmp_path / "wrong")
    with pytest.raises(ValueError) as info:
        check_saved(tmp_path / "wrong", folder / "graft", projector=tmp_path / "s1")
    assert str(info.value).startswith("The saved model's logits differ from the unmerged model's by ")
    assert str(info.value).endswith(f"(relative), over 1e-04: {tmp_path / 'wrong'} deleted")
    assert not (tmp_path / "wrong").exists()


def test_merge_refuses_nothing_to_merge(setup):
    folder, _ = setup
    with pytest.raises(ValueError) as info:
        merge(folder / "graft")
    assert str(info.value) == "Nothing to merge: give --projector and/or --adapter"


def _accelerate(args, tmp_path):
    # `--cpu` launches a single process; torchrun's path with ACCELERATE_USE_CPU gives gloo DDP on CPU.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true"}  # fmt: skip
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_stage1_and_evaluate_under_accelerate_launch(setup, tmp_path):
    folder, manifests = setup
    run = _accelerate(["-m", "train.stage1_align", *_common(folder, manifests, tmp_path / "ddp", 2)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.safetensors").exists()
    state = json.loads((tmp_path / "ddp" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert state["train_batch_size"] == 2 and "world size 2" in run.stdout + run.stderr
    run = _accelerate(["-m", "train.evaluate", "--model", str(folder / "graft"), "--projector", str(tmp_path / "ddp"),
                       "--data", str(manifests["devtest"]), "--output", str(tmp_path / "eval"),
                       "--max_new_tokens", "3"], tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["processes"] == 2 and results["num_clips"] == 4
    ids = [json.loads(line)["id"] for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["devtest-000", "devtest-001", "devtest-002", "devtest-003"]


def test_stage2_on_two_processes_equals_one_process(setup, tmp_path):
    # 2 steps of stage 2 (LoRA without 4-bit) on 2 gloo processes, batch 2 each, against one process
    # with batch 4: the same weights, and they reload. (accelerate 1.15 offers FSDP and DeepSpeed only
    # on accelerator devices: on CPU a launch with --use_fsdp runs this same data-parallel path.)
    folder, manifests = setup
    extra = ["--load_in_4bit", "false", "--lora_r", "8", "--lora_dropout", "0", "--train_sampling_strategy", "random"]
    one = _common(folder, manifests, tmp_path / "one", 2, extra)
    stage2_qlora.main([*one, "--per_device_train_batch_size", "4"])
    run = _accelerate(["-m", "train.stage2_qlora", *_common(folder, manifests, tmp_path / "two", 2, extra)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stage 2: LoRA + projector: 2 process(es), MULTI_CPU" in run.stdout
    expected, got = _trained_adapters(tmp_path / "one", tmp_path / "two")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-3, atol=1e-3 * expected[key].abs().max().item())
    _assert_same_logits(folder / "graft", tmp_path / "one", tmp_path / "two", rtol=1e-4, atol=1e-4)


def _trained_adapters(one: Path, two: Path) -> tuple[dict, dict]:
    """The adapters saved by the one-process run and the two-process run: the same weights, each trained."""
    expected = load_file(str(one / "adapter_model.safetensors"))
    got = load_file(str(two / "adapter_model.safetensors"))
    assert got.keys() == expected.keys()
    assert all(expected[key].abs().max() > 0 for key in expected if ".lora_B." in key)  # LoRA B starts at 0: trained
    return expected, got


def _assert_same_logits(graft: Path, one: Path, two: Path, rtol: float, atol: float):
    """Both adapters reload onto the graft and give the same logits on the probe inputs."""
    model, processor = load_graft(graft, adapter=two)
    reference, _ = load_graft(graft, adapter=one)
    inputs = probe_inputs(processor)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, rtol=rtol, atol=atol)


def test_a_seed_makes_stage2_repeatable(setup, tmp_path):
    # LoRA's A matrices are drawn at random: the seed must be set before them, or two runs differ.
    folder, manifests = setup
    extra = ["--load_in_4bit", "false", "--lora_r", "8", "--lora_dropout", "0"]
    for name in ("a", "b"):
        stage2_qlora.main(_common(folder, manifests, tmp_path / name, 1, [*extra, "--save_steps", "1"]))
    first, second = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("a", "b"))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_evaluate_streams_the_set_and_scores_it_the_same(setup, tmp_path):
    from train import evaluate

    folder, manifests = setup
    common = ["--model", str(folder / "graft"), "--data", str(manifests["devtest"]), "--max_new_tokens", "3",
              "--batch_size", "3"]  # fmt: skip
    whole = evaluate.main([*common, "--output", str(tmp_path / "whole")])
    streamed = evaluate.main([*common, "--output", str(tmp_path / "streamed"), "--streaming"])
    assert streamed == whole and whole["num_clips"] == 4
    lines = [(tmp_path / name / "predictions.jsonl").read_text() for name in ("whole", "streamed")]
    assert lines[0] == lines[1]
    assert json.loads((tmp_path / "whole" / "results.json").read_text())["num_beams"] == 1  # the tiny graft: greedy


def _graft_decoding(graft: Path, copy: Path, **settings) -> Path:
    """A copy of `graft` whose generation config has `settings` written over it."""
    shutil.copytree(graft, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, **settings}))
    return copy


def _spy_on_transcribe(monkeypatch, key: str) -> list:
    """The `key` argument of each `transcripts.transcribe` call, in order (the calls still run)."""
    from train.evaluation import transcripts

    seen, transcribe = [], transcripts.transcribe
    monkeypatch.setattr(transcripts, "transcribe", lambda *a, **k: seen.append(k[key]) or transcribe(*a, **k))
    return seen


def test_evaluate_decodes_with_the_models_beam_width_unless_told(setup, tmp_path, monkeypatch):
    from train import evaluate

    folder, manifests = setup
    graft = _graft_decoding(folder / "graft", tmp_path / "graft", num_beams=3)
    seen = _spy_on_transcribe(monkeypatch, "num_beams")
    common = ["--model", str(graft), "--data", str(manifests["devtest"]), "--max_new_tokens", "2", "--batch_size", "4"]
    evaluate.main([*common, "--output", str(tmp_path / "model")])
    evaluate.main([*common, "--output", str(tmp_path / "told"), "--num_beams", "2"])
    assert seen == [3, 2]
    assert [json.loads((tmp_path / name / "results.json").read_text())["num_beams"] for name in ("model", "told")] == [3, 2]


def test_training_clock_continues_from_the_checkpoints_count(tmp_path):
    from train.stages.clock import TrainingClock, training_parts

    checkpoint = tmp_path / "checkpoint-200"
    checkpoint.mkdir()
    (checkpoint / "training_clock.json").write_text('{"seconds": 1234.5, "step": 200, "parts": 2}\n')
    clock = TrainingClock()
    assert clock.resume_from(str(checkpoint)) == 1234.5 and clock.seconds() == 1234.5
    assert TrainingClock().resume_from(None) == 0.0 and TrainingClock().resume_from(str(tmp_path)) == 0.0
    clock.on_train_begin(None, None, None)
    assert 1234.5 <= clock.seconds() < 1240
    clock._write(tmp_path / "out", 300)
    assert json.loads((tmp_path / "out" / "training_clock.json").read_text())["parts"] == 3
    # a checkpoint from a clock that did not count its parts: at least one part came before
    (checkpoint / "training_clock.json").write_text('{"seconds": 1234.5, "step": 200}\n')
    older = TrainingClock()
    older.resume_from(str(checkpoint))
    older._write(tmp_path / "older", 300)
    assert training_parts(tmp_path / "older") == 2 and training_parts(tmp_path) is None


@pytest.mark.parametrize("engine", ["fsdp2", "zero3"])
def test_stage2_sharded_on_two_processes_equals_one_process(setup, tmp_path, engine):
    # accelerate 1.15 turns FSDP and DeepSpeed on only for accelerator devices, so bench.sharded_cpu
    # drives the engines itself (FSDP2's fully_shard, what accelerate's fsdp_version 2 wraps; DeepSpeed
    # ZeRO-3): 2 steps of stage 2 on 2 gloo processes, each holding half of every weight, against one
    # unsharded process on the same slices of the same clips.
    from bench import sharded_cpu

    folder, manifests = setup
    common = ["--graft", str(folder / "graft"), "--data", str(manifests["train"])]
    one = sharded_cpu.main([*common, "--out", str(tmp_path / "one")])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "bench.sharded_cpu",
               "--engine", engine, *common, "--out", str(tmp_path / "two")]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = json.loads((tmp_path / "two" / "steps.json").read_text())
    assert (steps["engine"], steps["world_size"], steps["sharded_parameters"]) == (engine, 2, steps["parameters"])
    assert steps["local_share"] == pytest.approx(0.5, abs=0.01)  # ZeRO-3 pads each partition a little
    assert steps["losses"] == pytest.approx(one, rel=1e-5) and one[1] < one[0]
    expected, got = _trained_adapters(tmp_path / "one", tmp_path / "two")
    assert any(".audio_projector." in key for key in got)
    # Gradients summed in another order differ in the last bits, and Adam's step g / (|g| + eps) turns that
    # into up to a few percent of the learning rate (0.01) where |g| is near eps: 5% of it is the bound.
    # A process's slice left out or counted twice moves most weights by up to twice the learning rate.
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=5e-4)
    _assert_same_logits(folder / "graft", tmp_path / "one", tmp_path / "two", rtol=0, atol=5e-3)


def test_sharded_check_refuses_a_batch_that_does_not_split(setup, capsys):
    from bench import sharded_cpu

    folder, manifests = setup
    with pytest.raises(SystemExit):
        sharded_cpu.main(["--graft", str(folder / "graft"), "--data", str(manifests["train"]), "--out", "x", "--batch_size", "3"])
    assert capsys.readouterr().err.endswith("error: --batch_size 3 does not split into slices of 2 over 1 processes\n")
