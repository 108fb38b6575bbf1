"""Metrics, model card, upload allow-list, YAML config with flag overrides and training plot: CPU only, no downloads.

Run: .venv/bin/python -m pytest tests/test_train_utils.py -q
"""

import ast
import json
import re

import pytest
import torch
from huggingface_hub import ModelCard

from train.stages.args import DataArguments, RecipeArguments, parse_config
from train.card import build_model_card
from train.card import main as card_main
from train.evaluation.metrics import clip_records, compute_metrics, normalize, wer_by_group, write_jsonl
from train.stages import plots
from train.stages.plots import plot_training
from train.push import FakeHfApi, check_upload, files_to_upload, push, verify
from train.push import main as push_main

# Normalised: "the cat sat on the mat" / "please open the door" / "good morning" (6 + 4 + 2 = 12 words).
REFERENCES = ["The cat sat on the mat.", "Please open the door", "Good morning!"]
HYPOTHESES = ["the cat sit on mat", "please close the door", "good morning"]


def test_normalize_drops_case_and_punctuation():
    assert normalize("Hello, World!") == "hello world"
    assert normalize("Hello, World!") == normalize("hello world")


def test_compute_metrics_matches_hand_counts():
    metrics = compute_metrics(REFERENCES, HYPOTHESES)
    # Words: clip 0 has sat->sit (1 S) and a dropped "the" (1 D); clip 1 open->close (1 S); clip 2 exact.
    # WER = (2 S + 1 D + 0 I) / 12 reference words = 0.25.
    assert metrics["wer"] == pytest.approx(0.25)
    assert (metrics["substitutions"], metrics["deletions"], metrics["insertions"]) == (2, 1, 0)
    assert metrics["reference_words"] == 12
    # Characters (spaces count): clip 0 = 1 S (a->i) + 4 D ("the ") = 5 of 22; clip 1 "open"->"close"
    # = 2 I (c, l) + 1 S (p->s) + 1 D (n) = 4 of 20; clip 2 = 0 of 12. CER = 9 / 54 = 1/6.
    assert metrics["cer"] == pytest.approx(9 / 54)
    # Only clip 2 is equal after normalisation: 1 of 3.
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["num_clips"] == 3


def test_compute_metrics_counts_normalised_equal_texts_as_exact():
    metrics = compute_metrics(["Hello, World!"], ["hello world"])
    assert metrics["wer"] == 0.0
    assert metrics["exact_match"] == 1.0


def test_compute_metrics_names_the_clip_whose_reference_is_empty():
    with pytest.raises(ValueError) as error:
        compute_metrics(["fine", "[noise]"], ["fine", "noise"])
    assert str(error.value) == "reference of clip 1 normalises to empty text (raw: '[noise]')"


def test_compute_metrics_rejects_unequal_lengths():
    with pytest.raises(ValueError) as error:
        compute_metrics(["a b"], ["a b", "c"])
    assert str(error.value) == "expected as many hypotheses as references, got 1 references and 2 hypotheses"


def test_wer_by_group_scores_each_group_and_all():
    groups = ["slt", "kal", "slt"]
    refs = ["the cat sat", "a dog", "on the mat"]
    hyps = ["the cat sat", "a frog barked", "on mat"]
    # kal: 1 substitution + 1 insertion over 2 words; slt: 1 deletion over 6; all: 3 edits over 8
    assert wer_by_group(groups, refs, hyps) == {"kal": 1.0, "slt": 1 / 6, "all": 3 / 8}
    with pytest.raises(ValueError) as info:
        wer_by_group(["slt"], refs, hyps)
    assert str(info.value) == "expected one group per clip, got 1 groups for 3 clips"


def test_write_jsonl_round_trips_clip_records(tmp_path):
    path = tmp_path / "clips.jsonl"
    write_jsonl(path, clip_records(["a", "b", "c"], REFERENCES, HYPOTHESES))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    # Clip 0: 2 errors over 6 words; clip 1: 1 over 4; clip 2: none.
    assert [row["wer"] for row in rows] == pytest.approx([2 / 6, 1 / 4, 0.0])
    assert rows[0]["reference_normalized"] == "the cat sat on the mat"
    assert set(rows[0]) == {"id", "reference", "hypothesis", "reference_normalized", "hypothesis_normalized", "wer"}


RESULT = {"dataset_name": "LibriVox clips", "dataset_type": "librivox-test", "split": "test",
          "wer": 0.0312, "cer": 0.0101, "num_clips": 3}


def _card(tmp_path):
    card = build_model_card([RESULT], repo_id="org/whisper-qwen2vl-asr",
                            base_models=["openai/whisper-base", "Qwen/Qwen2-VL-2B-Instruct"],
                            datasets=["org/tts-speech"], widget_audio=("samples/clip1.wav",))
    path = tmp_path / "README.md"
    card.save(path)
    return ModelCard.load(path)


