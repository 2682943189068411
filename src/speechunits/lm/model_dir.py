"""A unit LM directory and the loaded model that scores, samples and corrects units.

Layout of ``LM/``::

    config.json, model.safetensors, generation_config.json    the transformers model
    tokenizer.json, tokenizer_config.json ...                  its tokenizer (AutoTokenizer)
    lm.json                                                    what it consumes (below), its config
    bpe/                                                       the unit BPE (``--tokens bpe:DIR``)
    codebook/                                                  the codebook (``--codebook``), for audio input
    training/                                                  checkpoints of the one training loop

``lm.json``: ``format_version``, ``objective``, ``config`` (:class:`LMConfig`), ``vocab``
(:class:`LMVocab`), ``consumes`` (``codebook_sha256``, ``k``, ``frame_rate``,
``frame_offset_s``, ``encoder``, ``layer``, ``tokenisation``, ``codebook``: the codebook's
JSON), ``data`` (source store, utterances, tokens), ``frames_per_unit`` and
``frames_per_token`` (means over the training data: sampling lengths and durations),
``interleave`` (words file and probability, or null). n-gram LMs (``objective: "ngram"``) hold
``lm.arpa`` instead of the transformers files (:mod:`speechunits.lm.ngram_dir`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.lm.config import LMConfig
from speechunits.lm.vocab import LMVocab

LM_FORMAT_VERSION = 1
META_FILE = "lm.json"
BPE_DIR = "bpe"
CODEBOOK_DIR = "codebook"


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    meta = read_json_object(path, missing=f"{directory}: not a unit LM directory (no {META_FILE}; written by "
                                          "`speechunits lm train`)")
    if meta.get("format_version") != LM_FORMAT_VERSION:
        raise SpeechUnitsError(f"{path}: format_version {meta.get('format_version')} is not {LM_FORMAT_VERSION}")
    return meta


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, directory / META_FILE)


def check_codebook(consumes: dict[str, Any], sha256: str | None, source: str, lm_path: str | Path) -> None:
    """Refuse units of another codebook, naming both."""
    expected = consumes.get("codebook_sha256")
    if sha256 != expected:
        raise SpeechUnitsError(f"{source}: units of codebook {sha256}, but the LM {lm_path} was trained on units of "
                               f"codebook {expected} (K={consumes.get('k')}); encode the input with that codebook")


@dataclass
class UnitLM:
    """A loaded unit LM: ``model`` (eval mode, on ``device``), ``vocab``, ``meta`` (lm.json), ``path``."""

    model: Any
    vocab: LMVocab
    meta: dict[str, Any]
    path: Path
    device: Any

    @property
    def objective(self) -> str:
        return str(self.meta["objective"])

    @property
    def consumes(self) -> dict[str, Any]:
        return dict(self.meta["consumes"])

    @property
    def config(self) -> LMConfig:
        return LMConfig.from_dict(self.meta["config"])

    @property
    def frame_rate(self) -> float:
        return float(self.consumes["frame_rate"])

    @property
    def trained_length(self) -> int:
        """The longest sequence the LM was trained on, ``<s>`` and ``</s>`` included (its config's
        ``max_tokens``): scoring and sampling never give it a longer context."""
        return int((self.meta.get("config") or {}).get("max_tokens") or self.model.config.max_position_embeddings)

    @property
    def codebook_dir(self) -> Path | None:
        path = self.path / CODEBOOK_DIR
        return path if (path / "codebook.json").is_file() else None

    def check_store(self, store: Any) -> None:
        """Refuse a :class:`UnitStore` of another codebook (or a multi-stream one)."""
        if store.streams > 1:
            raise SpeechUnitsError(f"{store.path}: a {store.streams}-stream store; unit LMs read one stream")
        check_codebook(self.consumes, store.meta.get("codebook_sha256"), str(store.path), self.path)

    def tokens(self, ids: np.ndarray, durations: np.ndarray | None = None) -> np.ndarray:
        """Token ids (no specials) of one utterance's units."""
        return self.vocab.encode_units(ids, durations)


def load_lm(path: str | os.PathLike[str], device: str = "auto", *, objective: str | None = None) -> UnitLM:
    """Load ``LM/`` with ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM``, or an n-gram LM's ARPA file
    (:mod:`speechunits.lm.ngram_dir`); ``objective`` refuses the others."""
    import transformers

    from speechunits.device import resolve_device

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per load
    path = Path(path)
    meta = read_meta(path)
    if objective is not None and meta["objective"] != objective:
        raise SpeechUnitsError(f"{path}: a{'n' if meta['objective'] == 'ngram' else ''} {meta['objective']} LM; "
                               f"this needs a {objective} one (`speechunits lm train --objective {objective}`)")
    if meta["objective"] == "ngram":
        from speechunits.lm.ngram_dir import load_ngram_lm

        return load_ngram_lm(path, meta)
    if not (path / "config.json").is_file():
        raise SpeechUnitsError(f"{path}: no model yet (config.json missing: training has not reached a checkpoint)")
    vocab = LMVocab.from_dict(meta["vocab"], path / BPE_DIR if meta["vocab"]["tokenisation"] == "bpe" else None)
    auto = transformers.AutoModelForCausalLM if meta["objective"] == "causal" else transformers.AutoModelForMaskedLM
    dev = resolve_device(device)
    try:
        model = auto.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, SafetensorError ... on bad files
        raise SpeechUnitsError(f"{path}: unreadable model files, config.json or model.safetensors damaged "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from None
    model = model.to(dev).eval()
    if model.config.vocab_size != vocab.size:
        raise SpeechUnitsError(f"{path}: model vocabulary {model.config.vocab_size} != tokenizer's {vocab.size}")
    return UnitLM(model, vocab, meta, path, dev)
