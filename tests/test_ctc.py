"""Stage 1's CTC objective on the tiny graft: what trains and is saved, stage 2 loading it, the encoder
cache giving the same steps, and the head learning the toy words from their tones. Stage 2's auxiliary
CTC loss: what it adds to the loss, what trains, what is saved and resumed."""

import pytest
import torch
from safetensors.torch import load_file

from train import stage1_align, stage2_qlora
from train.stage1_align import freeze_all_but_projector
from train.building import toy_audio
from train.building.tiny import build_tiny
from train.stages.ctc import (
    AUXILIARY_HEAD_FILE, AuxiliaryCTC, CTCHead, alignment_vocabulary, auxiliary_ctc, ctc_alignment, ctc_loss,
    training_texts,
)
from train.stages.data import JoinedClips, SpeechCollator, SpeechDataset, load_rows
from train.weights.loading import load_graft, load_projector

from tests.test_training import _common

PROJECTOR_KEYS = {"model.audio_projector.linear_1.weight", "model.audio_projector.linear_1.bias",
                  "model.audio_projector.norm.weight"}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctc")
    build_tiny(folder / "graft", encode_padding=False)
    manifests = toy_audio.make_toy_audio(folder / "audio", train=8, devtest=4, words=4, max_words=2)
    return folder, manifests


def _ctc_args(folder, manifests, output, steps, extra=()):
    """test_training's stage arguments, batches of 4, under CTC."""
    args = _common(folder, manifests, output, steps, ["--alignment_objective", "ctc", *extra])
    args[args.index("--per_device_train_batch_size") + 1] = "4"
    return args


def test_ctc_trains_the_projector_and_head_only_and_stage2_loads_the_projector(setup, tmp_path):
    folder, manifests = setup
    # checkpointing as stage1_7b.yaml asks for it: under CTC no LLM layer runs, so it is turned off
    trainer = stage1_align.main(_ctc_args(folder, manifests, tmp_path / "ctc", 2, ["--activation_checkpointing", "true"]))
    assert trainer.state.global_step == 2 and trainer.args.activation_checkpointing is False
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)
    before, _ = load_graft(folder / "graft")
    after = trainer.model.state_dict()  # the CTCAlignment: the graft's inner model as `model`, the head
    changed = {k for k, v in before.state_dict().items() if k in after and not torch.equal(v, after[k])}
    assert changed == PROJECTOR_KEYS
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained == PROJECTOR_KEYS | {"ctc_head.blank", "ctc_head.log_scale"}
    saved = load_file(str(tmp_path / "ctc" / "model.safetensors"))
    assert set(saved) == trained
    fresh, _ = load_graft(folder / "graft")
    load_projector(fresh, tmp_path / "ctc")  # stage 2's projector_path: the head is left out
    assert torch.equal(fresh.model.audio_projector.linear_1.weight, saved["model.audio_projector.linear_1.weight"])


def test_the_encoder_cache_gives_the_same_ctc_steps(setup, tmp_path):
    folder, manifests = setup
    plain = stage1_align.main(_ctc_args(folder, manifests, tmp_path / "plain", 2))
    cached = stage1_align.main(_ctc_args(folder, manifests, tmp_path / "cached", 2,
                                         ["--encoder_cache_dir", str(tmp_path / "cache")]))  # fmt: skip
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (plain, cached)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert torch.allclose(plain.model.ctc_head.blank, cached.model.ctc_head.blank, atol=1e-6)


def test_an_unknown_objective_is_refused(setup, tmp_path):
    folder, manifests = setup
    args = _ctc_args(folder, manifests, tmp_path / "bad", 1)
    args[args.index("ctc")] = "mse"
    with pytest.raises(ValueError, match=r"^alignment_objective must be one of \('lm', 'ctc'\), got 'mse'$"):
        stage1_align.main(args)


def test_the_head_scores_tokens_against_their_embeddings_and_decodes_greedily():
    embeddings = torch.eye(6)[:, :4] * 0.5  # 6 LLM tokens, hidden 4; tokens 4 and 5 are zero rows
    head = CTCHead(embeddings, torch.tensor([1, 2, 3]))
    assert head.blank_index == 3 and head.lookup.tolist() == [-1, 0, 1, 2, -1, -1]
    logits = head(torch.eye(4)[[1, 1, 2, 0, 3, 3]])  # audio tokens pointing at tokens 1, 1, 2, then elsewhere
    assert logits.shape == (6, 4)
    assert logits[:3].argmax(-1).tolist() == [0, 0, 1]
    greedy = torch.tensor([[5.0, 0, 0, 0], [5, 0, 0, 0], [0, 0, 0, 5], [5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 0, 5]])
    assert head.greedy_token_ids(greedy) == [1, 1, 2]  # repeats merged unless a blank stands between
    labels = torch.tensor([[-100, 1, 2, 9, 4], [-100, -100, 3, 9, -100]])
    targets, outside = head.targets(labels, end_token_id=9)
    assert [t.tolist() for t in targets] == [[0, 1], [2]] and outside == 1  # token 4 has no class


def test_the_training_texts_are_read_through_joined_clips(setup):
    _, manifests = setup
    clips = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    texts = [clips[i]["text"] for i in range(len(clips))]
    assert training_texts(clips) == texts
    assert training_texts(JoinedClips(clips, probability=0.5, max_clips=2, max_seconds=30)) == texts


