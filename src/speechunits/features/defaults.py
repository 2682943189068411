"""Default extraction settings (no heavy imports: CLI parsers read them at start-up)."""

#: Default padded audio per encoder call (seconds). On CPU, throughput is flat above ~20 s
#: while memory grows (HuBERT-base fp32 peaks at roughly 20 MB per batch second).
DEFAULT_MAX_BATCH_SECONDS = 30.0
#: Default chunk limit for long files (seconds) and the context kept around each chunk.
DEFAULT_CHUNK_SECONDS = 100.0
DEFAULT_CHUNK_CONTEXT_SECONDS = 5.0
