"""Label vocabularies and text tokenizers of the probes.

* :class:`Vocabulary`: an ordered list of label strings; a label's id is its index. CTC
  vocabularies (phones, characters) hold the blank ``"<blank>"`` at id 0 (:data:`BLANK_ID`);
  class vocabularies (speakers, utterance labels, frame labels) have no blank. Builders sort
  the labels, so the same labels give the same ids whatever their order of appearance.
  Saved as one JSON file; :attr:`Vocabulary.sha256` identifies the content.
* :class:`TextTokenizer`: text to CTC target ids for ``asr``, either characters
  (:func:`char_tokenizer`) or a BPE trained with Hugging Face ``tokenizers``
  (:func:`bpe_tokenizer`); for ``slots``, characters and slot tags (:func:`slot_tokenizer`). Characters
  and BPE apply :func:`normalize_text` first (slot texts come normalised, :mod:`speechunits.probe.slots`);
  all keep id 0 for the CTC blank (a BPE token's id is its ``tokenizers`` id + 1).

Text normalisation (:func:`normalize_text`, the same for references and tokenizers):
Unicode NFKC, lower case, every character that is not a letter, combining mark, digit or
apostrophe becomes a space, runs of whitespace become one space, ends stripped. So
``"Hello, World!"`` becomes ``"hello world"``. In character vocabularies the word
boundary (space) is the token ``"|"`` (:data:`WORD_BOUNDARY`, wav2vec 2.0's convention).
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object

VOCAB_FORMAT_VERSION = 1
#: The CTC blank's token and id in CTC vocabularies and tokenizers.
BLANK = "<blank>"
BLANK_ID = 0
#: Character vocabularies write the space between words as this token.
WORD_BOUNDARY = "|"
#: BPE tokens that begin a word start with this mark (``Metaspace``'s replacement character).
BPE_WORD_START = "\u2581"
#: The unknown-token of BPE tokenizers (characters never seen in training text).
UNK = "<unk>"
#: File names inside a tokenizer directory.
BPE_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"
#: Names the normalisation applied by :func:`normalize_text` (stored with saved tokenizers).
NORMALIZATION = "nfkc-lower-keep-letters-marks-digits-apostrophes-v1"
_KEPT_CATEGORIES = ("L", "M", "N")
_APOSTROPHES = "'’"


def normalize_text(text: str) -> str:
    """The text normalisation of ``asr`` references and tokenizers (see module docstring).

    ``"It's  a Test-run."`` → ``"it's a test run"``; curly apostrophes become ``'``.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    chars = []
    for ch in text:
        if ch in _APOSTROPHES:
            chars.append("'")
        elif unicodedata.category(ch)[0] in _KEPT_CATEGORIES:
            chars.append(ch)
        else:
            chars.append(" ")
    return " ".join("".join(chars).split())


def text_to_chars(text: str) -> list[str]:
    """Normalised characters of ``text``, the space written as :data:`WORD_BOUNDARY`."""
    return [WORD_BOUNDARY if ch == " " else ch for ch in normalize_text(text)]


def chars_to_text(chars: Iterable[str]) -> str:
    """Inverse of :func:`text_to_chars` on normalised text (repeated or edge boundaries collapse)."""
    return " ".join("".join(" " if c == WORD_BOUNDARY else c for c in chars).split())


