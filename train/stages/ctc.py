"""Stage 1's CTC objective: align the projector with the LLM's own input embeddings, without the LLM.

With `alignment_objective: ctc`, stage 1 trains the projector (and a small `CTCHead`) with CTC:
each projected audio token is scored against the frozen input embedding of every word piece of a
fixed vocabulary (the tokens of the training transcripts) plus a learned blank, and CTC sums over
every way the clip's audio tokens can spell its transcript. No LLM layer runs: a step costs the
projector and one matrix product, and with `encoder_cache_dir` the frozen encoder runs once for
the whole run. The projector learns to put each stretch of sound where the LLM already keeps the
word piece said there, which is what stage 2's LLM pass otherwise has to discover alone.

The greedy CTC transcript (best class per audio token, repeats merged, blanks dropped) is a cheap
measure of what the audio tokens carry: `CTCEvaluationCallback` logs its WER as `eval_ctc_wer`.
Stage 1 saves the projector as `model.audio_projector.*` (what stage 2's `projector_path` loads)
and the head as `ctc_head.*` in the same file.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import TrainerCallback

from ..evaluation.metrics import compute_metrics

IGNORE_INDEX = -100
AUXILIARY_HEAD_FILE = "ctc_head.safetensors"


def training_texts(dataset, limit: int | None = None) -> list[str]:
    """The transcripts of `dataset`'s usable rows (of its first `limit` rows when it is streamed)."""
    base = dataset
    while not hasattr(base, "rows"):  # the encoder cache (.dataset) and JoinedClips (.clips) wrap a SpeechDataset
        base = base.dataset if hasattr(base, "dataset") else base.clips
    rows = base.rows
    if hasattr(base, "valid"):
        return list(rows.select(base.valid)["text"])
    streamed = rows.select_columns(["text"])
    return [row["text"] for row in (streamed.take(limit) if limit else streamed)]


def alignment_vocabulary(tokenizer, texts: list[str]) -> torch.Tensor:
    """Sorted ids of every token the answers to `texts` are made of, alone or after a space (joined clips)."""
    ids = set()
    for encoded in tokenizer(texts + [" " + t for t in texts], add_special_tokens=False)["input_ids"]:
        ids.update(encoded)
    return torch.tensor(sorted(ids), dtype=torch.long)


class CTCHead(nn.Module):
    """Logits of audio tokens over a fixed part of the LLM's vocabulary, plus a blank (the last class).

    A class's logit is the audio token's dot product with that token's frozen input embedding, the audio
    token taken at unit RMS and the product scaled by a learned factor (its start makes random logits
    about unit spread); the blank's embedding row is learned, starting at the mean of the others."""

    def __init__(self, input_embeddings: torch.Tensor, token_ids: torch.Tensor):
        super().__init__()
        embeddings = input_embeddings[token_ids].detach().float()  # (classes - 1, hidden)
        self.register_buffer("embeddings", embeddings, persistent=False)
        self.register_buffer("token_ids", token_ids.clone(), persistent=False)
        lookup = torch.full((input_embeddings.shape[0],), -1, dtype=torch.long)
        lookup[token_ids] = torch.arange(len(token_ids))
        self.register_buffer("lookup", lookup, persistent=False)  # LLM token id -> class, -1 outside
        self.blank = nn.Parameter(embeddings.mean(0))
        spread = embeddings.pow(2).mean().sqrt() * embeddings.shape[1] ** 0.5
        self.log_scale = nn.Parameter(-torch.log(spread))

    @property
    def blank_index(self) -> int:
        return len(self.token_ids)

    def forward(self, audio_tokens: torch.Tensor) -> torch.Tensor:
        """`(tokens, hidden)` -> `(tokens, classes)` logits, float32."""
        tokens = audio_tokens.float()
        tokens = tokens * torch.rsqrt(tokens.pow(2).mean(-1, keepdim=True) + 1e-6)
        rows = torch.cat([self.embeddings, self.blank[None]], dim=0)  # (classes, hidden)
        return self.log_scale.exp() * tokens @ rows.T

    def targets(self, labels: torch.Tensor, end_token_id: int) -> tuple[list[torch.Tensor], int]:
        """Per row, the classes of its answer tokens (labels not IGNORE_INDEX, the closing `end_token_id`
        left out), and how many tokens fell outside the head's vocabulary and were left out too."""
        rows, outside = [], 0
        for row in labels:
            answer = row[(row != IGNORE_INDEX) & (row != end_token_id)]
            classes = self.lookup[answer]
            outside += int((classes < 0).sum())
            rows.append(classes[classes >= 0])
        return rows, outside

    def greedy_token_ids(self, logits: torch.Tensor) -> list[int]:
        """The LLM token ids a clip's `(tokens, classes)` logits spell: best class per token, repeats
        merged, blanks dropped."""
        best = torch.unique_consecutive(logits.argmax(-1))
        return self.token_ids[best[best != self.blank_index]].tolist()


