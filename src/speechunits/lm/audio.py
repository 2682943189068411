"""Audio to the units an LM reads: through the codebook it records (``LM/codebook`` or ``--codebook``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from speechunits.errors import SpeechUnitsError
from speechunits.lm.model_dir import UnitLM, check_codebook


def lm_tokenizer(lm: UnitLM, *, codebook: str | Path | None = None, encoder: str | None = None) -> Any:
    """A :class:`UnitTokenizer` (frame-level) for ``lm``'s codebook.

    Args:
        codebook: the codebook directory (default: the copy in ``LM/codebook``); refused unless it
            is the one the LM was trained on.
        encoder: the encoder's name or directory if it moved since the codebook was made.
    """
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.units.tokenizer import UnitTokenizer

    source = Path(codebook) if codebook is not None else lm.codebook_dir
    if source is None:
        raise SpeechUnitsError(f"{lm.path}: the LM holds no codebook (train it with --codebook CB, or pass "
                               "--codebook CB: the codebook its units came from) so it cannot read audio")
    loaded = Codebook.load(source)
    check_codebook(lm.consumes, loaded.sha256, f"--codebook {source}", lm.path)
    name = encoder or loaded.encoder_name
    if not name:
        raise SpeechUnitsError(f"{source}: the codebook does not name its encoder; pass --encoder")
    return UnitTokenizer(load_encoder(name, device=str(lm.device)), [loaded])


def encode_audio(lm: UnitLM, corpus_path: str | Path, *, codebook: str | Path | None = None,
                 encoder: str | None = None, quiet: bool = True) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """``([(utt_id, Units)], {utt_id: error})`` of every file of a corpus (``open_corpus``)."""
    from speechunits.corpus import open_corpus
    from speechunits.units.encode_corpus import local_results

    corpus = open_corpus(corpus_path).require_utterances()  # a wrong path is named before the codebook is looked for
    tokenizer = lm_tokenizer(lm, codebook=codebook, encoder=encoder)
    units: list[tuple[str, Any]] = []
    errors: dict[str, str] = {}
    for result in local_results(tokenizer)(corpus):
        if result.streams is None:
            errors[result.utt.id] = str(result.error)
        else:
            units.append((result.utt.id, result.streams[0]))
    return units, errors