@dataclass(frozen=True)
class Vocabulary:
    """Labels and their ids (id = index in :attr:`tokens`).

    Attributes:
        tokens: the labels; ``tokens[blank]`` is :data:`BLANK` when ``blank`` is set.
        blank: id of the CTC blank (0), or ``None`` for a class vocabulary.
        kind: what the labels are (``"phones"``, ``"chars"``, ``"classes"``), for the record.
    """

    tokens: tuple[str, ...]
    blank: int | None = BLANK_ID
    kind: str = "phones"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if len(set(self.tokens)) != len(self.tokens):
            raise SpeechUnitsError(f"{self.kind} vocabulary: duplicate labels")
        if self.blank is not None and not (0 <= self.blank < len(self.tokens) and self.tokens[self.blank] == BLANK):
            raise SpeechUnitsError(f"{self.kind} vocabulary: id {self.blank} must be {BLANK!r}")
        if self.blank is None and BLANK in self.tokens:
            raise SpeechUnitsError(f"{self.kind} vocabulary: label {BLANK!r} is reserved for the CTC blank")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    def index(self, token: str) -> int:
        """Id of ``token``; unknown labels raise :class:`SpeechUnitsError`."""
        try:
            return self._index[token]  # type: ignore[attr-defined,no-any-return]
        except KeyError:
            raise SpeechUnitsError(f"{self.kind} vocabulary has no label {token!r}") from None

    def encode(self, seq: Iterable[str]) -> list[int]:
        """Labels to ids; a label outside the vocabulary raises :class:`SpeechUnitsError` naming it."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        ids, unknown = [], []
        for token in seq:
            i = index.get(token)
            if i is None:
                unknown.append(token)
            else:
                ids.append(i)
        if unknown:
            shown = ", ".join(repr(t) for t in dict.fromkeys(unknown))
            raise SpeechUnitsError(f"{self.kind} vocabulary has no label {shown} (labels unseen when it was built)")
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to labels; the blank is dropped. Ids outside ``[0, len)`` raise."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise SpeechUnitsError(f"{self.kind} vocabulary: id {i} outside [0, {len(self.tokens)})")
            if i != self.blank:
                out.append(self.tokens[i])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format_version": VOCAB_FORMAT_VERSION, "kind": self.kind, "blank": self.blank,
                "tokens": list(self.tokens)}

    @property
    def sha256(self) -> str:
        """Hash of the kind, blank and labels in order (what the ids mean)."""
        payload = json.dumps({"kind": self.kind, "blank": self.blank, "tokens": list(self.tokens)},
                             ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary as JSON (with its sha256) to ``path``."""
        path = Path(path)
        data = dict(self.to_json(), sha256=self.sha256)
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Vocabulary":
        """Read a file written by :meth:`save`; a changed file (sha256 mismatch) is refused."""
        path = Path(path)
        data = read_json_object(path)
        try:
            version = int(data["format_version"])
            vocab = cls(tuple(str(t) for t in data["tokens"]), data["blank"], str(data["kind"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeechUnitsError(f"{path}: not a speechunits vocabulary ({exc})") from None
        if version > VOCAB_FORMAT_VERSION:
            raise SpeechUnitsError(f"{path}: vocabulary format {version} is newer than this speechunits "
                                   f"({VOCAB_FORMAT_VERSION})")
        if data.get("sha256") is not None and data["sha256"] != vocab.sha256:
            raise SpeechUnitsError(f"{path}: sha256 does not match the labels (file edited?)")
        return vocab


def _sorted_labels(labels: Iterable[str], what: str) -> list[str]:
    found = sorted(set(labels))
    if not found:
        raise SpeechUnitsError(f"{what} vocabulary: no labels to build it from")
    return found


def phone_vocabulary(sequences: Iterable[Sequence[str]]) -> Vocabulary:
    """CTC vocabulary of the phones in ``sequences``: blank at 0, then the phones sorted."""
    return Vocabulary((BLANK, *_sorted_labels((p for seq in sequences for p in seq), "phones")), BLANK_ID, "phones")


def char_vocabulary(texts: Iterable[str]) -> Vocabulary:
    """CTC vocabulary of the characters of ``texts`` after :func:`normalize_text`.

    Blank at 0, then the characters sorted; the space is :data:`WORD_BOUNDARY` (``"|"``).
    """
    return Vocabulary((BLANK, *_sorted_labels((c for t in texts for c in text_to_chars(t)), "chars")),
                      BLANK_ID, "chars")


def class_vocabulary(labels: Iterable[str]) -> Vocabulary:
    """Class vocabulary (no blank) of the distinct ``labels``, sorted: speakers, utterance or frame labels."""
    return Vocabulary(tuple(_sorted_labels(labels, "classes")), None, "classes")


class TextTokenizer:
    """Text ↔ CTC target ids for ``asr``: characters or a Hugging Face BPE.

    Id 0 is the CTC blank. Characters: ids of :func:`char_vocabulary`. BPE: ``tokenizers`` id + 1.
    ``encode`` normalises the text first (:func:`normalize_text`); ``decode(encode(t)) ==
    normalize_text(t)`` for text whose characters were seen in training.

    Build with :func:`char_tokenizer` or :func:`bpe_tokenizer`; :meth:`save` writes
    ``chars.json`` (a :class:`Vocabulary`) or ``tokenizer.json`` (loadable by
    ``tokenizers.Tokenizer.from_file``; it expects normalised text and knows nothing of the
    +1 shift) into a directory, :meth:`load` reads either back.
    """

    def __init__(self, *, chars: Vocabulary | None = None, bpe: Any = None):
        if (chars is None) == (bpe is None):
            raise ValueError("TextTokenizer: give exactly one of chars= or bpe=")
        self._chars = chars
        self._bpe = bpe
        self.kind = ("slots" if chars.kind == "slots" else "chars") if chars is not None else "bpe"
        if chars is not None:
            self.tokens: list[str] = list(chars.tokens)
        else:
            vocab = bpe.get_vocab()
            self.tokens = [BLANK] + [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]

    @property
    def vocab_size(self) -> int:
        """Number of CTC output classes, the blank included."""
        return len(self.tokens)

    @property
    def blank(self) -> int:
        return BLANK_ID

    def encode(self, text: str) -> list[int]:
        """Text to ids (never 0); characters unseen in training raise (chars) or become ``<unk>`` (BPE)."""
        if self.kind == "slots":
            from speechunits.probe.slots import slot_tokens

            return self._chars.encode(slot_tokens(text))  # type: ignore[union-attr]
        if self._chars is not None:
            return self._chars.encode(text_to_chars(text))
        normalised = normalize_text(text)
        if not normalised:
            return []
        return [i + 1 for i in self._bpe.encode(normalised, add_special_tokens=False).ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to normalised text; blanks (0) are dropped."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise SpeechUnitsError(f"{self.kind} tokenizer: id {i} outside [0, {self.vocab_size})")
        if self.kind == "slots":
            from speechunits.probe.slots import tokens_to_slot_text

            return tokens_to_slot_text(self._chars.decode(ids))  # type: ignore[union-attr]
        if self._chars is not None:
            return chars_to_text(self._chars.decode(ids))
        text = self._bpe.decode([i - 1 for i in ids if i != BLANK_ID], skip_special_tokens=False)
        return " ".join(text.split())

    @property
    def sha256(self) -> str:
        """Identity of the mapping text ↔ ids (the saved file's content)."""
        if self._chars is not None:
            return self._chars.sha256
        return hashlib.sha256(self._bpe.to_str().encode("utf-8")).hexdigest()

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``chars.json`` or ``tokenizer.json`` into ``directory``; returns the file written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._chars is not None:
            return self._chars.save(directory / CHARS_FILE)
        path = directory / BPE_FILE
        path.write_text(self._bpe.to_str(pretty=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "TextTokenizer":
        """Read the tokenizer that :meth:`save` wrote into ``directory``."""
        directory = Path(directory)
        chars, bpe = directory / CHARS_FILE, directory / BPE_FILE
        if chars.is_file() and bpe.is_file():
            raise SpeechUnitsError(f"{directory}: holds both {CHARS_FILE} and {BPE_FILE}; keep one")
        if chars.is_file():
            return cls(chars=Vocabulary.load(chars))
        if bpe.is_file():
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(bpe))
            except Exception as exc:  # tokenizers raises a bare Exception
                raise SpeechUnitsError(f"{bpe}: unreadable tokenizer ({exc})") from None
            return cls(bpe=tokenizer)
        raise SpeechUnitsError(f"{directory}: no text tokenizer ({CHARS_FILE} or {BPE_FILE})")


def char_tokenizer(texts: Iterable[str]) -> TextTokenizer:
    """Character tokenizer over the normalised characters of ``texts`` (the training split's text)."""
    return TextTokenizer(chars=char_vocabulary(texts))


def slot_tokenizer(texts: Iterable[str]) -> TextTokenizer:
    """Characters and slot tags of slot texts (:mod:`speechunits.probe.slots`; the training split's
    labels): blank at 0, then the tokens sorted. Saved as ``chars.json`` of kind ``slots``."""
    from speechunits.probe.slots import slot_tokens

    tokens = _sorted_labels((t for text in texts for t in slot_tokens(text)), "slot tokens")
    return TextTokenizer(chars=Vocabulary((BLANK, *tokens), BLANK_ID, "slots"))


def bpe_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> TextTokenizer:
    """Train a BPE on the normalised ``texts`` (the training split's text) with HF ``tokenizers``.

    Words are split on spaces (``Metaspace``: a word-initial token carries ``▁``), every
    character of the training text is in the alphabet and ``<unk>`` stands for characters
    never seen.

    Args:
        vocab_size: BPE tokens wanted (``<unk>`` and the alphabet included; the CTC output has
            one more, the blank). Fewer are learnt when the text runs out of pairs.
        min_frequency: a pair must occur this often to be merged.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    normalised = [t for t in (normalize_text(text) for text in texts) if t]
    if not normalised:
        raise SpeechUnitsError("BPE tokenizer: no training text (all transcripts empty?)")
    alphabet = sorted({ch for t in normalised for ch in t if ch != " "})
    smallest = len(alphabet) + 2  # + the word-start mark and <unk>
    if vocab_size < smallest:
        raise SpeechUnitsError(f"BPE vocabulary size {vocab_size} is smaller than the {len(alphabet)} characters "
                               f"of the text + the word-start mark + {UNK}; use at least {smallest} (or characters)")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=BPE_WORD_START, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=BPE_WORD_START, prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[UNK],
                                  initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(normalised, trainer)
    return TextTokenizer(bpe=tokenizer)
