"""Symbol tables of the sequence models: phones, characters or unit ids, plus four specials.

Ids ``0..3`` are ``<pad>``, ``<s>`` (decoder start), ``</s>`` (end) and ``<unk>``; the table's
own symbols follow in the given order, so unit ``u`` of a K-unit codebook is id ``u + 4`` in
:func:`unit_symbols`. A table is saved as its symbol list (in the model's JSON) and its
:attr:`SymbolTable.sha256` names what the ids mean.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from speechunits.errors import SpeechUnitsError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass(frozen=True)
class SymbolTable:
    """Ordered symbols; id of ``symbols[i]`` is ``i + len(SPECIALS)``.

    Attributes:
        symbols: the table's own symbols (no specials), distinct.
        kind: ``"phones"``, ``"chars"`` or ``"units"`` (for the record and error messages).
    """

    symbols: tuple[str, ...]
    kind: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(str(s) for s in self.symbols))
        if len(set(self.symbols)) != len(self.symbols):
            raise SpeechUnitsError(f"{self.kind} symbols: duplicates")
        if set(self.symbols) & set(SPECIALS):
            raise SpeechUnitsError(f"{self.kind} symbols: {SPECIALS} are reserved")
        object.__setattr__(self, "_index", {s: i + len(SPECIALS) for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        """Size of the id space (specials included)."""
        return len(SPECIALS) + len(self.symbols)

    def encode(self, seq: Iterable[str], *, unknown: str = "raise", source: str = "") -> list[int]:
        """Symbols to ids; an unseen symbol raises (``unknown="raise"``) or becomes ``<unk>`` (``"unk"``)."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        ids, missing = [], []
        for s in seq:
            i = index.get(s)
            if i is None:
                missing.append(s)
                i = UNK
            ids.append(i)
        if missing and unknown == "raise":
            shown = ", ".join(repr(m) for m in dict.fromkeys(missing))
            where = f"{source}: " if source else ""
            raise SpeechUnitsError(f"{where}{self.kind} {shown} never occurred in the training data of this model")
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to symbols, specials dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i >= len(SPECIALS):
                if i >= len(self):
                    raise SpeechUnitsError(f"{self.kind} symbols: id {i} outside [0, {len(self)})")
                out.append(self.symbols[i - len(SPECIALS)])
        return out

    @property
    def sha256(self) -> str:
        payload = json.dumps({"kind": self.kind, "symbols": list(self.symbols)}, ensure_ascii=False,
                             separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_json(self) -> dict:
        return {"kind": self.kind, "symbols": list(self.symbols), "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict, source: str) -> "SymbolTable":
        try:
            table = cls(tuple(data["symbols"]), str(data["kind"]))
        except (KeyError, TypeError) as exc:
            raise SpeechUnitsError(f"{source}: bad symbol table ({exc})") from None
        if data.get("sha256") not in (None, table.sha256):
            raise SpeechUnitsError(f"{source}: symbol table does not match its sha256 (file edited?)")
        return table


def unit_symbols(k: int) -> SymbolTable:
    """The table of unit ids ``0..k-1`` (unit ``u`` has id ``u + 4``)."""
    if k < 1:
        raise SpeechUnitsError(f"a unit vocabulary needs K >= 1, got {k}")
    return SymbolTable(tuple(str(u) for u in range(k)), "units")


def units_to_ids(units: Sequence[int]) -> list[int]:
    """Unit ids to symbol ids (``u + 4``)."""
    return [int(u) + len(SPECIALS) for u in units]


def ids_to_units(ids: Iterable[int]) -> list[int]:
    """Symbol ids to unit ids, specials dropped."""
    return [int(i) - len(SPECIALS) for i in ids if int(i) >= len(SPECIALS)]


def symbols_of(sequences: Iterable[Sequence[str]], kind: str) -> SymbolTable:
    """A table of every symbol in ``sequences``, sorted (the same data give the same ids)."""
    found = sorted({s for seq in sequences for s in seq})
    if not found:
        raise SpeechUnitsError(f"no {kind} to build a symbol table from")
    return SymbolTable(tuple(found), kind)
