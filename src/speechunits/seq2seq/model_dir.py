"""Model directories of the sequence models, and the codebook checks around them.

A TTS directory holds ``tts.json`` and ``model.safetensors``; an S2UT (or text translator)
directory ``s2ut.json`` and ``model.safetensors``; both keep their training checkpoint in
``training/`` (the loop's format). The JSON (written at every checkpoint, and once more with
the evaluation at the end) records what the model consumes and predicts:

* ``units`` (TTS) / ``target`` (S2UT, kind ``units``): the predicted codebook's ``sha256``,
  ``k``, frame rate and offset, encoder and layer (:func:`speechunits.seq2seq.data.codebook_record`)
  plus its full ``codebook.json`` (so unit stores can be written without the codebook);
* ``input`` (TTS: ``phones`` or ``chars``, the symbol table, the espeak-ng voice) and
  ``speakers`` (the speaker table's names, in row order);
* ``source`` (S2UT): an encoder's features (the probe inputs' identity: encoder, identity,
  layers, dim, frame rate), a source codebook's units (its record, deduplicated) or text.

:func:`check_vocoder` refuses a vocoder of another codebook with an error naming both.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError, some_of
from speechunits.files import read_json_object
from speechunits.seq2seq.symbols import SymbolTable

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TTS_FILE = "tts.json"
S2UT_FILE = "s2ut.json"


def write_model_dir(out_dir: str | Path, model: torch.nn.Module, meta: dict[str, Any], meta_file: str) -> None:
    """Write the weights and then the JSON (each atomically) into ``out_dir``."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MODEL_FILE + ".tmp")
    save_model(model, str(tmp))
    os.replace(tmp, out / MODEL_FILE)
    text = json.dumps({**meta, "format_version": FORMAT_VERSION}, indent=1, sort_keys=True, ensure_ascii=False)
    tmp_json = out / (meta_file + ".tmp")
    tmp_json.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp_json, out / meta_file)


