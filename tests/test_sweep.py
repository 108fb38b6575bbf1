"""The configuration sweep: configuration names, commands, the listening figures and the choice rule."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import sweep


def _row(k, projector, wer, encode_padding=True):
    return {"audio_downsample": k, "projector_type": projector, "encode_padding": encode_padding,
            "audio_tokens_per_second": 50 / k, "wer": wer}


def _args(tmp_path, steps=300, **more):
    return SimpleNamespace(out=tmp_path, corpus=Path("build/corpus"), steps=steps, eval_batch_size=8,
                           eval_dtype="bfloat16", stage_config=Path("train/configs/mini_stage2.yaml"),
                           stage1_config=Path("train/configs/mini_stage1.yaml"), stage_overrides="", **more)


def test_choice_takes_the_fewest_tokens_within_tolerance_then_real_frames():
    rows = [_row(1, "linear", 0.20), _row(2, "linear", 0.21), _row(4, "linear", 0.23), _row(4, "mlp", 0.30)]
    assert sweep.choose(rows, tolerance=0.1)["audio_downsample"] == 2  # 0.23 is over 0.20 * 1.1
    assert sweep.choose(rows, tolerance=0.2)["audio_downsample"] == 4
    rows.append(_row(4, "linear", 0.22, encode_padding=False))
    chosen = sweep.choose(rows, tolerance=0.2)
    assert (chosen["audio_downsample"], chosen["encode_padding"]) == (4, False)


def test_run_names_folders_and_the_joint_command(tmp_path):
    args = _args(tmp_path, steps=600)
    args.stage_overrides = "--learning_rate 5e-4"
    run = sweep.Run("4:linear:real", args)
    assert (run.name, run.base, run.encode_padding) == ("k4-linear-real", Path("build/mini-base-k4-linear-real"), False)
    assert run.build_command()[-1] == "--no_encode_padding" and "--projector_gain" not in run.build_command()
    (command,) = run.train_commands()
    assert command[2] == "train.stage2_qlora" and "--projector_path" not in command
    assert command[command.index("--output_dir") + 1] == str(tmp_path / "k4-linear-real")
    assert command[command.index("--max_steps") + 1] == "600" and command[command.index("--eval_steps") + 1] == "200"
    assert command[-2:] == ["--learning_rate", "5e-4"]
    assert sweep.Run("2:mlp", args).name == "k2-mlp"


def test_gain_and_staged_configurations(tmp_path):
    gain = sweep.Run("4:linear:real:gain=embedding", _args(tmp_path))
    assert gain.name == "k4-linear-real-gain-embedding" and gain.base == Path("build/mini-base-k4-linear-real-gain-embedding")
    build = gain.build_command()
    assert build[build.index("--projector_gain") + 1] == "embedding"
    staged = sweep.Run("4:linear:real:staged=100", _args(tmp_path))
    assert staged.base == Path("build/mini-base-k4-linear-real")  # the same graft as the joint run
    first, second = staged.train_commands()
    assert first[2] == "train.stage1_align" and first[first.index("--max_steps") + 1] == "100"
    assert second[2] == "train.stage2_qlora" and second[second.index("--max_steps") + 1] == "200"
    assert second[second.index("--projector_path") + 1] == str(tmp_path / "k4-linear-real-staged-100-stage1")


@pytest.mark.parametrize("spec", ["4", "4:conv", "x:linear", "4:linear:padded", "4:linear:real:x", "4:linear:gain=",
                                  "4:linear:staged=a"])
def test_bad_configuration_specs_are_refused(spec, tmp_path):
    with pytest.raises(ValueError) as info:
        sweep.Run(spec, _args(tmp_path))
    assert str(info.value) == f"a configuration is downsample:linear|mlp[:real][:gain=G][:staged=S], got {spec!r}"


def test_the_last_listening_check_and_loss_come_from_the_last_checkpoint(tmp_path, capsys):
    run = sweep.Run("2:linear", _args(tmp_path, steps=40))
    assert run.last_check() == {}
    for step, losses in ((5, [5.0, 4.0]), (40, [5.0, 4.0, 3.0, 2.0, 1.0])):
        folder = run.output / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        history = [{"loss": loss, "step": 10 * (i + 1)} for i, loss in enumerate(losses)]
        history.append({"step": step, "eval_loss_own_audio": 1.5, "eval_loss_zeroed_audio": 4.5,
                        "eval_loss_shuffled_audio": 5.0, "eval_wer": 0.4})
        (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert run.last_check() == {"final_train_loss": 2.0, "eval_loss_own_audio": 1.5, "eval_loss_zeroed_audio": 4.5,
                                "eval_loss_shuffled_audio": 5.0}  # checkpoint-40 (not -5), mean of 3.0, 2.0, 1.0
    row = {**_row(2, "linear", 0.5), "name": "k2-linear", "steps": 40, "train_seconds": 12, **run.last_check(),
           "cer": 0.25, "wer_by_voice": {"cards": 0.5}}
    sweep.table([row])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "| k2-linear | 25 | 40 | 12 | 2.000 | 1.50 / 4.50 / 5.00 | 50.0% | 25.0% | cards 50.0% |"
    )


def test_a_cut_off_sweep_resumes_past_runs_trained_and_scored(tmp_path):
    run = sweep.Run("4:mlp:real", _args(tmp_path, steps=40))
    run.seconds = 99.6
    assert not run.finished() and run.train_seconds() == 99.6  # no trainer metrics: the sweep's own clock
    (run.output / "checkpoint-40").mkdir(parents=True)
    assert not run.finished()  # trained but not scored
    (run.output / "eval").mkdir()
    (run.output / "eval" / "results.json").write_text("{}")
    assert run.finished()
    assert not sweep.Run("4:mlp:real", _args(tmp_path, steps=60)).finished()  # other step count
    (run.output / "train_results.json").write_text(json.dumps({"train_runtime": 564.6, "epoch": 0.1}))
    assert run.train_seconds() == 564.6
    staged = sweep.Run("4:mlp:real:staged=10", _args(tmp_path, steps=40))
    (staged.output / "checkpoint-30").mkdir(parents=True)
    (staged.output / "eval").mkdir()
    (staged.output / "eval" / "results.json").write_text("{}")
    assert staged.finished()  # stage 2 ran the 30 steps after stage 1's 10


def test_build_only_builds_the_missing_grafts_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "base_folder", lambda name: tmp_path / f"mini-base-{name}")
    issued = []
    monkeypatch.setattr(sweep, "side_by_side", lambda jobs, what, parallel: issued.extend((what, c) for _, c in jobs))
    assert sweep.main(["--configs", "4:linear:real", "4:linear:real:staged=50", "--build_only",
                       "--out", str(tmp_path / "sweep")]) is None  # fmt: skip
    assert [what for what, _ in issued] == ["building the graft"]  # staged=50 shares the graft: built once
    command = issued[0][1]
    assert command[command.index("--output") + 1] == str(tmp_path / "mini-base-k4-linear-real")
    assert command[command.index("--audio_downsample") + 1] == "4" and command[-1] == "--no_encode_padding"
    assert not (tmp_path / "sweep").exists()
    assert capsys.readouterr().out == f"built 1 graft(s): {tmp_path / 'mini-base-k4-linear-real'}\n"
    (tmp_path / "mini-base-k4-linear-real").mkdir()
    (tmp_path / "mini-base-k4-linear-real" / "config.json").write_text("{}")
    issued.clear()
    sweep.main(["--configs", "4:linear:real", "--build_only", "--out", str(tmp_path / "sweep")])
    assert issued == [] and capsys.readouterr().out == "every graft already built\n"