def test_card_metadata_parses_back(tmp_path):
    data = _card(tmp_path).data.to_dict()
    assert data["pipeline_tag"] == "automatic-speech-recognition"
    assert data["library_name"] == "transformers"
    assert data["base_model"] == ["openai/whisper-base", "Qwen/Qwen2-VL-2B-Instruct"]
    assert data["widget"] == [{"src": "samples/clip1.wav", "example_title": "clip1"}]
    result = data["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "LibriVox clips", "type": "librivox-test", "split": "test"}
    # Stored in percent: 0.0312 -> 3.12.
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"wer": 3.12, "cer": 1.01}


def test_card_body_has_table_and_python_snippets_that_parse(tmp_path):
    text = _card(tmp_path).text
    assert "| LibriVox clips | test | 3 | 3.12 | 1.01 |" in text
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(snippets) == 2
    for snippet in snippets:
        ast.parse(snippet)
    assert 'pipeline("automatic-speech-recognition", model="org/whisper-qwen2vl-asr", trust_remote_code=True)' in text


def test_card_cli_copies_widget_audio(tmp_path):
    (tmp_path / "clip1.wav").write_bytes(b"RIFF")
    (tmp_path / "results.json").write_text(json.dumps(RESULT))
    out = tmp_path / "model" / "README.md"
    card_main(["--results", str(tmp_path / "results.json"), "--repo_id", "org/asr", "--base_model", "a/b",
               "--output", str(out), "--widget_audio", str(tmp_path / "clip1.wav")])
    assert (tmp_path / "model" / "samples" / "clip1.wav").read_bytes() == b"RIFF"
    assert ModelCard.load(out).data.to_dict()["widget"][0]["src"] == "samples/clip1.wav"


ALLOWED = sorted([
    "README.md", "added_tokens.json", "chat_template.jinja", "chat_template.json", "config.json",
    "configuration_asr.py", "generation_config.json", "merges.txt", "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors", "model.safetensors.index.json", "modeling_asr.py", "pipeline_asr.py",
    "preprocessor_config.json", "processing_asr.py", "processor_config.json", "samples/clip1.wav",
    "samples/take[2].wav",  # a glob character: its pattern must match only itself
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
])
FORBIDDEN = [
    ".env", ".gitattributes", ".git/config", ".cache/huggingface/token", "hf_token", "token.txt", "my_token.py",
    "checkpoint-10/model.safetensors", "checkpoint-10/optimizer.pt", "optimizer.pt", "scheduler.pt",
    "rng_state.pth", "rng_state_0.pth", "trainer_state.json", "training_args.bin", "pytorch_model.bin",
    "model.pt", "weights.pth", "sub/modeling_extra.py", "samples/notes.txt", "samples/nested/clip.wav",
]
CONFIG = {
    "auto_map": {"AutoConfig": "configuration_asr.AsrConfig", "AutoModel": "modeling_asr.AsrForConditionalGeneration"},
    "custom_pipelines": {"automatic-speech-recognition": {"impl": "pipeline_asr.AsrPipeline", "pt": ["AutoModel"]}},
}
INDEX = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    for name in ALLOWED + FORBIDDEN:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}" if name.endswith(".json") else "x")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.safetensors.index.json").write_text(json.dumps(INDEX))
    (folder / "processor_config.json").write_text(json.dumps({"auto_map": {"AutoProcessor": "processing_asr.P"}}))
    # A link could point anywhere, e.g. at a token file outside the folder.
    (tmp_path / "outside.txt").write_text("secret")
    (folder / "linked.safetensors").symlink_to(tmp_path / "outside.txt")
    return folder


def test_files_to_upload_is_exactly_the_allow_list(model_dir):
    assert files_to_upload(model_dir) == ALLOWED


def test_push_commits_exactly_the_allow_list(model_dir, tmp_path):
    api = FakeHfApi(tmp_path / "record.json")
    assert push(model_dir, "org/asr", api=api, private=True) == ALLOWED
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["repos"] == [{"repo_id": "org/asr", "private": True, "exist_ok": True}]
    assert [commit["paths"] for commit in record["commits"]] == [ALLOWED]
    assert api.uploaded_paths == ALLOWED


def test_push_refuses_a_folder_without_weights(model_dir):
    for name in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]:
        (model_dir / name).unlink()
    api = FakeHfApi()
    with pytest.raises(ValueError) as error:
        push(model_dir, "org/asr", api=api)
    assert str(error.value) == (f"{model_dir} has no weights: expected model.safetensors or its shards "
                                f"at the top level, got no *.safetensors file")
    assert api.record == {"repos": [], "commits": []}


