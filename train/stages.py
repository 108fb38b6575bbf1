"""What stage 1 and stage 2 share: datasets, a Trainer that saves only the trained weights,
evaluation WER during training, and the closing report (loss plot, skipped rows)."""

import json
import os
from pathlib import Path

import safetensors.torch
from transformers import Trainer, TrainerCallback

from train.data import SpeechCollator, SpeechDataset, StreamingSpeechDataset, load_rows
from train.encoder_cache import with_encoder_cache
from train.evaluate import evaluate_dataset
from train.plots import plot_training


def build_datasets(data_args, max_seconds: float):
    """(train dataset, eval dataset or None) with broken rows skipped and counted."""
    rows = load_rows(data_args.train_data, data_args.train_split, data_args.audio_column, data_args.text_column,
                     streaming=data_args.streaming, config=data_args.dataset_config)  # fmt: skip
    if data_args.streaming:
        train = StreamingSpeechDataset(rows, max_seconds)
    else:
        train = SpeechDataset(rows, max_seconds, limit=data_args.max_train_samples)
    evaluation = None
    if data_args.eval_data:
        eval_rows = load_rows(data_args.eval_data, data_args.eval_split, data_args.audio_column,
                              data_args.text_column, config=data_args.dataset_config)  # fmt: skip
        evaluation = SpeechDataset(eval_rows, max_seconds, limit=data_args.max_eval_samples)
    return train, evaluation


class TrainedOnlyTrainer(Trainer):
    """Checkpoints and the final save hold only the trainable weights (the projector; for a PEFT
    model, its adapter with the projector): never a copy of the frozen 7B. Resuming loads them
    back with `load_state_dict(strict=False)`, as Trainer does for `model.safetensors`."""

    def _save(self, output_dir=None, state_dict=None):
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "peft_config"):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return None
        os.makedirs(output_dir, exist_ok=True)
        trained = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        safetensors.torch.save_file(trained, os.path.join(output_dir, "model.safetensors"), metadata={"format": "pt"})
        return None


class WerCallback(TrainerCallback):
    """After each evaluation, transcribe the eval set and log `eval_wer` beside `eval_loss`."""

    def __init__(self, processor, dataset, data_args, batch_size):
        self.processor, self.dataset, self.data_args, self.batch_size = processor, dataset, data_args, batch_size
        self.trainer = None

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        was_training = model.training
        model.eval()
        scores, _ = evaluate_dataset(model, self.processor, self.dataset, self.trainer.accelerator,
                                     instruction=self.data_args.instruction, batch_size=self.batch_size,
                                     max_new_tokens=self.data_args.eval_max_new_tokens)  # fmt: skip
        model.train(was_training)
        state.log_history.append({"eval_wer": scores["wer"], "step": state.global_step})
        if metrics is not None:
            metrics["eval_wer"] = scores["wer"]


def make_trainer(model, training_args, train_set, eval_set, collator, processor, data_args):
    training_args.remove_unused_columns = False  # the collator's audio columns are not forward() names
    trainer = TrainedOnlyTrainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                                 data_collator=collator)  # fmt: skip
    if eval_set is not None and data_args.eval_wer:
        callback = WerCallback(processor, eval_set, data_args, training_args.per_device_eval_batch_size)
        callback.trainer = trainer
        trainer.add_callback(callback)
    return trainer


def run_stage(model, processor, data_args, training_args, resume: bool, title: str):
    """Data, collator and Trainer for a prepared model; train (or resume), then `finish`."""
    train_set, eval_set = build_datasets(data_args, processor.max_audio_seconds)
    if data_args.encoder_cache_dir:
        train_set = with_encoder_cache(model, processor, train_set, data_args.encoder_cache_dir, training_args)
    collator = SpeechCollator(processor, data_args.instruction)
    trainer = make_trainer(model, training_args, train_set, eval_set, collator, processor, data_args)
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_metrics("train", output.metrics)  # train_results.json: train_runtime and friends
    finish(trainer, train_set, eval_set, title)
    return trainer


def finish(trainer, train_set, eval_set, title: str) -> None:
    """Save the trained weights, the loss plot and the skipped-row counts beside them."""
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return
    output = Path(trainer.args.output_dir)
    skipped = {"train": dict(train_set.skips), "eval": dict(eval_set.skips) if eval_set is not None else {}}
    (output / "skipped_rows.json").write_text(json.dumps(skipped, indent=2) + "\n")
    plot_training(trainer.state.log_history, output / "training.png", title)
    print(f"train data: {train_set.skips.report()}")
    if eval_set is not None:
        print(f"eval data: {eval_set.skips.report()}")
    print(f"saved {output}/model.safetensors or adapter, training.png, skipped_rows.json")
