"""The unit LM's token vocabulary and its Hugging Face tokenizer.

Token ids, in this order:

* ``0..4``: the specials ``<pad> <s> </s> <unk> <mask>``;
* ``5..5+U-1``: the U unit tokens: the K units of the codebook (``--tokens units|dedup``) or
  the tokens of a unit BPE (``--tokens bpe:DIR``, ``speechunits bpe train``), in their own order;
* then the text words of interleaved unit-text training (``[word]``, sorted), if any.

The tokenizer's input text is the units as private-use characters
(:func:`speechunits.units.bpe.units_to_text`, one per unit), text words written ``[word]``:
``tokenizer("\\ue00c\\ue007[cat]")`` gives ``<s> unit12 unit7 [cat] </s>``. Without merges the
BPE model splits the text into characters, so units mode is a per-unit lookup; in BPE mode the
unit BPE's merges apply (shifted by the specials). Library code maps units to ids directly
(:meth:`LMVocab.encode_units`); tests check that this equals the saved tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
SPECIALS = (PAD, BOS, EOS, UNK, MASK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = range(len(SPECIALS))
NUM_SPECIAL = len(SPECIALS)
TOKENISATIONS = ("units", "dedup", "bpe")


def word_token(word: str) -> str:
    """How a text word is written in the tokenizer's input (``[word]``)."""
    return f"[{word}]"


