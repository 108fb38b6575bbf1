"""Evaluation: transcribe and score a test set, the metrics, the listening check."""