def read_meta(model_dir: str | Path, meta_file: str, what: str) -> dict[str, Any]:
    path = Path(model_dir) / meta_file
    meta = read_json_object(path, missing=f"{model_dir}: not a {what} directory ({meta_file} missing)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise SpeechUnitsError(f"{path}: not a {what} description this speechunits version reads")
    return meta


def load_weights(model_dir: str | Path, model: torch.nn.Module) -> None:
    from speechunits.training.checkpoint import load_safetensors

    load_safetensors(Path(model_dir) / MODEL_FILE, model, "the model described beside it")


def short(sha: str | None) -> str:
    return str(sha)[:12] if sha else "?"


def check_codebook(expected: dict[str, Any], got_sha256: str, *, model: str, role: str, source: str) -> None:
    """Refuse units of another codebook than the model's: ``role`` says what the model does with them."""
    if expected.get("sha256") != got_sha256:
        raise SpeechUnitsError(f"{model} {role} units of codebook {short(expected.get('sha256'))}, but {source} "
                               f"has units of codebook {short(got_sha256)}")


def check_vocoder(vocoder: Any, units: dict[str, Any], *, model: str, vocoder_path: str) -> None:
    """Refuse a vocoder that does not speak the units ``model`` predicts (codebook ``units["sha256"]``).

    Compares the vocoder's recorded codebook(s) first (error naming both), then asks the
    vocoder itself (``check_codebook``, contract A).
    """
    shas = vocoder.meta.get("codebook_sha256")
    shas = [shas] if isinstance(shas, str) else list(shas or [])
    if len(shas) != 1 or shas[0] != units.get("sha256"):
        raise SpeechUnitsError(f"{model} predicts units of codebook {short(units.get('sha256'))}, but the vocoder "
                               f"{vocoder_path} speaks units of codebook(s) {', '.join(short(s) for s in shas) or '?'}"
                               ": use a vocoder trained on the same codebook")
    vocoder.check_codebook(units["sha256"], source=model)


# -- TTS -------------------------------------------------------------------------------------------

@dataclass
class TTSBundle:
    """A loaded TTS model and what it reads and predicts (see the module docstring)."""

    path: str
    model: Any
    meta: dict[str, Any]
    symbols: SymbolTable
    speakers: list[str] = field(default_factory=list)

    @property
    def input_kind(self) -> str:
        return str(self.meta["input"]["kind"])

    @property
    def units(self) -> dict[str, Any]:
        return self.meta["units"]

    def speaker_row(self, speaker: str | None) -> int | None:
        """Row of ``speaker`` in the table; SpeechUnitsError for an unknown or a missing one."""
        if not self.speakers:
            if speaker is not None:
                raise SpeechUnitsError(f"{self.path}: a single-voice model has no speaker {speaker!r}")
            return None
        if speaker is None:
            if len(self.speakers) == 1:
                return 0
            raise SpeechUnitsError(f"{self.path}: give a speaker (--speaker), one of {some_of(self.speakers)}")
        if speaker not in self.speakers:
            raise SpeechUnitsError(f"{self.path}: unknown speaker {speaker!r}; known: {some_of(self.speakers)}")
        return self.speakers.index(speaker)

    def tokens(self, text: str, voice: str | None = None, *, phones: bool = False) -> list[int]:
        """Symbol ids of ``text``: phonemised with the recorded voice unless ``voice`` is given, or, with
        ``phones``, read as space-separated phone symbols of the model's own inventory (a model trained
        on alignments whose phones are not espeak-ng's, e.g. ARPAbet from a forced aligner)."""
        from speechunits.seq2seq.text import PHONES, text_tokens

        if phones:
            if self.input_kind != PHONES:
                raise SpeechUnitsError(f"{self.path} reads {self.input_kind}, not phones: give text, not --phones")
            symbols = text.split()
            if not symbols:
                raise SpeechUnitsError("empty phone sequence: nothing to say")
        else:
            voice = voice or self.meta["input"].get("voice")
            if self.input_kind == PHONES and not voice:
                shown = " ".join(self.symbols.symbols[:8])
                raise SpeechUnitsError(
                    f"{self.path} reads phones and knows no espeak-ng voice to phonemise text with (its phones came "
                    f"from alignments, e.g. {shown}): give the phones themselves with --phones, or --voice when "
                    "they are espeak-ng's")
            symbols = text_tokens(text, self.input_kind, voice, self.meta["input"].get("rate"))
        return self.symbols.encode(symbols, source=f"{self.path} ({'phones' if phones else 'text'} {text[:40]!r})")

    @torch.no_grad()
    def units_of(self, texts: Sequence[str], speaker: str | None = None, *, voice: str | None = None,
                 phones: bool = False, duration_scale: float = 1.0, temperature: float = 0.0, seed: int = 0,
                 device: torch.device | str = "cpu") -> list[Any]:
        """Deduplicated :class:`~speechunits.units.Units` (with durations) of each text.

        ``temperature`` 0 takes each frame's argmax unit; above 0 each frame's unit is drawn at that
        temperature, from a generator seeded with ``seed`` afresh for every text (so a text's units do
        not depend on the texts before it). ``phones``: each text is a phone sequence (:meth:`tokens`).
        """
        return self.units_of_tokens([self.tokens(t, voice, phones=phones) for t in texts], speaker,
                                    duration_scale=duration_scale, temperature=temperature, seed=seed,
                                    device=device)

    @torch.no_grad()
    def units_of_tokens(self, token_ids: Sequence[Sequence[int]], speaker: str | None = None, *,
                        duration_scale: float = 1.0, temperature: float = 0.0, seed: int = 0,
                        durations: Sequence[Sequence[int]] | None = None,
                        device: torch.device | str = "cpu") -> list[Any]:
        """:meth:`units_of` from symbol ids; ``durations`` (frames per symbol of each text, e.g. a
        reference's) replace the predicted ones."""
        from speechunits.seq2seq.tasks import collate_sources
        from speechunits.units.units import Units

        row = self.speaker_row(speaker)
        device = torch.device(device)
        self.model.to(device).eval()
        out = []
        if durations is not None and len(durations) != len(token_ids):
            raise SpeechUnitsError(f"{len(durations)} duration lists for {len(token_ids)} texts")
        for i, ids in enumerate(token_ids):  # one at a time: padding-free, so batch size never changes a result
            tokens, lengths = collate_sources([np.asarray(ids, dtype=np.int64)])
            speakers = None if row is None else torch.tensor([row], device=device)
            generator = torch.Generator(device=device).manual_seed(seed) if temperature > 0 else None
            given = None if durations is None else torch.as_tensor(np.asarray(durations[i], dtype=np.int64))[None]
            frames, frame_lengths, _ = self.model.infer(tokens.to(device), lengths.to(device), speakers,
                                                        duration_scale=duration_scale, temperature=temperature,
                                                        generator=generator, durations=given)
            ids_out = frames[0, : int(frame_lengths[0])].cpu().numpy()
            out.append(Units(ids_out, float(self.units["frame_rate"]), int(self.units["k"])).dedup())
        return out


def load_tts(path: str | Path, device: str | torch.device = "cpu") -> TTSBundle:
    """Load a TTS directory written by :func:`speechunits.seq2seq.tts_train.train_tts`."""
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel

    meta = read_meta(path, TTS_FILE, "TTS model")
    try:
        config = TTSConfig.from_dict(meta["config"])
        symbols = SymbolTable.from_json(meta["input"]["symbols"], str(path))
        speakers = list(meta.get("speakers") or [])
    except (KeyError, TypeError) as exc:
        raise SpeechUnitsError(f"{path}/{TTS_FILE}: incomplete ({exc})") from None
    model = TTSModel(config)
    load_weights(path, model)
    return TTSBundle(str(path), model.to(device).eval(), meta, symbols, speakers)


# -- S2UT ------------------------------------------------------------------------------------------

@dataclass
class S2UTBundle:
    """A loaded S2UT (or text translation) model and its source / target descriptions."""

    path: str
    model: Any
    meta: dict[str, Any]
    target_symbols: SymbolTable
    source_symbols: SymbolTable | None = None

    @property
    def source(self) -> dict[str, Any]:
        return self.meta["source"]

    @property
    def target(self) -> dict[str, Any]:
        return self.meta["target"]

    def max_len(self, source_length: int) -> int:
        decoding = self.meta["decoding"]
        return int(np.ceil(decoding["max_len_a"] * source_length + decoding["max_len_b"]))

    @torch.no_grad()
    def decode(self, sources: Sequence[np.ndarray | torch.Tensor], *, beam: int | None = None,
               length_penalty: float | None = None, device: torch.device | str = "cpu") -> list[list[int]]:
        """Target symbol ids (specials dropped) of each source (features ``[T, D]`` or symbol ids ``[T]``)."""
        from speechunits.seq2seq.beam import beam_search, greedy_decode
        from speechunits.seq2seq.tasks import collate_sources

        decoding = self.meta["decoding"]
        beam = int(decoding.get("beam", 5) if beam is None else beam)
        penalty = float(decoding.get("length_penalty", 1.0) if length_penalty is None else length_penalty)
        device = torch.device(device)
        self.model.to(device).eval()
        out = []
        for source in sources:
            x, lengths = collate_sources([source])
            limit = self.max_len(int(lengths[0]))
            if beam == 1:
                out.append(greedy_decode(self.model, x.to(device), lengths.to(device), limit)[0])
            else:
                out.append(beam_search(self.model, x.to(device), int(lengths[0]), beam=beam, max_len=limit,
                                       length_penalty=penalty).ids)
        return out


def load_s2ut(path: str | Path, device: str | torch.device = "cpu") -> S2UTBundle:
    """Load an S2UT directory written by :func:`speechunits.seq2seq.s2ut_train.train_s2ut`."""
    from speechunits.seq2seq.s2ut_model import Seq2SeqConfig, Seq2SeqModel

    meta = read_meta(path, S2UT_FILE, "S2UT model")
    try:
        config = Seq2SeqConfig.from_dict(meta["config"])
        target_symbols = SymbolTable.from_json(meta["target"]["symbols"], str(path))
        source_symbols = (SymbolTable.from_json(meta["source"]["symbols"], str(path))
                          if meta["source"].get("symbols") else None)
    except (KeyError, TypeError) as exc:
        raise SpeechUnitsError(f"{path}/{S2UT_FILE}: incomplete ({exc})") from None
    model = Seq2SeqModel(config)
    load_weights(path, model)
    return S2UTBundle(str(path), model.to(device).eval(), meta, target_symbols, source_symbols)