def ctc_loss(head: CTCHead, logits: torch.Tensor, counts: list[int], labels: torch.Tensor, end_token_id: int):
    """The batch's mean CTC loss (each row's divided by its target length): `logits` `(audio tokens of every
    row, classes)`, `counts` each row's audio tokens, `labels` the collator's (answers, IGNORE_INDEX elsewhere)."""
    targets, _ = head.targets(labels, end_token_id)
    log_probs = nn.utils.rnn.pad_sequence(F.log_softmax(logits, -1).split(counts))  # (longest, rows, classes)
    return F.ctc_loss(log_probs, torch.cat(targets).to(logits.device), torch.tensor(counts),
                      torch.tensor([len(t) for t in targets]), blank=head.blank_index, zero_infinity=True)  # fmt: skip


class CTCAlignment(nn.Module):
    """The graft's encoder and projector with a `CTCHead` on top: what stage 1 trains under CTC.

    It holds the graft's inner model as `model`, so the projector's weights are named
    `model.audio_projector.*` as in the graft itself, and the head as `ctc_head`."""

    def __init__(self, graft, head: CTCHead, end_token_id: int):
        super().__init__()
        self.model, self.ctc_head, self.config = graft.model, head, graft.config
        self.end_token_id = end_token_id

    def audio_logits(self, input_ids, input_features=None, input_features_mask=None, audio_encoder_states=None):
        """(`(audio tokens of every row, classes)` logits, each row's count of audio tokens)."""
        tokens = self.model.get_audio_features(input_features, input_features_mask, audio_encoder_states)
        counts = (input_ids == self.config.audio_token_id).sum(-1).tolist()  # audio placeholders of each row
        if sum(counts) != tokens.shape[0]:
            raise ValueError(f"input_ids hold {sum(counts)} audio placeholders, the audio gives {tokens.shape[0]} tokens")
        return self.ctc_head(tokens), counts

    def forward(self, input_ids, labels, input_features=None, input_features_mask=None, audio_encoder_states=None,
                **_) -> dict:  # fmt: skip
        """`{"loss"}`: the CTC loss of the answers (attention masks, token types and other text-side inputs
        of the collator's batch are not needed)."""
        logits, counts = self.audio_logits(input_ids, input_features, input_features_mask, audio_encoder_states)
        return {"loss": ctc_loss(self.ctc_head, logits, counts, labels, self.end_token_id)}

    def answer_loss(self, labels, num_items_in_batch=None, **inputs):
        """The loss-only evaluation's loss (`TrainedOnlyTrainer.prediction_step`): the CTC loss."""
        return _Loss(self.forward(labels=labels, **inputs)["loss"])


class _Loss:
    def __init__(self, loss):
        self.loss = loss


def training_head(model, tokenizer, train_set, vocabulary_rows: int | None, title: str) -> tuple[CTCHead, int]:
    """(a `CTCHead` over `model`'s input embeddings of the tokens of `train_set`'s transcripts, the id of
    `<|im_end|>`, which closes every answer and has no class)."""
    token_ids = alignment_vocabulary(tokenizer, training_texts(train_set, vocabulary_rows))
    print(f"{title}: {len(token_ids):,} word pieces of the LLM's vocabulary + blank")
    return CTCHead(model.get_input_embeddings().weight, token_ids), tokenizer.convert_tokens_to_ids("<|im_end|>")


def ctc_alignment(graft, processor, train_set, vocabulary_rows: int | None = None) -> CTCAlignment:
    """A `CTCAlignment` over `graft` whose vocabulary is the tokens of `train_set`'s transcripts."""
    head, end_token_id = training_head(graft, processor.tokenizer, train_set, vocabulary_rows, "CTC alignment")
    return CTCAlignment(graft, head, end_token_id)


@torch.no_grad()
def ctc_transcripts(model: CTCAlignment, collator, dataset, batch_size: int, autocast) -> tuple[list[str], list[str]]:
    """(references, greedy CTC transcripts) of every item of `dataset`."""
    references, hypotheses = [], []
    tokenizer = collator.processor.tokenizer
    device = next(model.ctc_head.parameters()).device
    for start in tqdm(range(0, len(dataset), batch_size), desc="greedy CTC", leave=False):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collator(items).items()}
        with autocast():
            logits, counts = model.audio_logits(batch["input_ids"], batch.get("input_features"),
                                                batch["input_features_mask"], batch.get("audio_encoder_states"))  # fmt: skip
        hypotheses += [tokenizer.decode(model.ctc_head.greedy_token_ids(x)) for x in logits.split(counts)]
        references += [item["text"] for item in items]
    return references, hypotheses


