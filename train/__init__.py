"""Building, training, merging, evaluating and publishing the graft, and transcribing with it."""

import logging

# On CPUs with AVX512-BF16, importing bitsandbytes (PEFT does) tries to download a CPU kernel from the Hub and
# logs a warning when it cannot; its own CPU kernels then run. Offline, that warning says nothing.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

import warnings  # noqa: E402

# PEFT 0.21 reads `model.is_gradient_checkpointing` on every model it wraps, which transformers 5.24 deprecates
# (FutureWarning); nothing here enables checkpointing through that name.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
