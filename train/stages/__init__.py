"""The training stages and what they share: arguments, data, the Trainer, the EMA, the encoder cache, plots."""
