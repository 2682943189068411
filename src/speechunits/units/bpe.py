"""BPE over deduplicated units, with Hugging Face ``tokenizers``; exactly reversible.

Each unit id becomes one private-use Unicode character (``U+E000 + id``, then
``U+F0000 + (id - 6400)`` past the BMP's 6400 private-use points), an utterance becomes one
string (no pre-tokenizer, no normalizer), and a byte-less BPE model is trained on those
strings with every unit in the initial alphabet - so every unit sequence is encodable, and
concatenating the tokens' characters gives the units back exactly.

Durations: BPE runs over *deduplicated* units. A token store keeps, per utterance,
``tokens`` (token ids), ``token_durations`` (frames per token, what a duration-aware unit LM
wants) and ``durations`` (frames per deduplicated unit), so decoding gives the exact unit
sequence and durations; a frame-level source store is re-expanded. The token store's
metadata embeds the source store's metadata, so ``decode`` rebuilds the identical store.

A BPE directory holds ``tokenizer.json`` (loadable by ``transformers.PreTrainedTokenizerFast``:
its input text is :func:`units_to_text`) and ``bpe.json`` (our metadata).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.units.parquet_dir import (
    DEFAULT_ROWS_PER_FILE,
    ShardWriter,
    check_same,
    directory_meta,
    iter_record_batches,
    list_column,
    read_file_meta,
    shard_files,
)
from speechunits.units.store import UnitStore, write_units
from speechunits.units.units import Units

BPE_FORMAT_VERSION = 1
TOKENS_KIND = "bpe_tokens"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "bpe.json"
_BMP_BASE, _BMP_COUNT = 0xE000, 0x1900  # U+E000..U+F8FF
_PLANE15_BASE, _PLANE15_COUNT = 0xF0000, 0xFFFE  # U+F0000..U+FFFFD
MAX_UNITS = _BMP_COUNT + _PLANE15_COUNT
TOKENS_MATCH_KEYS = ("kind", "bpe_sha256", "source_codebook_sha256")


def unit_char(unit: int) -> str:
    """The private-use character standing for ``unit``."""
    if not 0 <= unit < MAX_UNITS:
        raise SpeechUnitsError(f"BPE supports unit ids in [0, {MAX_UNITS}), got {unit}")
    return chr(_BMP_BASE + unit) if unit < _BMP_COUNT else chr(_PLANE15_BASE + unit - _BMP_COUNT)


def units_to_text(ids: Sequence[int] | np.ndarray) -> str:
    """Unit ids ``[N]`` to the BPE input string (one character per unit)."""
    return "".join(unit_char(int(u)) for u in ids)


def text_to_units(text: str) -> np.ndarray:
    """Inverse of :func:`units_to_text`: int64 ``[N]``."""
    codes = np.fromiter((ord(ch) for ch in text), dtype=np.int64, count=len(text))
    bmp = (codes >= _BMP_BASE) & (codes < _BMP_BASE + _BMP_COUNT)
    plane15 = (codes >= _PLANE15_BASE) & (codes < _PLANE15_BASE + _PLANE15_COUNT)
    if not np.all(bmp | plane15):
        raise SpeechUnitsError(f"text holds characters that are not unit characters: {text[:20]!r}")
    return np.where(bmp, codes - _BMP_BASE, codes - _PLANE15_BASE + _BMP_COUNT)


class UnitBPE:
    """A trained unit BPE: ``tokenizer`` (HF ``tokenizers.Tokenizer``) + ``meta`` (bpe.json)."""

    def __init__(self, tokenizer: Any, meta: dict[str, Any]):
        self.tokenizer = tokenizer
        self.meta = meta
        self.unit_vocab_size = int(meta["unit_vocab_size"])
        vocab = tokenizer.get_vocab()
        self.vocab_size = len(vocab)
        #: units of every token id: list of int64 arrays.
        self.token_units: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * self.vocab_size
        for token, index in vocab.items():
            self.token_units[index] = text_to_units(token)
        self.token_lengths = np.array([t.size for t in self.token_units], dtype=np.int64)
        if self.token_lengths.min(initial=1) < 1:
            raise SpeechUnitsError("BPE vocabulary holds an empty token")

    @property
    def sha256(self) -> str:
        return str(self.meta["sha256"])

    # -- training / persistence ------------------------------------------------------------------
    @classmethod
    def train(cls, sequences: Iterable[np.ndarray], unit_vocab_size: int, vocab_size: int, *,
              min_frequency: int = 2, source_meta: dict[str, Any] | None = None) -> "UnitBPE":
        """Train on deduplicated unit sequences (int ``[N_i]`` each).

        Args:
            unit_vocab_size: K; all K units are in the vocabulary even if unseen.
            vocab_size: target vocabulary size (>= K); fewer merges are learnt if the data runs out.
            min_frequency: a pair must occur this often to be merged.
        """
        from tokenizers import Tokenizer, decoders, models, trainers

        if vocab_size < unit_vocab_size:
            raise SpeechUnitsError(f"--vocab {vocab_size} must be >= the number of units {unit_vocab_size}")
        if unit_vocab_size > MAX_UNITS:
            raise SpeechUnitsError(f"BPE supports at most {MAX_UNITS} units, codebook has {unit_vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=[unit_char(u) for u in range(unit_vocab_size)],
            special_tokens=[],
            show_progress=False,
        )
        count = [0]

        def texts() -> Iterator[str]:
            for ids in sequences:
                count[0] += 1
                yield units_to_text(ids)

        tokenizer.train_from_iterator(texts(), trainer)
        meta = {
            "format_version": BPE_FORMAT_VERSION,
            "unit_vocab_size": unit_vocab_size,
            "vocab_size": tokenizer.get_vocab_size(),
            "requested_vocab_size": vocab_size,
            "min_frequency": min_frequency,
            "training_utterances": count[0],
            "char_mapping": "U+E000 + unit (unit < 6400), else U+F0000 + unit - 6400",
            "source_codebook_sha256": (source_meta or {}).get("codebook_sha256"),
            "sha256": hashlib.sha256(tokenizer.to_str().encode()).hexdigest(),
        }
        return cls(tokenizer, meta)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` and ``bpe.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        text = self.tokenizer.to_str()
        (directory / TOKENIZER_FILE).write_text(text, encoding="utf-8")
        meta = dict(self.meta, sha256=hashlib.sha256(text.encode()).hexdigest())
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self.meta = meta
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "UnitBPE":
        from tokenizers import Tokenizer

        directory = Path(directory)
        tok_path, meta_path = directory / TOKENIZER_FILE, directory / META_FILE
        for path in (tok_path, meta_path):
            if not path.is_file():
                raise SpeechUnitsError(f"{path}: missing (not a speechunits BPE directory?)")
        text = tok_path.read_text(encoding="utf-8")
        meta = read_json_object(meta_path)
        if hashlib.sha256(text.encode()).hexdigest() != meta.get("sha256"):
            raise SpeechUnitsError(f"{tok_path}: sha256 does not match {META_FILE} (file changed or truncated)")
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises a bare Exception
            raise SpeechUnitsError(f"{tok_path}: unreadable tokenizer ({exc})") from exc
        return cls(tokenizer, meta)

    # -- encode / decode -------------------------------------------------------------------------
    def encode_batch(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Deduplicated unit sequences to token ids (int64 ``[M_i]`` each)."""
        for ids in sequences:
            if ids.size and int(ids.max()) >= self.unit_vocab_size:
                raise SpeechUnitsError(f"unit {int(ids.max())} outside the BPE's {self.unit_vocab_size} units")
        encodings = self.tokenizer.encode_batch([units_to_text(ids) for ids in sequences], add_special_tokens=False)
        return [np.asarray(enc.ids, dtype=np.int64) for enc in encodings]

    def encode(self, ids: np.ndarray) -> np.ndarray:
        return self.encode_batch([ids])[0]

    def decode(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids to unit ids, int64 ``[N]``."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise SpeechUnitsError(f"token ids must lie in [0, {self.vocab_size})")
        if tokens.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self.token_units[t] for t in tokens])

    def token_durations(self, tokens: np.ndarray, durations: np.ndarray) -> np.ndarray:
        """Frames per token from frames per unit: sums over each token's units."""
        if tokens.size == 0:
            return np.zeros(0, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(self.token_lengths[tokens])[:-1]))
        return np.add.reduceat(durations, starts)


