"""One corpus clip as a job: what it should contain, and the file name that a digest of it gives."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ClipJob:
    split: str                  # "train" | "digits" | "validation" | "devtest" | "devtest-digits"
    index: int
    voice: str                  # a manifest voice label
    text: str
    source: str = "tts"         # "tts" | "real"
    tempo: float = 1.0
    peak_dbfs: float | None = None   # None: keep the level as synthesised
    noise: str = "none"
    snr_db: float | None = None
    src_path: str | None = None      # real recordings only
    codec: str = "wav"               # "wav" (16-bit PCM) | "opus" (Ogg Opus, training clips only)
    pitch_cents: int = 0             # sox pitch shift
    reverb: int = 0                  # sox reverb reverberance (%), 0 for none
    prosody: int = 0                 # the engine's prosody preset (voices.PROSODY_PRESETS), 0 its default

    @property
    def digest(self) -> str:
        # Any change of what the clip should contain gives it a new file name,
        # so a resumed run never reuses a clip made with other settings.
        fields = [self.voice, self.text, self.source, self.tempo, self.peak_dbfs,
                  self.noise, self.snr_db, self.src_path]
        if self.pitch_cents or self.reverb or self.prosody:  # clips made without them keep their names
            fields += [self.pitch_cents, self.reverb]
        if self.prosody:
            fields.append(self.prosody)
        spec = json.dumps(fields)
        return hashlib.sha256(spec.encode()).hexdigest()[:10]

    @property
    def relpath(self) -> str:
        suffix = ".ogg" if self.codec == "opus" else ".wav"
        return f"{self.split}/{self.voice}-{self.index:05d}-{self.digest}{suffix}"
