"""What stage 1 and stage 2 share: datasets, a Trainer that saves only the trained weights,
evaluation WER and the listening check during training, an optional EMA of the trained weights,
and the closing report (loss plot, skipped rows)."""

import json
import os
from pathlib import Path

import safetensors.torch
import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import get_last_checkpoint

from .data import JoinedClips, SpeechCollator, SpeechDataset, StreamingSpeechDataset, load_rows
from .clock import TrainingClock
from .ema import EMACallback
from .encoder_cache import with_encoder_cache
from ..evaluation.listening import ListeningCallback
from .plots import plot_training


def build_datasets(data_args, max_seconds: float, seed: int = 0):
    """(train dataset, eval dataset or None) with broken rows skipped and counted; with `join_clips`,
    some training items are several clips joined (`JoinedClips`, drawn from `seed`)."""
    if data_args.join_clips and (data_args.streaming or data_args.encoder_cache_dir):
        raise ValueError("join_clips joins clips' audio before the encoder: it works with neither streaming "
                         "nor encoder_cache_dir")
    rows = load_rows(data_args.train_data, data_args.train_split, data_args.audio_column, data_args.text_column,
                     streaming=data_args.streaming, config=data_args.dataset_config)  # fmt: skip
    if data_args.streaming:
        train = StreamingSpeechDataset(rows, max_seconds)
    else:
        train = SpeechDataset(rows, max_seconds, limit=data_args.max_train_samples)
        if data_args.join_clips:
            train = JoinedClips(train, data_args.join_clips, data_args.join_max_clips,
                                min(data_args.join_max_seconds, max_seconds), seed=seed)
    evaluation = None
    if data_args.eval_data:
        eval_rows = load_rows(data_args.eval_data, data_args.eval_split, data_args.audio_column,
                              data_args.text_column, config=data_args.dataset_config)  # fmt: skip
        evaluation = SpeechDataset(eval_rows, max_seconds, limit=data_args.max_eval_samples, spread=True)
    return train, evaluation


class TrainedOnlyTrainer(Trainer):
    """Trainer for the graft's stages. Differs from `Trainer` in four ways:

    - checkpoints and the final save hold only the trainable weights (the projector; for a PEFT
      model, its adapter with the projector), never a copy of the frozen LLM. Resuming loads them
      back with `load_state_dict(strict=False)`, as Trainer does for `model.safetensors`;
    - with `projector_learning_rate`, the projector's parameters get their own learning rate (the
      scheduler scales both groups alike);
    - `train_sampling_strategy: group_by_length` groups clips of similar length (the dataset's
      `lengths`, found when its rows were checked) instead of reading every item to measure it;
    - an evaluation that needs the loss alone (`prediction_loss_only`) takes the graft's answer-only
      loss (`answer_loss`) instead of the parent's logits at every prompt and audio position (not
      under FSDP or DeepSpeed, whose wrappers gather the sharded weights in `forward`).
    """

    def __init__(self, *args, projector_learning_rate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.projector_learning_rate = projector_learning_rate

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.projector_learning_rate is not None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = parameter_groups(opt_model, self.get_decay_parameter_names(opt_model), self.args.weight_decay,
                                      self.args.learning_rate, self.projector_learning_rate)  # fmt: skip
            # Trainer's own hook: `params` in the kwargs replaces its default parameter groups.
            self.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": groups})
        return super().create_optimizer(model)

    def _grouped(self, dataset, batch_size: int):
        """A LengthGroupedSampler over the dataset's own `lengths`, or None to leave it to Trainer."""
        lengths = getattr(dataset, "lengths", None)
        if self.args.train_sampling_strategy != "group_by_length" or lengths is None:
            return None
        return LengthGroupedSampler(batch_size, lengths=list(lengths))

    # Kept private: Trainer has no public sampler hook, and its group_by_length reads every item to measure it.
    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        grouped = self._grouped(dataset, self.args.train_batch_size * self.args.gradient_accumulation_steps)
        return grouped if grouped is not None else super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        # Trainer groups the eval set by length too under group_by_length, reading every item to measure it.
        grouped = self._grouped(eval_dataset, self.args.eval_batch_size)
        return grouped if grouped is not None else super()._get_eval_sampler(eval_dataset)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        if not prediction_loss_only or "labels" not in inputs or sharded:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.accelerator.unwrap_model(model).answer_loss(**inputs).loss
        return loss.detach(), None, None

    def save_model(self, output_dir=None, _internal_call=False):
        if hasattr(self.accelerator.unwrap_model(self.model), "peft_config"):
            return super().save_model(output_dir, _internal_call)
        # Every process takes part in gathering the state dict (under FSDP and DeepSpeed the parameters are
        # shards; ZeRO-3 gathers through DeepSpeed's engine, `model_wrapped`); only the saving one writes.
        state_dict = self.accelerator.get_state_dict(self.model_wrapped if self.is_deepspeed_enabled else self.model)
        if self.args.should_save:
            save_trained(self.accelerator.unwrap_model(self.model), state_dict, output_dir or self.args.output_dir)
        return None


def save_trained(model, state_dict: dict, output_dir: str) -> None:
    """Write the entries of `state_dict` that are `model`'s trainable parameters to `output_dir/model.safetensors`."""
    trained = trained_names(model)
    tensors = {name: state_dict[name].detach().contiguous().cpu() for name in trained if name in state_dict}
    missing = sorted(set(trained) - set(tensors))
    if missing:
        raise ValueError(f"The state dict to save lacks trained weights: {missing[:5]}")
    os.makedirs(output_dir, exist_ok=True)
    safetensors.torch.save_file(tensors, os.path.join(output_dir, "model.safetensors"), metadata={"format": "pt"})


def trained_names(model) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def parameter_groups(model, decay_names, weight_decay: float, learning_rate: float, projector_learning_rate: float):
    """AdamW groups: LLM-side (LoRA) and projector parameters, each with and without weight decay."""
    groups = []
    for is_projector, lr in ((False, learning_rate), (True, projector_learning_rate)):
        for decay in (True, False):
            params = [p for n, p in model.named_parameters()
                      if p.requires_grad and ("audio_projector" in n) == is_projector and (n in decay_names) == decay]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": weight_decay if decay else 0.0})
    return groups


def make_trainer(model, training_args, train_set, eval_set, collator, processor, data_args, recipe):
    training_args.remove_unused_columns = False  # the collator's audio columns are not forward() names
    trainer = TrainedOnlyTrainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                                 data_collator=collator, projector_learning_rate=recipe.projector_learning_rate)  # fmt: skip
    if eval_set is not None and (data_args.eval_wer or data_args.listening_samples):
        callback = ListeningCallback(processor, eval_set, data_args, training_args.per_device_eval_batch_size)
        callback.trainer = trainer
        trainer.add_callback(callback)
    return trainer