# -- token stores ----------------------------------------------------------------------------------
def tokens_schema() -> pa.Schema:
    lists = pa.list_(pa.int32())
    return pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("tokens", lists, nullable=False),
                      pa.field("token_durations", lists, nullable=False), pa.field("durations", lists, nullable=False),
                      pa.field("num_frames", pa.int64(), nullable=False),
                      pa.field("duration_s", pa.float64(), nullable=False)])


def _check_source(bpe: UnitBPE, store: UnitStore) -> None:
    if store.vocab_size != bpe.unit_vocab_size:
        raise SpeechUnitsError(f"{store.path}: K={store.vocab_size} but the BPE was trained on "
                               f"{bpe.unit_vocab_size} units")
    trained_on = bpe.meta.get("source_codebook_sha256")
    if trained_on and store.meta.get("codebook_sha256") != trained_on:
        raise SpeechUnitsError(f"{store.path}: units of codebook {store.meta.get('codebook_sha256')}, but the BPE "
                               f"was trained on units of codebook {trained_on}")


def train_bpe(store: UnitStore, vocab_size: int, *, min_frequency: int = 2) -> UnitBPE:
    """Train a BPE on the deduplicated units of ``store``."""
    sequences = (units.dedup().ids for _, units in store)
    return UnitBPE.train(sequences, store.vocab_size, vocab_size, min_frequency=min_frequency, source_meta=store.meta)


