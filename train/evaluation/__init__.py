"""Evaluation: transcribing and scoring a set of clips, the metrics, the listening check."""
