"""Merge, the model card and the upload."""
