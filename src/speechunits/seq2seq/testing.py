"""Test fixtures of the sequence models: a tiny parallel corpus in the ``synth parallel`` layout.

:func:`tiny_pairs` builds ``OUT/src/`` and ``OUT/tgt/`` with :func:`speechunits.synth.testing.small_corpus`
(cached espeak-ng corpora) and ``OUT/pairs.tsv`` pairing the i-th source utterance with the
i-th target utterance (not translations of each other: a fixed mapping, enough to check that
a model learns and the files are read). Splits: every ``dev_every``-th pair is dev, the next test.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from speechunits.seq2seq.data import PAIR_COLUMNS


def _texts(corpus: Path) -> list[tuple[str, str]]:
    rows = []
    for line in (corpus / "text.tsv").read_text(encoding="utf-8").splitlines():
        utt, text = line.split("\t", 1)
        rows.append((utt, text))
    return rows


def write_pairs(path: Path, rows: list[tuple[str, str, str, str, str, str]]) -> Path:
    """Write ``pairs.tsv`` (header of contract C) from ``(id, source, target, source_text, target_text, split)`` rows."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(PAIR_COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(row) + "\n")
    return path


def tiny_pairs(out: str | Path, *, minutes: float = 0.5, speakers: int = 2, dev_every: int = 0,
               source_language: str = "es", target_language: str = "en") -> Path:
    """``out/pairs.tsv`` over two small synth corpora (see the module docstring); returns its path."""
    from speechunits.synth.testing import small_corpus

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, language, seed in (("src", source_language, 0), ("tgt", target_language, 1)):
        built = small_corpus(out / f".{name}-build", minutes=minutes, speakers=speakers, seed=seed,
                             languages=(language,))
        if not (out / name).exists():
            shutil.copytree(built, out / name)
            manifest = out / name / "manifest.tsv"
            lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
            lines[0] = f"{(out / name / 'wavs').resolve()}\n"
            manifest.write_text("".join(lines), encoding="utf-8")
        made[name] = _texts(out / name)
    rows = []
    for i, ((s_id, s_text), (t_id, t_text)) in enumerate(zip(made["src"], made["tgt"])):
        split = "train"
        if dev_every and i % dev_every == dev_every - 2:
            split = "dev"
        elif dev_every and i % dev_every == dev_every - 1:
            split = "test"
        rows.append((f"pair{i:04d}", s_id, t_id, s_text, t_text, split))
    return write_pairs(out / "pairs.tsv", rows)
