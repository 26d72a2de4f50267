"""Training: the epoch loop, resumable checkpoints, DDP helpers and the multi-task loss weighting."""
