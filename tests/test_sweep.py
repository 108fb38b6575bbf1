"""The downsample / projector sweep: configuration names, commands and the choice rule."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from mini import sweep


def _row(k, projector, wer, encode_padding=True):
    return {"audio_downsample": k, "projector_type": projector, "encode_padding": encode_padding,
            "audio_tokens_per_second": 50 / k, "wer": wer}


def test_choice_takes_the_fewest_tokens_within_tolerance_then_real_frames():
    rows = [_row(1, "linear", 0.20), _row(2, "linear", 0.21), _row(4, "linear", 0.23), _row(4, "mlp", 0.30)]
    assert sweep.choose(rows, tolerance=0.1)["audio_downsample"] == 2  # 0.23 is over 0.20 * 1.1
    assert sweep.choose(rows, tolerance=0.2)["audio_downsample"] == 4
    rows.append(_row(4, "linear", 0.22, encode_padding=False))
    chosen = sweep.choose(rows, tolerance=0.2)
    assert (chosen["audio_downsample"], chosen["encode_padding"]) == (4, False)


def test_run_names_folders_and_stage1_command(tmp_path):
    args = SimpleNamespace(out=tmp_path, corpus=Path("build/corpus-12k"), steps=600, eval_batch_size=32,
                           eval_dtype="bfloat16", stage1_config=Path("train/configs/mini_stage1_gpu.yaml"),
                           stage1_overrides="--learning_rate 5e-4")
    run = sweep.Run("4:linear:real", args)
    assert (run.name, run.base, run.encode_padding) == ("k4-linear-real", Path("build/mini-base-k4-linear-real"), False)
    assert run.build_command()[-1] == "--no-encode-padding"
    command = run.train_command()
    assert command[command.index("--output_dir") + 1] == str(tmp_path / "k4-linear-real")
    assert command[command.index("--max_steps") + 1] == "600" and command[-2:] == ["--learning_rate", "5e-4"]
    assert sweep.Run("2:mlp", args).name == "k2-mlp"


@pytest.mark.parametrize("spec", ["4", "4:conv", "4:linear:padded", "4:linear:real:x"])
def test_bad_configuration_specs_are_refused(spec, tmp_path):
    args = SimpleNamespace(out=tmp_path)
    with pytest.raises(ValueError) as info:
        sweep.Run(spec, args)
    assert str(info.value) == f"a configuration is downsample:linear|mlp[:real], got {spec!r}"


def test_final_loss_comes_from_the_last_checkpoint_and_the_table_prints_it(tmp_path, capsys):
    import json

    args = SimpleNamespace(out=tmp_path, steps=40)
    run = sweep.Run("2:linear", args)
    assert run.final_loss() is None
    for step, losses in ((5, [5.0, 4.0]), (40, [5.0, 4.0, 3.0, 2.0, 1.0])):
        folder = run.stage1 / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        history = [{"loss": loss, "step": 10 * (i + 1)} for i, loss in enumerate(losses)] + [{"train_runtime": 1.0}]
        (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert run.final_loss() == 2.0  # checkpoint-40, not -5 (the later by name), mean of 3.0, 2.0, 1.0
    row = {**_row(2, "linear", 0.5), "steps": 40, "train_seconds": 12, "final_train_loss": 2.0, "cer": 0.25,
           "wer_by_voice": {"cards": 0.5}}
    sweep.table([row])
    assert capsys.readouterr().out.splitlines()[-1] == "| 2 | linear | 30 s windows | 25 | 40 | 12 | 2.000 | 50.0% | 25.0% | cards 50.0% |"


def test_a_cut_off_sweep_resumes_past_runs_trained_and_scored(tmp_path):
    import json

    args = SimpleNamespace(out=tmp_path, steps=40)
    run = sweep.Run("4:mlp:real", args)
    run.seconds = 99.6
    assert not run.finished() and run.train_seconds() == 99.6  # no trainer metrics: the sweep's own clock
    (run.stage1 / "checkpoint-40").mkdir(parents=True)
    assert not run.finished()  # trained but not scored
    (run.stage1 / "eval").mkdir()
    (run.stage1 / "eval" / "results.json").write_text("{}")
    assert run.finished()
    assert not sweep.Run("4:mlp:real", SimpleNamespace(out=tmp_path, steps=60)).finished()  # other step count
    (run.stage1 / "train_results.json").write_text(json.dumps({"train_runtime": 564.6, "epoch": 0.1}))
    assert run.train_seconds() == 564.6
