"""Building, training, merging, evaluating and publishing the graft, and transcribing with it."""

import logging

# On CPUs with AVX512-BF16, importing bitsandbytes (PEFT does) tries to download a CPU kernel from the Hub and
# logs a warning when it cannot; its own CPU kernels then run. Offline, that warning says nothing.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# accelerate's unwrap_model (every save_pretrained) imports DeepSpeed wherever it is installed (bench.sharded_cpu
# runs it); without a GPU DeepSpeed then warns that it falls back to CPU, which says nothing about what runs here.
logging.getLogger("DeepSpeed").addFilter(lambda record: not record.getMessage().startswith("Setting accelerator to"))

import warnings  # noqa: E402

# PEFT 0.21 reads `model.is_gradient_checkpointing` on every model it wraps, which transformers 5.24 deprecates
# (FutureWarning); nothing here enables checkpointing through that name.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class _WhisperOwnArguments(logging.Filter):
    """transformers 5.24's Whisper `generate` passes its config's suppress tokens beside the config itself
    (generation_whisper.py), then warns the caller that passing both is deprecated: that one notice is dropped."""

    PREFIX = "Passing `generation_config` together with generation-related arguments=({"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        names = message[len(self.PREFIX) : message.index("}")].replace("'", "").split(", ")
        return set(names) != {"suppress_tokens", "begin_suppress_tokens"}


logging.getLogger("transformers.generation.utils").addFilter(_WhisperOwnArguments())
