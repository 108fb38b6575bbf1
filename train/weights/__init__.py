"""Loading a graft with its trained pieces, 4-bit quantization, training precision."""