class CTCEvaluationCallback(TrainerCallback):
    """After each evaluation: the WER and CER of greedy CTC transcripts of the eval set (`eval_ctc_wer`,
    `eval_ctc_cer`), in the log history and the evaluation's metrics."""

    def __init__(self, collator, dataset, batch_size: int):
        self.collator, self.dataset, self.batch_size = collator, dataset, batch_size
        self.trainer = None

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        was_training = model.training
        model.eval()
        references, hypotheses = ctc_transcripts(model, self.collator, self.dataset, self.batch_size,
                                                 self.trainer.accelerator.autocast)  # fmt: skip
        model.train(was_training)
        scores = compute_metrics(references, hypotheses)
        entry = {"step": state.global_step, "eval_ctc_wer": scores["wer"], "eval_ctc_cer": scores["cer"]}
        state.log_history.append(entry)
        if metrics is not None:
            metrics.update(eval_ctc_wer=scores["wer"], eval_ctc_cer=scores["cer"])
        if state.is_world_process_zero:
            print(f"greedy CTC {json.dumps(entry)}; e.g. {hypotheses[0]!r} for {references[0]!r}", flush=True)


class AuxiliaryCTC(nn.Module):
    """Stage 2's auxiliary CTC loss (`ctc_weight`): in training, the graft's loss on the answer plus `weight`
    times the CTC loss of the same step's audio tokens under a `CTCHead` that trains alongside.

    It works through two forward hooks, so the graft, its PEFT wrapper, saving and evaluation are those
    of plain stage 2: one on the projector keeps its output, one on the graft adds the CTC loss to the
    output's loss when the graft runs in training mode with labels. Evaluation (`answer_loss`, the
    listening check, generation) never sees it. The head's parameters train with the model's (it is a
    submodule of the trained model); checkpoints keep them for resuming (`AuxiliaryCTCCallback`), the
    final save does not: the adapter is what stage 2 hands on. The mean CTC loss since the last logged
    step is logged as `train_ctc_loss`."""

    def __init__(self, head: CTCHead, end_token_id: int, weight: float):
        super().__init__()
        if weight <= 0:
            raise ValueError(f"ctc_weight must be positive to add a CTC loss, got {weight}")
        self.head, self.end_token_id, self.weight = head, end_token_id, weight
        self._projected, self._losses = None, []

    def attach(self, model) -> "AuxiliaryCTC":
        """Hook into `model` (a graft, or its PEFT wrapper) and register as its submodule `ctc_auxiliary`."""
        graft = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._lengths, self._audio_token_id = graft.model.audio_token_lengths, graft.config.audio_token_id
        graft.model.audio_projector.register_forward_hook(self._keep_projected)
        graft.register_forward_hook(self._add_loss, with_kwargs=True)
        model.add_module("ctc_auxiliary", self)
        return self

    def _keep_projected(self, module, args, output):
        self._projected = output if module.training else None  # (windows, tokens, hidden)

    def _add_loss(self, module, args, kwargs, output):
        projected, self._projected = self._projected, None
        labels, mask = kwargs.get("labels"), kwargs.get("input_features_mask")
        if not module.training or labels is None or projected is None or output.loss is None:
            return output
        lengths = self._lengths(mask)
        tokens = torch.cat([window[:length] for window, length in zip(projected, lengths)])
        counts = (kwargs["input_ids"] == self._audio_token_id).sum(-1).tolist()
        loss = ctc_loss(self.head, self.head(tokens), counts, labels, self.end_token_id)
        self._losses.append(loss.detach())  # read at logging time: no device sync each step
        output.loss = output.loss + self.weight * loss
        return output

    def take_mean_loss(self) -> float | None:
        """The mean CTC loss of the steps since the last call (None when none ran), and start again."""
        losses, self._losses = self._losses, []
        return torch.stack(losses).mean().item() if losses else None


class AuxiliaryCTCCallback(TrainerCallback):
    """Puts `train_ctc_loss`, the auxiliary CTC loss averaged since the last log, into the log history, and
    keeps the head's trained weights in each checkpoint (`ctc_head.safetensors`) for `resume_from`."""

    def __init__(self, auxiliary: AuxiliaryCTC):
        self.auxiliary = auxiliary

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().contiguous().cpu() for k, v in self.auxiliary.head.state_dict().items()},
                      str(folder / AUXILIARY_HEAD_FILE))  # fmt: skip

    @torch.no_grad()
    def resume_from(self, checkpoint: str | None) -> bool:
        """Load the head saved in `checkpoint`; False (the head starts afresh) when it holds none."""
        path = Path(checkpoint) / AUXILIARY_HEAD_FILE if checkpoint else None
        if path is None or not path.exists():
            return False
        self.auxiliary.head.load_state_dict(load_file(str(path)))
        return True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            mean = self.auxiliary.take_mean_loss()
            if mean is not None:
                state.log_history.append({"step": state.global_step, "train_ctc_loss": round(mean, 4)})


def auxiliary_ctc(model, processor, train_set, weight: float, vocabulary_rows: int | None = None) -> AuxiliaryCTC:
    """An `AuxiliaryCTC` attached to `model`, its vocabulary the tokens of `train_set`'s transcripts."""
    head, end_token_id = training_head(model, processor.tokenizer, train_set, vocabulary_rows,
                                       f"auxiliary CTC loss, weight {weight}")  # fmt: skip
    return AuxiliaryCTC(head, end_token_id, weight).attach(model)
