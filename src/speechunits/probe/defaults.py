"""Training defaults of probes, importable without torch (the CLI shows them in its help)."""

#: Padded input frames per training batch.
DEFAULT_BATCH_FRAMES = 20000
#: Under a time budget, the learning-rate warmup ends at the latest once this share of a run's budget is spent.
DEFAULT_WARMUP_FRACTION = 0.1
