"""Unit-store probe inputs: one or several streams, deduplicated with durations, or BPE tokens."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.inputs import UNITS, ProbeInput, Sample


class UnitInput(ProbeInput):
    """Units from one or several unit stores (one stream each, or a multi-stream store).

    Args:
        stores: a unit store directory, or several (one stream each: DASB's multi-layer units;
            every store must hold the same frames per utterance).
        dedup: merge repeated units and keep their durations (single stream only); a
            deduplicated store read with ``dedup=False`` is expanded back to frames.
        bpe_dir: a ``speechunits bpe train`` directory: the deduplicated units become BPE tokens
            (implies ``dedup``), durations are frames per token.
        codebooks: the codebook directory of each store, in order (checked by sha256): only needed
            for embedding tables that start from the centroids (:meth:`centroid_tables`).
    """

    kind = UNITS

    def __init__(self, stores: str | Path | Sequence[str | Path], *, dedup: bool = False,
                 bpe_dir: str | Path | None = None, codebooks: Sequence[str | Path] | None = None):
        super().__init__()
        from speechunits.units.store import UnitStore

        paths = [stores] if isinstance(stores, (str, Path)) else list(stores)
        if not paths:
            raise SpeechUnitsError("--units: no unit store given")
        self.stores = [UnitStore.open(p) for p in paths]
        self.dedup = bool(dedup or bpe_dir is not None)
        rates = {store.frame_rate for store in self.stores}
        if len(rates) != 1:
            raise SpeechUnitsError(f"unit stores at different frame rates {sorted(rates)} cannot be read together")
        self.frame_rate = float(rates.pop())
        self.frame_offset_s = float(self.stores[0].meta.get("frame_offset_s") or 0.0)
        self.num_streams = sum(store.streams for store in self.stores)
        if self.dedup and self.num_streams > 1:
            raise SpeechUnitsError(f"{self.num_streams} parallel unit streams cannot be deduplicated (a frame repeats "
                                   "only when every stream does); drop --dedup/--bpe")
        self.bpe = None
        if bpe_dir is not None:
            from speechunits.units.bpe import UnitBPE

            self.bpe = UnitBPE.load(bpe_dir)
            store = self.stores[0]
            trained_on = self.bpe.meta.get("source_codebook_sha256")
            if store.vocab_size != self.bpe.unit_vocab_size or (trained_on and trained_on != store.meta.get(
                    "codebook_sha256")):
                raise SpeechUnitsError(f"{bpe_dir}: BPE trained on units of codebook {str(trained_on)[:12]} "
                                       f"(K={self.bpe.unit_vocab_size}), but {store.path} holds codebook "
                                       f"{str(store.meta.get('codebook_sha256'))[:12]} (K={store.vocab_size})")
        self.bpe_dir = None if bpe_dir is None else Path(bpe_dir)
        self.codebooks = None if not codebooks else self._check_codebooks(codebooks)
        self._centroid_tables: list[torch.Tensor] | None = None

    def _check_codebooks(self, paths: Sequence[str | Path]) -> list[Any]:
        from speechunits.quantize.codebook import Codebook

        if isinstance(paths, (str, Path)):
            paths = [paths]
        if len(paths) != len(self.stores):
            raise SpeechUnitsError(f"--codebook: {len(paths)} given for {len(self.stores)} unit stores (one each, "
                                   "in the order of --units)")
        loaded = []
        for path, store in zip(paths, self.stores):
            codebook = Codebook.load(path)
            held = store.meta.get("codebook_sha256")
            if codebook.sha256 != held:
                raise SpeechUnitsError(f"{path}: codebook {codebook.sha256[:12]}, but {store.path} holds units of "
                                       f"codebook {str(held)[:12]}")
            if store.streams != 1 or codebook.centroids.ndim != 2 or codebook.k != store.vocab_size:
                raise SpeechUnitsError(f"{path}: centroid tables need one [K, D] codebook per single-stream store "
                                       f"({store.path}: {store.streams} streams, K={store.vocab_size})")
            loaded.append(codebook)
        return loaded

    def centroid_tables(self) -> list[torch.Tensor]:
        """Per stream, ``[K, D]`` float32 codebook centroids (``[V, D]`` with BPE: each token's row is the
        mean of its units' centroids), for :meth:`UnitEmbedding.load_centroids`; computed once.

        Raises:
            SpeechUnitsError: no codebooks were given.
        """
        if self.codebooks is None:
            raise SpeechUnitsError("embedding tables from centroids need the codebook of every unit store "
                                   "(--codebook DIR, in the order of --units)")
        if self._centroid_tables is None:
            tables = [torch.as_tensor(np.asarray(cb.centroids, dtype=np.float32)) for cb in self.codebooks]
            if self.bpe is not None:
                units = tables[0]
                tables = [torch.stack([units[torch.as_tensor(self.bpe.decode([token]))].mean(0)
                                       for token in range(self.bpe.vocab_size)])]
            self._centroid_tables = tables
        return self._centroid_tables

    def _stream_vocab_sizes(self) -> list[int]:
        return [store.vocab_size for store in self.stores for _ in range(store.streams)]

    def identity(self) -> dict[str, Any]:
        codebooks = [store.meta.get("codebook", {}) for store in self.stores]
        return {"kind": UNITS,
                "codebook_sha256": [store.meta.get("codebook_sha256") for store in self.stores],
                "streams": self.num_streams, "vocab_sizes": self._stream_vocab_sizes(), "dedup": self.dedup,
                "bpe_sha256": None if self.bpe is None else self.bpe.sha256,
                "frame_rate": self.frame_rate,
                "encoder": [c.get("encoder") for c in codebooks], "layer": [c.get("layer") for c in codebooks],
                "stores": [str(store.path) for store in self.stores],
                "bpe_dir": None if self.bpe_dir is None else str(self.bpe_dir)}

    def model_spec(self) -> dict[str, Any]:
        sizes = [self.bpe.vocab_size] if self.bpe is not None else self._stream_vocab_sizes()
        return {"kind": UNITS, "vocab_sizes": sizes, "durations": self.dedup}

    def available_ids(self) -> list[str]:
        return self.stores[0].ids()

    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        per_store: list[dict[str, Any]] = []
        for store in self.stores:
            rows: dict[str, Any] = {}
            if store.streams > 1:
                for utt_id, multi, _ in store.iter_multistream():
                    if ids is None or utt_id in ids:
                        rows[utt_id] = multi.ids
            else:
                for utt_id, units, _ in store.iter_rows():
                    if ids is None or utt_id in ids:
                        rows[utt_id] = units
            per_store.append(rows)
        wanted = set(per_store[0]) if ids is None else ids
        for utt_id in sorted(wanted):
            missing = [str(s.path) for s, rows in zip(self.stores, per_store) if utt_id not in rows]
            if missing:
                yield utt_id, None, f"not in unit store {', '.join(missing)}"
                continue
            yield (utt_id, *self._sample(utt_id, [rows[utt_id] for rows in per_store]))

    def _sample(self, utt_id: str, streams: list[Any]) -> tuple[Sample | None, str | None]:
        try:
            return unit_sample(streams, dedup=self.dedup, bpe=self.bpe), None
        except SpeechUnitsError as exc:
            return None, f"{utt_id}: {exc}"


def unit_sample(streams: Sequence[Any], *, dedup: bool = False, bpe: Any = None) -> Sample:
    """A :class:`Sample` from one utterance's streams (:class:`Units`, :class:`MultiStreamUnits` or
    ``[T, S]`` arrays, one per store): deduplicated (one stream) and BPE-tokenised when asked."""
    if dedup or bpe is not None:
        if len(streams) != 1 or getattr(streams[0], "num_streams", None) is not None:
            raise SpeechUnitsError("only a single unit stream can be deduplicated")
        units = streams[0].dedup()
        ids, durations = units.ids, units.durations
        if bpe is not None:
            tokens = bpe.encode(ids)
            durations = bpe.token_durations(tokens, durations)
            ids = tokens
        return Sample(units=torch.from_numpy(np.asarray(ids, dtype=np.int64)).reshape(-1, 1),
                      durations=torch.from_numpy(np.asarray(durations, dtype=np.int64)))
    columns = [_frame_ids(s) for s in streams]
    frames = {c.shape[0] for c in columns}
    if len(frames) != 1:
        raise SpeechUnitsError(f"the unit streams hold different frame counts {sorted(frames)}")
    return Sample(units=torch.from_numpy(np.concatenate(columns, axis=1)))


def _frame_ids(stream: Any) -> np.ndarray:
    """int64 ``[T, S]`` from :class:`Units` (expanded), :class:`MultiStreamUnits` or an array."""
    if isinstance(stream, np.ndarray):
        return np.asarray(stream, dtype=np.int64).reshape(stream.shape[0], -1)
    if getattr(stream, "num_streams", None) is not None:  # MultiStreamUnits
        return np.asarray(stream.ids, dtype=np.int64)
    return stream.expand().ids.reshape(-1, 1)