def test_push_refuses_missing_config(model_dir):
    (model_dir / "config.json").unlink()
    with pytest.raises(ValueError) as error:
        check_upload(model_dir, files_to_upload(model_dir))
    assert str(error.value) == f"{model_dir} has no config.json; expected the saved model's config at the top level"


@pytest.mark.parametrize("missing, config_name", [("modeling_asr.py", "config.json"),
                                                  ("pipeline_asr.py", "config.json"),
                                                  ("processing_asr.py", "processor_config.json")])
def test_push_refuses_missing_remote_code(model_dir, missing, config_name):
    (model_dir / missing).unlink()
    with pytest.raises(ValueError) as error:
        check_upload(model_dir, files_to_upload(model_dir))
    assert str(error.value) == (f"{config_name} refers to {missing} (auto_map or custom_pipelines), "
                                f"but {model_dir} has no {missing} to upload")


def test_push_refuses_missing_shard(model_dir):
    (model_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ValueError) as error:
        check_upload(model_dir, files_to_upload(model_dir))
    assert str(error.value) == (f"model.safetensors.index.json lists model-00002-of-00002.safetensors, "
                                f"but {model_dir} has no model-00002-of-00002.safetensors to upload")


@pytest.fixture(scope="module")
def tiny_graft(tmp_path_factory):
    """The project's few-MB random graft with a card and one sample: a real remote-code folder, built offline."""
    import numpy as np
    import soundfile

    from train.building.tiny import build_tiny

    root = tmp_path_factory.mktemp("graft")
    folder = root / "tiny-graft"
    build_tiny(folder)
    soundfile.write(root / "clip1.wav", 0.1 * np.sin(np.arange(24000) / 7.0), 16000)
    (root / "results.json").write_text(json.dumps(RESULT))
    card_main(["--results", str(root / "results.json"), "--repo_id", "org/tiny-graft", "--base_model", "a/b",
               "--output", str(folder / "README.md"), "--widget_audio", str(root / "clip1.wav")])
    (folder / ".env").write_text("HF_TOKEN=secret")
    return folder


def test_push_cli_records_upload_and_verifies_local_folder(tiny_graft, tmp_path, capsys):
    record = tmp_path / "push.json"
    push_main(["--folder", str(tiny_graft), "--repo_id", "org/tiny-graft", "--fake_api_record", str(record),
               "--verify"])
    uploaded = json.loads(record.read_text())["commits"][0]["paths"]
    assert {"README.md", "config.json", "model.safetensors", "samples/clip1.wav"} <= set(uploaded)
    assert ".env" not in uploaded
    verified = re.search(rf"verify {re.escape(str(tiny_graft))} on samples/clip1.wav: '.*' \((\d+) forward passes\)",
                         capsys.readouterr().out)
    assert verified and int(verified.group(1)) >= 1  # the reloaded model generated, not just loaded


def test_verify_refuses_a_sample_the_model_was_not_run_on(tiny_graft, tmp_path):
    import numpy as np
    import soundfile

    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(RuntimeError, match=rf"^--verify: the model was not run on {re.escape(str(silent))} \(silent\?\): "
                                           "nothing was checked$"):  # fmt: skip
        verify(str(tiny_graft), silent)


def test_card_snippets_run_against_the_tiny_graft(tiny_graft):
    text = ModelCard.load(tiny_graft / "README.md").text
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL))
    # Offline stand-ins for the Hub: the local folder for the repo id, the local sample for the download.
    sample = repr(str(tiny_graft / "samples" / "clip1.wav"))
    code = code.replace('hf_hub_download("org/tiny-graft", "samples/clip1.wav")', sample)
    code = code.replace('"org/tiny-graft"', repr(str(tiny_graft)))
    assert "org/tiny-graft" not in code
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace["new_tokens"], torch.Tensor) and namespace["new_tokens"].shape[0] == 1