@dataclass
class LMVocab:
    """Tokenisation of units (and words) into LM token ids.

    Attributes:
        tokenisation: "units" (one token per frame), "dedup" (one per run of equal units) or
            "bpe" (BPE tokens over deduplicated units).
        unit_vocab_size: K of the codebook.
        bpe: the :class:`speechunits.units.bpe.UnitBPE` in BPE mode, else None.
        words: the text vocabulary of interleaved training (sorted), else empty.
    """

    tokenisation: str
    unit_vocab_size: int
    bpe: Any = None
    words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tokenisation not in TOKENISATIONS:
            raise SpeechUnitsError(f"tokenisation must be one of {TOKENISATIONS}, got {self.tokenisation!r}")
        if (self.tokenisation == "bpe") != (self.bpe is not None):
            raise SpeechUnitsError("a BPE is needed for (and only for) --tokens bpe:DIR")
        if self.bpe is not None and self.bpe.unit_vocab_size != self.unit_vocab_size:
            raise SpeechUnitsError(f"the BPE covers {self.bpe.unit_vocab_size} units but the codebook has "
                                   f"{self.unit_vocab_size}")
        self.words = sorted(set(self.words))
        self._word_ids = {w: self.word_offset + i for i, w in enumerate(self.words)}

    @property
    def num_unit_tokens(self) -> int:
        return int(self.bpe.vocab_size) if self.bpe is not None else self.unit_vocab_size

    @property
    def word_offset(self) -> int:
        return NUM_SPECIAL + self.num_unit_tokens

    @property
    def size(self) -> int:
        """Model vocabulary size."""
        return self.word_offset + len(self.words)

    @property
    def frame_level(self) -> bool:
        """True when one token is one frame (``units``)."""
        return self.tokenisation == "units"

    # -- units <-> ids ----------------------------------------------------------------------------
    def unit_sequence(self, ids: np.ndarray, durations: np.ndarray | None = None) -> np.ndarray:
        """The unit ids the tokenisation reads: frames (expanded) or deduplicated runs."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.frame_level:
            return ids if durations is None else np.repeat(ids, durations)
        if ids.size == 0:
            return ids
        keep = np.concatenate(([True], ids[1:] != ids[:-1]))
        return ids[keep]

    def encode_units_batch(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Unit sequences (already :meth:`unit_sequence`) to token ids without specials."""
        for ids in sequences:
            if ids.size and (ids.min() < 0 or ids.max() >= self.unit_vocab_size):
                raise SpeechUnitsError(f"unit ids must lie in [0, {self.unit_vocab_size}), got "
                                       f"[{ids.min()}, {ids.max()}]")
        if self.bpe is None:
            return [np.asarray(ids, dtype=np.int64) + NUM_SPECIAL for ids in sequences]
        return [t + NUM_SPECIAL for t in self.bpe.encode_batch([np.asarray(s, dtype=np.int64) for s in sequences])]

    def encode_units(self, ids: np.ndarray, durations: np.ndarray | None = None) -> np.ndarray:
        """One utterance's units (frame-level, or deduplicated with durations) to token ids."""
        return self.encode_units_batch([self.unit_sequence(ids, durations)])[0]

    def decode_units(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids to unit ids (specials and words dropped)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        keep = tokens[(tokens >= NUM_SPECIAL) & (tokens < self.word_offset)] - NUM_SPECIAL
        if self.bpe is None:
            return keep
        return self.bpe.decode(keep)

    def units_per_token(self, tokens: np.ndarray) -> np.ndarray:
        """Units each unit token stands for (1 except in BPE mode)."""
        if self.bpe is None:
            return np.ones(len(tokens), dtype=np.int64)
        return self.bpe.token_lengths[np.asarray(tokens) - NUM_SPECIAL]

    def word_id(self, word: str) -> int:
        try:
            return self._word_ids[word]
        except KeyError:
            raise SpeechUnitsError(f"word {word!r} is not in the LM's text vocabulary") from None

    # -- the Hugging Face tokenizer ----------------------------------------------------------------
    def hf_tokenizer(self) -> Any:
        """A ``transformers.PreTrainedTokenizerFast`` giving the same ids (see the module docstring)."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, processors
        from transformers import PreTrainedTokenizerFast

        from speechunits.units.bpe import unit_char

        vocab = {tok: i for i, tok in enumerate(SPECIALS)}
        merges: list[tuple[str, str]] = []
        if self.bpe is None:
            vocab.update({unit_char(u): NUM_SPECIAL + u for u in range(self.unit_vocab_size)})
        else:
            model = json.loads(self.bpe.tokenizer.to_str())["model"]
            vocab.update({tok: NUM_SPECIAL + int(i) for tok, i in model["vocab"].items()})
            merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK))
        tokenizer.decoder = decoders.Fuse()
        tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIALS])
        if self.words:
            tokenizer.add_tokens([AddedToken(word_token(w), single_word=False, normalized=False) for w in self.words])
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)])
        if tokenizer.get_vocab_size() != self.size:
            raise SpeechUnitsError(f"tokenizer has {tokenizer.get_vocab_size()} tokens, expected {self.size}")
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                       unk_token=UNK, mask_token=MASK)

    def save_tokenizer(self, directory: Path) -> None:
        self.hf_tokenizer().save_pretrained(str(directory))

    # -- persistence (in lm.json) ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokenisation": self.tokenisation, "unit_vocab_size": self.unit_vocab_size,
                               "num_special": NUM_SPECIAL, "vocab_size": self.size, "words": self.words}
        if self.bpe is not None:
            out["bpe_sha256"] = self.bpe.sha256
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], bpe_dir: Path | None = None) -> "LMVocab":
        bpe = None
        if data["tokenisation"] == "bpe":
            from speechunits.units.bpe import UnitBPE

            if bpe_dir is None:
                raise SpeechUnitsError("this LM reads BPE tokens: its BPE directory is missing")
            bpe = UnitBPE.load(bpe_dir)
            if bpe.sha256 != data.get("bpe_sha256"):
                raise SpeechUnitsError(f"{bpe_dir}: BPE {bpe.sha256[:12]} is not the one the LM was trained with "
                                       f"({str(data.get('bpe_sha256'))[:12]})")
        return cls(data["tokenisation"], int(data["unit_vocab_size"]), bpe, list(data.get("words") or []))


def parse_tokens_option(text: str) -> tuple[str, Path | None]:
    """``units`` | ``dedup`` | ``bpe:DIR`` -> (tokenisation, BPE dir)."""
    if text in ("units", "dedup"):
        return text, None
    if text.startswith("bpe:") and len(text) > 4:
        return "bpe", Path(text[4:])
    raise SpeechUnitsError(f"--tokens {text!r}: expected units, dedup or bpe:DIR")
