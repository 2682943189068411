"""Independent judges of synthesised speech (resynthesis, voice conversion, TTS): ``evaluate_audio``.

One module per judge, each usable alone: :mod:`.asr` (pocketsphinx WER/CER), :mod:`.pitch_errors`
(GPE, VDE, FFE), :mod:`.mcd` (MCD with DTW), :mod:`.speaker` (Resemblyzer similarity), :mod:`.dnsmos`
(DNSMOS), :mod:`.probes` (the project's probes as judges); :mod:`.evaluate` runs them over matched
utterances. Their packages are the optional ``[eval]`` extra, imported only when a judge runs.
"""
from speechunits._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {"evaluate_audio": "speechunits.measure.audio.evaluate"})
__all__ = ["evaluate_audio"]