def encode_store(store: UnitStore, bpe: UnitBPE, out_dir: str | os.PathLike[str], *,
                 batch_size: int = 256, rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> int:
    """Write the BPE tokens of every utterance of ``store`` into a token store; returns rows written.

    Resumable like the unit store: utterances already in ``out_dir`` are skipped.
    """
    _check_source(bpe, store)
    meta = {"format_version": BPE_FORMAT_VERSION, "kind": TOKENS_KIND, "bpe_sha256": bpe.sha256,
            "bpe_vocab_size": bpe.vocab_size, "source_codebook_sha256": store.meta.get("codebook_sha256"),
            "units": store.meta}
    written = 0
    with ShardWriter(out_dir, tokens_schema(), meta, match_keys=TOKENS_MATCH_KEYS, prefix="tokens",
                     rows_per_file=rows_per_file) as writer:
        batch: list[tuple[str, Units, float]] = []

        def flush() -> None:
            nonlocal written
            encoded = bpe.encode_batch([units.ids for _, units, _ in batch])
            for (utt_id, units, seconds), tokens in zip(batch, encoded):
                durations = units.durations
                writer.add({"id": utt_id, "tokens": tokens.astype(np.int32),
                            "token_durations": bpe.token_durations(tokens, durations).astype(np.int32),
                            "durations": durations.astype(np.int32), "num_frames": units.num_frames,
                            "duration_s": seconds})
                written += 1
            batch.clear()

        for utt_id, units, seconds in store.iter_rows():
            if utt_id in writer.done:
                continue
            batch.append((utt_id, units.dedup(), seconds))
            if len(batch) >= batch_size:
                flush()
        flush()
    return written


def open_tokens(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Path]]:
    """Metadata and shards of a token store (all shards must agree)."""
    path = Path(path)
    if not path.is_dir():
        raise SpeechUnitsError(f"{path}: no such token directory")
    shards = shard_files(path)
    meta = directory_meta(path, shards)
    if meta is None or meta.get("kind") != TOKENS_KIND:
        raise SpeechUnitsError(f"{path}: not a BPE token directory (written by `speechunits bpe encode`)")
    for shard in shards:
        check_same(meta, read_file_meta(shard), TOKENS_MATCH_KEYS, str(shard),
                       hint="shards of different token stores were mixed in one directory")
    return meta, shards


def iter_tokens(path: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]:
    """``(utt_id, tokens, token_durations, unit_durations, duration_s)`` of a token store."""
    _, shards = open_tokens(path)
    for _, batch in iter_record_batches(shards):
        ids = batch.column("id").to_pylist()
        tokens, token_durs, durs = (list_column(batch, c) for c in ("tokens", "token_durations", "durations"))
        seconds = batch.column("duration_s").to_pylist()
        for i, utt_id in enumerate(ids):
            yield utt_id, tokens(i), token_durs(i), durs(i), seconds[i]


def decode_tokens(tokens_dir: str | os.PathLike[str], bpe: UnitBPE, out_dir: str | os.PathLike[str]) -> UnitStore:
    """Rebuild the unit store a token store was made from (identical ids, units, durations, metadata)."""
    meta, _ = open_tokens(tokens_dir)
    if meta["bpe_sha256"] != bpe.sha256:
        raise SpeechUnitsError(f"{tokens_dir}: tokens were made with BPE {meta['bpe_sha256'][:12]}, "
                               f"not with the given one ({bpe.sha256[:12]})")
    source = meta["units"]
    rate, k = float(source["frame_rate"]), int(source["vocab_size"])
    seconds: dict[str, float] = {}

    def items() -> Iterator[tuple[str, Units]]:
        for utt_id, tokens, token_durs, durs, secs in iter_tokens(tokens_dir):
            ids = bpe.decode(tokens)
            if ids.size != durs.size or not np.array_equal(bpe.token_durations(tokens, durs), token_durs):
                raise SpeechUnitsError(f"{tokens_dir}: {utt_id!r}: tokens and durations do not agree")
            units = Units(ids, rate, k, durs)
            seconds[utt_id] = secs
            yield utt_id, units if source["dedup"] else units.expand()

    # ``seconds`` is filled as ``items`` is consumed, before write_units looks each id up.
    return write_units(out_dir, items(), source["codebook"], dedup=bool(source["dedup"]), durations_s=seconds)
