"""Option choices and defaults of the quantize commands (no heavy imports: CLI parsers read them)."""

#: Formats ``speechunits codebook import`` reads ("auto" picks by file name).
IMPORT_FORMATS = ("auto", "sklearn", "speechbrain", "bshall", "faiss")
#: Formats ``speechunits codebook export`` writes.
EXPORT_FORMATS = ("sklearn", "faiss")
#: Default cap on frames held for k-means (200k x 768 float32 = 614 MB).
DEFAULT_MAX_FRAMES = 200_000
