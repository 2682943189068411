"""A minimal ctypes binding to libespeak-ng (shipped by the PyPI package ``espeakng-loader``).

espeak-ng is GPL-3, so this module is imported only when synthesising (never from the core).

How it is used (facts measured on these machines, see ``docs/measure-synth.md``):

* :func:`initialise` once per process in synchronous mode with phoneme events in IPA;
  it returns the output sample rate (22050 Hz).
* :func:`synthesise` sets the voice and prosody, speaks one text and returns the int16
  samples plus the phone and word events, each with a sample index counted from the start
  of the utterance.
* :func:`phonemise` gives espeak-ng's own phonemisation of a word, one phoneme per item, in
  its ASCII mnemonics (what phoneme input ``[[...]]`` takes) or in IPA (what phone events
  report); :func:`phoneme_input` builds the ``[[...]]`` text that speaks given mnemonics.
* espeak-ng keeps state between utterances, so audio depends on what the same process
  synthesised before. Callers that need byte-identical output initialise in the parent
  and synthesise every utterance in a fresh fork (see :mod:`speechunits.synth.corpus`).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

# espeak_AUDIO_OUTPUT / espeak_EVENT_TYPE / option constants from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
#: espeak_Synth flag: text inside ``[[ ]]`` is read as phoneme mnemonics.
_SSML_PHONEMES = 0x100
#: espeak_TextToPhonemes: bit 1 asks for IPA; bits 8-23 hold the character put between phonemes.
_PHONEMES_IPA = 0x02
_PHONEME_SEPARATOR = "_"
#: Separates phoneme mnemonics inside ``[[ ]]`` (so that e.g. ``a`` + ``I`` is not read as ``aI``).
PHONEME_INPUT_SEPARATOR = "|"
_POS_CHARACTER = 1
# espeak_PARAMETER values.
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class PhoneEvent:
    """A phone starts at ``sample`` (output rate); ``label`` is IPA ("" for pauses)."""

    sample: int
    label: str


@dataclass(frozen=True)
class WordEvent:
    """A word starts at ``sample``; ``text_position`` is 1-based in characters, ``length`` in characters."""

    sample: int
    text_position: int
    length: int


@dataclass(frozen=True)
class Synthesis:
    """One synthesised utterance: int16 ``samples [T]`` at ``sample_rate`` and its events."""

    samples: np.ndarray
    sample_rate: int
    phones: list[PhoneEvent]
    words: list[WordEvent]


_state: dict[str, object] = {}


def _library() -> ctypes.CDLL:
    if "lib" not in _state:
        try:
            import espeakng_loader
        except ImportError:
            raise SpeechUnitsError(
                "synth needs espeak-ng: pip install 'speechunits[synth]' (installs espeakng-loader, GPL-3)"
            ) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        _state["lib"] = lib
        _state["data_path"] = espeakng_loader.get_data_path()
    return _state["lib"]  # type: ignore[return-value]


def initialise() -> int:
    """Load and initialise espeak-ng in this process (idempotent); return its sample rate."""
    if "rate" in _state:
        return int(_state["rate"])  # type: ignore[call-overload]
    lib = _library()
    data_path = str(_state["data_path"]).encode()
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
    )
    if rate <= 0:
        raise SpeechUnitsError(f"espeak-ng failed to initialise with data at {_state['data_path']}")
    _state["rate"] = rate
    return rate


def _seed_random(seed: int) -> None:
    """Seed espeak-ng's noise generator (breathy voices use it) and libc's ``rand``."""
    lib = _library()
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    libc = ctypes.CDLL(None)
    libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))


def phonemise(word: str, voice: str, *, ipa: bool = False) -> list[str]:
    """espeak-ng's phonemes of one word (stress marks stay on their vowel, e.g. ``'aI``).

    ``ipa=False`` gives the ASCII mnemonics that :func:`phoneme_input` speaks, ``ipa=True`` the
    IPA that phone events report; both lists have one item per phoneme. Empty for no phonemes.
    """
    initialise()
    lib = _library()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise SpeechUnitsError(f"espeak-ng: unknown voice {voice!r}")
    mode = (ord(_PHONEME_SEPARATOR) << 8) | (_PHONEMES_IPA if ipa else 0)
    buffer = ctypes.create_string_buffer(word.encode("utf-8") + b"\0")
    pointer = ctypes.c_void_p(ctypes.addressof(buffer))
    pieces: list[str] = []
    while pointer.value:  # one clause per call; a single word is one clause
        out = lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode)
        if out:
            pieces.append(out.decode("utf-8"))
    return [p for p in " ".join(pieces).replace(" ", _PHONEME_SEPARATOR).split(_PHONEME_SEPARATOR) if p]


def phoneme_input(mnemonics: Sequence[str]) -> str:
    """The text that makes :func:`synthesise` (with ``phonemes=True``) speak these mnemonics."""
    return "[[" + PHONEME_INPUT_SEPARATOR.join(mnemonics) + "]]"


def phoneme_phrase(words: Sequence[Sequence[str]]) -> str:
    """:func:`phoneme_input` of several words (each its mnemonics), spoken as one phrase."""
    return " ".join(phoneme_input(mnemonics) for mnemonics in words)


def synthesise(text: str, voice: str, *, rate: int, pitch: int, pitch_range: int, seed: int = 0,
               phonemes: bool = False) -> Synthesis:
    """Speak ``text`` with ``voice`` (e.g. ``"en-us+m3"``) and return samples and events.

    Args:
        rate: words per minute (espeak-ng accepts 80–450).
        pitch: base pitch 0–100; pitch_range: 0–100 (0 is monotone).
        seed: seed of espeak's noise generator (breathy variants such as ``+f2`` use noise).
        phonemes: read text inside ``[[ ]]`` as phoneme mnemonics (see :func:`phoneme_input`).
    """
    sample_rate = initialise()
    lib = _library()
    _seed_random(seed)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise SpeechUnitsError(f"espeak-ng: unknown voice {voice!r}")
    for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
        lib.espeak_SetParameter(param, int(value), 0)

    chunks: list[bytes] = []
    phones: list[PhoneEvent] = []
    words: list[WordEvent] = []

    def on_audio(wav: ctypes.Array, num_samples: int, events: ctypes.Array) -> int:  # type: ignore[type-arg]
        if num_samples > 0:
            chunks.append(ctypes.string_at(wav, num_samples * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                label = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", errors="ignore")
                phones.append(PhoneEvent(int(event.sample), label))
            elif event.type == _EVENT_WORD:
                words.append(WordEvent(int(event.sample), int(event.text_position), int(event.length)))
            i += 1
        return 0

    callback = _SynthCallback(on_audio)
    lib.espeak_SetSynthCallback(callback)
    encoded = text.encode("utf-8") + b"\0"
    buffer = ctypes.create_string_buffer(encoded, len(encoded))
    flags = _CHARS_UTF8 | (_SSML_PHONEMES if phonemes else 0)
    status = lib.espeak_Synth(buffer, len(encoded), 0, _POS_CHARACTER, 0, flags, None, None)
    lib.espeak_Synchronize()
    if status != 0:
        raise SpeechUnitsError(f"espeak-ng: synthesis failed (status {status}) for {text!r}")
    samples = np.frombuffer(b"".join(chunks), dtype=np.int16).copy()
    return Synthesis(samples, sample_rate, phones, words)
