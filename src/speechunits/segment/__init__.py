"""Long recordings into utterances: silero-vad speech probabilities, then segments.

``vad`` wraps the model (``[vad]`` extra, loaded only here), ``segments`` turns probabilities
into segments (pure numpy), long files are read in bounded memory by ``Audio.stream``, ``run`` is the
corpus job behind ``speechunits segment`` (docs/segment.md).
"""
from speechunits._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {
    "SegmentOptions": "speechunits.segment.segments",
    "SpeechSegment": "speechunits.segment.segments",
    "find_segments": "speechunits.segment.segments",
    "SileroVAD": "speechunits.segment.vad",
    "VADStream": "speechunits.segment.vad",
    "FileSpeech": "speechunits.segment.run",
    "SegmentReport": "speechunits.segment.run",
    "find_speech": "speechunits.segment.run",
    "segment_corpus": "speechunits.segment.run",
})

__all__ = ["SegmentOptions", "SpeechSegment", "find_segments", "SileroVAD", "VADStream",
           "FileSpeech", "SegmentReport", "find_speech", "segment_corpus"]
