"""A cached small synthetic corpus for tests (of any module), and the same corpus in other layouts.

``small_corpus(dir)`` returns a synth corpus directory under ``dir``. The first build of a
given (minutes, speakers, languages, seed) is cached under ``$SPEECHUNITS_CACHE``
(default ``~/.cache/speechunits``) and later calls copy it, fixing ``manifest.tsv``'s root.
Builds are byte-identical, so a cached copy equals a fresh build.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from speechunits import __version__


def cache_root() -> Path:
    return Path(os.environ.get("SPEECHUNITS_CACHE", Path.home() / ".cache" / "speechunits")) / "synth"


def small_corpus(
    dir: str | os.PathLike[str],
    minutes: float = 0.5,
    speakers: int = 3,
    seed: int = 0,
    languages: Sequence[str] = ("en",),
) -> Path:
    """A synth corpus (see :mod:`speechunits.synth.corpus` for the layout) at ``dir/synth-<key>``.

    Returns the corpus directory; ``manifest.tsv`` points at its own ``wavs/``.
    """
    from speechunits.synth.corpus import synthesize_corpus

    key_text = f"{__version__}|{minutes}|{speakers}|{seed}|{','.join(languages)}|{_code_digest()}"
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = Path(dir) / f"synth-{key}"
    if (target / "corpus.json").is_file():
        return target
    cached = cache_root() / key
    if not (cached / "corpus.json").is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cached.parent))
        shutil.rmtree(building)
        synthesize_corpus(building, minutes, speakers, languages, seed=seed, quiet=True)
        try:
            building.rename(cached)
        except OSError:  # another process won the race
            shutil.rmtree(building, ignore_errors=True)
    Path(dir).mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".synth-{key}.", dir=Path(dir)))
    shutil.rmtree(partial)
    shutil.copytree(cached, partial)
    manifest = partial / "manifest.tsv"
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = f"{(target / 'wavs').resolve()}\n"
    manifest.write_text("".join(lines), encoding="utf-8")
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _code_digest() -> str:
    """Hash of the synth sources and sentence lists, so edits invalidate the cache."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(list(root.glob("*.py")) + list((root / "data").glob("*.txt"))):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def as_librispeech_tree(corpus: str | os.PathLike[str], root: str | os.PathLike[str]) -> dict[str, str]:
    """Copy a synth corpus into ``root`` laid out as LibriSpeech is: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.wav``
    beside ``SPEAKER-CHAPTER.trans.txt`` (upper-case ``id TEXT`` lines), speakers numbered 100, 101 ...
    in sorted order, chapter 2000; no speakers.tsv and no alignment, as LibriSpeech ships.

    Returns ``{LibriSpeech id: the corpus's utterance id}``.
    """
    corpus, root = Path(corpus), Path(root)
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = dict(line.split("\t", 1) for line in (corpus / "speakers.tsv").read_text().splitlines() if line)
    original: dict[str, str] = {}
    for number, name in enumerate(sorted(set(speakers.values()))):
        speaker, chapter = str(100 + number), "2000"
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for index, utt in enumerate(sorted(u for u in speakers if speakers[u] == name)):
            new = f"{speaker}-{chapter}-{index:04d}"
            shutil.copy(corpus / "wavs" / f"{utt}.wav", folder / f"{new}.wav")
            lines.append(f"{new} {texts[utt].upper()}")
            original[new] = utt
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return original