def test_the_vocabulary_holds_the_answers_tokens_alone_and_after_a_space(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    ids = alignment_vocabulary(tokenizer, ["alpha bravo"]).tolist()
    expected = set(tokenizer("alpha bravo", add_special_tokens=False)["input_ids"])
    expected |= set(tokenizer(" alpha bravo", add_special_tokens=False)["input_ids"])
    assert ids == sorted(expected)


def test_ctc_alone_teaches_the_projector_which_tone_is_which_letter(tmp_path, monkeypatch):
    # One single-letter word a clip (the tiny tokenizer spells by character), each letter its own 1 s tone:
    # the greedy CTC transcript can only be right where the audio tokens carry which tone sounded. The
    # encoder runs once, as with encoder_cache_dir; full-batch Adam steps on the projector and the head.
    monkeypatch.setattr(toy_audio, "WORDS", list("abcdefghijklmnop"))
    monkeypatch.setattr(toy_audio, "WORD_SECONDS", 1.0)
    build_tiny(tmp_path / "graft", audio_downsample=4, encode_padding=False)
    manifests = toy_audio.make_toy_audio(tmp_path / "audio", train=48, devtest=12, words=6, max_words=1)
    model, processor = load_graft(tmp_path / "graft")
    freeze_all_but_projector(model)
    dataset = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    aligned = ctc_alignment(model, processor, dataset)
    batch = SpeechCollator(processor, ".")([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():  # (clips, frames of the longest clip, d_model), as the cache stores them
        states = model.model.encode_audio(batch.pop("input_features"), batch["input_features_mask"])
        batch["audio_encoder_states"] = states[:, : max(model.model.encoder_frames_needed(batch["input_features_mask"]))]
    texts = [dataset[i]["text"] for i in range(len(dataset))]

    def spelt() -> float:
        with torch.no_grad():
            logits, counts = aligned.audio_logits(batch["input_ids"], None, batch["input_features_mask"],
                                                  batch["audio_encoder_states"])  # fmt: skip
        hypotheses = [processor.tokenizer.decode(aligned.ctc_head.greedy_token_ids(x)) for x in logits.split(counts)]
        return sum(h == t for h, t in zip(hypotheses, texts)) / len(texts)

    untrained = spelt()
    optimizer = torch.optim.Adam([p for p in aligned.parameters() if p.requires_grad], lr=0.03)
    for _ in range(400):
        loss = aligned(**batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert untrained < 0.6 and loss.item() < 0.1
    assert spelt() == 1.0


def test_the_auxiliary_loss_adds_its_weight_times_the_ctc_loss_in_training_only(setup):
    folder, manifests = setup
    model, processor = load_graft(folder / "graft")
    dataset = SpeechDataset(load_rows(str(manifests["train"])), max_seconds=120)
    batch = SpeechCollator(processor)([dataset[i] for i in range(3)])
    model.train()
    with torch.no_grad():
        plain = model(**batch).loss
        answer_only = model.answer_loss(**batch).loss
    auxiliary = auxiliary_ctc(model, processor, dataset, weight=0.5)
    with torch.no_grad():
        combined = model(**batch).loss
        tokens = model.get_audio_features(batch["input_features"], batch["input_features_mask"])
        counts = (batch["input_ids"] == model.config.audio_token_id).sum(-1).tolist()
        expected = ctc_loss(auxiliary.head, auxiliary.head(tokens), counts, batch["labels"], auxiliary.end_token_id)
        assert torch.isfinite(expected) and expected > 0
        torch.testing.assert_close(combined, plain + 0.5 * expected)
        torch.testing.assert_close(model.answer_loss(**batch).loss, answer_only)  # evaluation's loss: unchanged
        model.eval()
        torch.testing.assert_close(model(**batch).loss, plain)
    assert auxiliary.take_mean_loss() == pytest.approx(expected.item()) and auxiliary.take_mean_loss() is None
    assert {n for n, _ in model.named_parameters() if n.startswith("ctc_auxiliary.")} == {
        "ctc_auxiliary.head.blank", "ctc_auxiliary.head.log_scale"}
    with pytest.raises(ValueError, match=r"^ctc_weight must be positive to add a CTC loss, got 0\.0$"):
        AuxiliaryCTC(auxiliary.head, auxiliary.end_token_id, 0.0)


def test_stage2_with_the_auxiliary_loss_trains_its_head_saves_the_adapter_alone_and_resumes(setup, tmp_path):
    folder, manifests = setup
    output = tmp_path / "aux"
    args = _common(folder, manifests, output, 2, ["--lora_r", "4", "--ctc_weight", "0.3", "--save_steps", "1",
                                                  "--resume", "true"])  # fmt: skip
    trainer = stage2_qlora.main(args)
    logged = [e["train_ctc_loss"] for e in trainer.state.log_history if "train_ctc_loss" in e]
    assert len(logged) == 2 and all(0 < loss < 100 for loss in logged)
    head = trainer.model.ctc_auxiliary.head
    assert head.blank.requires_grad and not torch.equal(head.blank, head.embeddings.mean(0))  # it trained
    saved = load_file(str(output / "adapter_model.safetensors"))
    assert saved and not any("ctc" in key for key in saved)
    kept = load_file(str(output / "checkpoint-2" / AUXILIARY_HEAD_FILE))
    assert set(kept) == {"blank", "log_scale"} and torch.equal(kept["blank"], head.blank.detach())
    args[args.index("--max_steps") + 1] = "3"
    args[args.index("--learning_rate") + 1] = "0"  # the resumed step changes nothing: the head is the kept one
    resumed = stage2_qlora.main(args)
    assert resumed.state.global_step == 3
    assert torch.equal(resumed.model.ctc_auxiliary.head.blank.detach(), kept["blank"])
    assert torch.equal(resumed.model.ctc_auxiliary.head.log_scale.detach(), kept["log_scale"])
