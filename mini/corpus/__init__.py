"""The offline speech corpus of `python -m mini.make_corpus`: text (`text`), voices (`voices`),
audio processing (`augment`), clip jobs and their runs (`jobs`), manifests (`manifests`)."""