def test_plot_training_writes_png(tmp_path):
    history = [{"loss": 2.0 - step / 10, "step": step} for step in range(1, 11)]
    history += [{"eval_loss": 1.5, "eval_wer": 0.4, "step": 5}, {"eval_loss": 1.2, "eval_wer": 0.3, "step": 10},
                {"train_runtime": 1.0, "train_loss": 1.5, "step": 10}]
    out = plot_training(history, tmp_path / "plots" / "loss.png", "stage 1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 1000


def test_plot_training_rejects_history_without_loss(tmp_path):
    with pytest.raises(ValueError) as error:
        plot_training([{"train_runtime": 1.0}], tmp_path / "loss.png", "t")
    assert str(error.value) == ("expected log_history entries with 'step' and 'loss' or 'eval_loss', "
                                "got none among 1 entries")


def test_config_file_supplies_defaults_and_flags_win(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("train_data: a.jsonl\nmax_eval_samples: 8\nprecision: float32\neval_wer: false\n"
                      "projector_learning_rate: 1e-3\n")  # fmt: skip
    flags = ["--max_eval_samples", "4", "--config", str(config), "--precision", "bfloat16"]
    recipe, data = parse_config((RecipeArguments, DataArguments), flags)
    assert data.train_data == "a.jsonl"  # a required field the file gives
    assert (data.max_eval_samples, recipe.precision) == (4, "bfloat16")  # flags win, before or after --config
    assert data.eval_wer is False and data.text_column == "text"
    assert recipe.projector_learning_rate == 1e-3  # YAML reads "1e-3" as text; the field's type converts it
    recipe, data = parse_config((RecipeArguments, DataArguments), ["--config", str(config)])
    assert (data.max_eval_samples, recipe.precision) == (8, "float32")
    config.write_text("train_data: a.jsonl\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError) as error:
        parse_config((RecipeArguments, DataArguments), ["--config", str(config)])
    assert str(error.value) == ("Unknown arguments from config file: ['--learning_rat', '0.1']. Please remove them, "
                                "add them to the dataclass, or set `fail_with_unknown_args=False`.")


def test_normaliser_uses_whispers_spelling_map():
    from train.evaluation.metrics import compute_metrics, normalize

    assert normalize("The colour of the Centre") == "the color of the center"
    assert compute_metrics(["the color is red"], ["the colour is red"])["wer"] == 0.0


def test_card_says_what_the_scoring_does(tmp_path):
    card = _card(tmp_path).text
    assert "normaliser, with its British-to-American spelling map, before scoring" in card
    # and the scoring does use the map: British spellings count as the American ones
    assert normalize("The colour of our harbour") == "the color of our harbor"
    assert compute_metrics(["the colour"], ["the color"])["wer"] == 0.0


def test_only_whispers_own_argument_notice_is_dropped(caplog):
    import logging

    import train  # noqa: F401  (installs the filter)

    logger = logging.getLogger("transformers.generation.utils")
    head = "Passing `generation_config` together with generation-related arguments=("
    tail = ") is deprecated and will be removed in future versions."
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(head + "{'begin_suppress_tokens', 'suppress_tokens'}" + tail)
        logger.warning(head + "{'suppress_tokens', 'begin_suppress_tokens'}" + tail)
        logger.warning(head + "{'num_beams'}" + tail)
    assert [record.getMessage() for record in caplog.records] == [head + "{'num_beams'}" + tail]


def test_plots_compare_draws_each_runs_listening_check_and_wer_from_trainer_state_or_recipe(tmp_path, capsys):
    fresh = [{"loss": 3.0, "step": 10}, {"eval_loss_own_audio": 4.1, "eval_loss_zeroed_audio": 4.3, "eval_wer": 1.0,
                                          "step": 100}, {"eval_loss_own_audio": 1.1, "eval_loss_zeroed_audio": 4.5,
                                                         "eval_wer": 0.36, "step": 400}]
    kept = [{"step": 550, "eval_loss_own_audio": 0.9, "eval_loss_zeroed_audio": 4.9, "eval_wer": 0.2}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": fresh}))
    (tmp_path / "recipe.json").write_text(json.dumps({"steps": 550, "evaluations": kept}))
    assert plots.comparison_series([("fresh", plots.read_history(tmp_path / "trainer_state.json")),
                                    ("kept", plots.read_history(tmp_path / "recipe.json"))]) == {
        "fresh": {"own": ([100, 400], [4.1, 1.1]), "zeroed": ([100, 400], [4.3, 4.5]), "wer": ([100, 400], [1.0, 0.36])},
        "kept": {"own": ([550], [0.9]), "zeroed": ([550], [4.9]), "wer": ([550], [0.2])}}
    out = tmp_path / "cmp" / "runs.png"
    plots.main([str(out), "--compare", f"fresh={tmp_path / 'trainer_state.json'}", f"kept={tmp_path / 'recipe.json'}"])
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="^expected distinct run labels, got 'a' twice$"):
        plots.comparison_series([("a", fresh), ("a", fresh)])
    with pytest.raises(ValueError, match=r"^expected evaluations with 'eval_wer' in run 'b', got none among 1 entries$"):
        plots.comparison_series([("b", fresh[:1])])
    (tmp_path / "other.json").write_text(json.dumps({"steps": 3}))
    with pytest.raises(ValueError, match=r"^expected a trainer_state.json \('log_history'\) or a recipe.json"):
        plots.read_history(tmp_path / "other.json")
    with pytest.raises(SystemExit):
        plots.main([str(out), "--compare", "no-label"])
    assert "expected LABEL=PATH, got 'no-label'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plots.main([str(out)])
    assert "expected TRAINER_STATE OUT_PNG, got 1 paths" in capsys.readouterr().err
