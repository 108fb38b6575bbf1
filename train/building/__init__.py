"""Building a graft folder: compose (build), the tiny test graft, the release configs, what a folder holds, toy audio."""