def run_stage(model, processor, data_args, training_args, recipe, title: str, objective=None):
    """Data, collator and Trainer for a prepared model; train (or resume), then `finish`.

    `objective`, when given, is a function `(model, train_set, eval_set, collator) -> (module, callbacks)`:
    the module is trained instead of `model` (stage 1's CTC head around the graft, or stage 2's graft with
    its auxiliary CTC loss attached: `train.stages.ctc`). A callback with `resume_from(checkpoint)` gets
    the checkpoint the run continues from."""
    train_set, eval_set = build_datasets(data_args, processor.max_audio_seconds, training_args.seed)
    if data_args.encoder_cache_dir:
        train_set = with_encoder_cache(model, processor, train_set, data_args.encoder_cache_dir, training_args)
    collator = SpeechCollator(processor, data_args.instruction)
    callbacks = []
    if objective is not None:
        model, callbacks = objective(model, train_set, eval_set, collator)
    trainer = make_trainer(model, training_args, train_set, eval_set, collator, processor, data_args, recipe)
    for callback in callbacks:
        callback.trainer = trainer
        trainer.add_callback(callback)
    resumable = recipe.resume and Path(training_args.output_dir).is_dir()
    last = get_last_checkpoint(training_args.output_dir) if resumable else None
    accelerator = trainer.accelerator
    if trainer.is_world_process_zero():
        print(f"{title}: {accelerator.num_processes} process(es), {accelerator.distributed_type.value}")
    if recipe.ema_decay and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ValueError("ema_decay needs the whole trained weights in each process; FSDP and DeepSpeed shard "
                         "them: set ema_decay 0")
    for callback in callbacks:  # an objective's own state kept in checkpoints (stage 2's auxiliary CTC head)
        if hasattr(callback, "resume_from"):
            callback.resume_from(last)
    clock = TrainingClock()
    clock.resume_from(last)
    trainer.add_callback(clock)
    ema = EMACallback(model, recipe.ema_decay) if recipe.ema_decay else None
    if ema is not None:
        ema.resume_from(last)
        trainer.add_callback(ema)
    output = trainer.train(resume_from_checkpoint=last)  # --resume with no checkpoint yet: from step 0
    trainer.save_metrics("train", output.metrics)  # train_results.json: train_runtime and friends
    finish(trainer, train_set, eval_set, title)
    if ema is not None and trainer.is_world_process_zero():
        print(f"saved the EMA of the trained weights (decay {recipe.ema_decay}) to "
              f"{ema.save_average(trainer.accelerator.unwrap_model(trainer.model), training_args.output_dir)}")
    end_processes(trainer.accelerator)
    return trainer


def end_processes(accelerator) -> None:
    """Under several processes, wait for all of them, then close the process group. A process that exits
    while another is still writing (rank 0 saves while the others are done) closes its gloo connections
    under a live group, and the other one aborts (SIGABRT, exit code -6)."""
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
        accelerator.end_training()


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
