"""An n-gram unit LM directory (``speechunits lm ngram``): the count baseline, scored like the transformers.

Layout of ``LM/``::

    lm.arpa      the model in ARPA format (kenlm, CTC decoders and SRILM read it); token ``i`` is
                 spelled ``str(i)``: the unit id for ``units`` / ``dedup``, the BPE token id for ``bpe``
    lm.json      as for the transformer LMs (``objective: "ngram"``, ``vocab``, ``consumes``, ``data``)
                 plus ``ngram``: order, smoothing, discounts per order, n-grams per order
    bpe/, codebook/   as for the transformer LMs

``load_lm`` returns it as a :class:`UnitLM` whose ``model`` is an :class:`ArpaLM`, so ``lm score``
and ``lm benchmark`` take it like any unit LM; ``lm sample`` and ``units correct`` refuse it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from speechunits.errors import SpeechUnitsError
from speechunits.lm.model_dir import BPE_DIR, LM_FORMAT_VERSION, UnitLM, write_meta
from speechunits.lm.ngram import SMOOTHINGS, NGramLM
from speechunits.lm.vocab import NUM_SPECIAL, LMVocab

log = logging.getLogger(__name__)

ARPA_FILE = "lm.arpa"
NGRAM_OBJECTIVE = "ngram"


def train_ngram_lm(store_path: str | Path, out_dir: str | Path, *, order: int = 5, smoothing: str = "kneser-ney",
                   tokens: str = "units", bpe_dir: str | Path | None = None,
                   codebook_dir: str | Path | None = None) -> dict[str, Any]:
    """Count an n-gram LM of ``order`` on ``store_path``'s units into ``out_dir``; returns its lm.json.

    Args:
        tokens: "units", "dedup" or "bpe" (then ``bpe_dir`` is the unit BPE, copied into the LM).
        smoothing: "kneser-ney" (interpolated modified Kneser-Ney) or "witten-bell".
        codebook_dir: the store's codebook, copied into ``LM/codebook`` so that the LM can read audio.
    """
    from speechunits.lm.train import _copy_codebook, consumes_of, open_training_store, training_rows, unit_bpe_for

    if order < 1:
        raise SpeechUnitsError(f"--order must be >= 1, got {order}")
    if smoothing not in SMOOTHINGS:
        raise SpeechUnitsError(f"unknown --smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
    out = Path(out_dir)
    if (out / ARPA_FILE).exists():
        raise SpeechUnitsError(f"{out}: already holds an n-gram LM; pick another -o")
    store = open_training_store(store_path)
    bpe = unit_bpe_for(tokens, bpe_dir, store)
    rows = training_rows(store, store_path)
    vocab = LMVocab(tokens, store.vocab_size, bpe, [])
    encoded = vocab.encode_units_batch([vocab.unit_sequence(u.ids, u.durations) for _, u, _ in rows])
    token_count = sum(t.size for t in encoded)
    if token_count == 0:
        raise SpeechUnitsError(f"{store_path}: every utterance of the unit store is empty; nothing to train on")
    frames = sum(u.num_frames for _, u, _ in rows)
    unit_runs = sum(u.dedup().ids.size for _, u, _ in rows)
    model = NGramLM(order, vocab.num_unit_tokens, smoothing=smoothing).fit(t - NUM_SPECIAL for t in encoded)
    meta = {
        "format_version": LM_FORMAT_VERSION,
        "objective": NGRAM_OBJECTIVE,
        "config": None,
        "ngram": {"order": order, "smoothing": smoothing, "discounts": model.discounts,
                  "ngrams": [sum(len(c) for c in level.values()) for level in model.counts]},
        "vocab": vocab.to_dict(),
        "consumes": consumes_of(store, tokens),
        "data": {"source": str(store_path), "utterances": len(rows), "tokens": token_count, "frames": frames},
        "frames_per_unit": frames / max(unit_runs, 1),
        "frames_per_token": frames / max(token_count, 1),
        "interleave": None,
    }
    out.mkdir(parents=True, exist_ok=True)
    if bpe is not None:
        bpe.save(out / BPE_DIR)
    if codebook_dir is not None:
        _copy_codebook(codebook_dir, store.meta.get("codebook_sha256"), out)
    tmp = model.to_arpa(out / (ARPA_FILE + ".tmp"))
    tmp.replace(out / ARPA_FILE)
    write_meta(out, meta)
    log.info("%s: %d-gram (%s) on %d utterances, %d tokens (%s)", out, order, smoothing, len(rows), token_count,
             tokens)
    return meta


def load_ngram_lm(path: Path, meta: dict[str, Any]) -> UnitLM:
    """The :class:`UnitLM` of an n-gram LM directory (``meta``: its lm.json); scores run on the CPU."""
    import torch

    from speechunits.lm.arpa import read_arpa

    if not (path / ARPA_FILE).is_file():
        raise SpeechUnitsError(f"{path}: no {ARPA_FILE} (written by `speechunits lm ngram`)")
    vocab = LMVocab.from_dict(meta["vocab"], path / BPE_DIR if meta["vocab"]["tokenisation"] == "bpe" else None)
    return UnitLM(read_arpa(path / ARPA_FILE), vocab, meta, path, torch.device("cpu"))


def score_ngram(lm: UnitLM, tokens: list[Any]) -> list[tuple[float, int]]:
    """``(sum ln p, positions)`` of token sequences without specials, under an n-gram :class:`UnitLM`."""
    return [lm.model.score([str(int(t) - NUM_SPECIAL) for t in seq]) for seq in tokens]


def train_word_ngram(sentences: list[str], out_path: str | Path, *, order: int = 3,
                     smoothing: str = "kneser-ney") -> dict[str, Any]:
    """Count a word n-gram on ``sentences`` (normalised as ``asr`` probes normalise text) into an ARPA file.

    The LM of :mod:`speechunits.probe.lm_decode`; returns ``{"sentences", "words", "vocabulary", "ngrams"}``.
    """
    from speechunits.probe.vocab import normalize_text

    if order < 1:
        raise SpeechUnitsError(f"--order must be >= 1, got {order}")
    tokenised = [normalize_text(s).split() for s in sentences]
    tokenised = [t for t in tokenised if t]
    if not tokenised:
        raise SpeechUnitsError("no words in the text: nothing to count")
    words = sorted({w for t in tokenised for w in t})
    index = {w: i for i, w in enumerate(words)}
    model = NGramLM(order, len(words), smoothing=smoothing).fit([index[w] for w in t] for t in tokenised)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model.to_arpa(path.with_name(path.name + ".tmp"), names=words)
    tmp.replace(path)
    return {"sentences": len(tokenised), "words": sum(len(t) for t in tokenised), "vocabulary": len(words),
            "ngrams": [sum(len(c) for c in level.values()) for level in model.counts]}
