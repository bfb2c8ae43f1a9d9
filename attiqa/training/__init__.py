"""Training: losses, pseudo-labelling, ranking pretraining, MOS fine-tuning, ablations and the starter model."""
