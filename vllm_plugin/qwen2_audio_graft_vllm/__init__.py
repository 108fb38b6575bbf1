"""vLLM plugin for the audio graft: registers the model with vLLM and cuts long transcription requests at pauses.

Installed with `pip install ./vllm_plugin` beside vLLM, it is found through the `vllm.general_plugins`
entry point; vLLM then serves a graft folder (`vllm serve build/mini-graft --trust-remote-code`),
including `/v1/audio/transcriptions`.
"""


def register() -> None:
    from vllm import ModelRegistry

    ModelRegistry.register_model(
        "Qwen2AudioGraftForConditionalGeneration", "qwen2_audio_graft_vllm.model:Qwen2AudioGraftForConditionalGeneration"
    )
    from qwen2_audio_graft_vllm.segments import use_pause_segmenter

    use_pause_segmenter()
