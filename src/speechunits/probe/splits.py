"""Train/dev/test splits of a corpus for probes.

:func:`make_split` is deterministic: the parts depend only on the set of ids (and speakers),
the fractions and the seed, not on the order the ids come in; each part lists its ids in the
order they were given. Two ways:

* ``by="speaker"``: whole speakers go to one part, so dev and test speakers are unseen in
  training; the fractions count speakers; every part gets at least one speaker.
* ``by="utterance"``: utterances are split; with ``speakers`` given, each speaker's utterances
  are split separately (stratified, so that every speaker is in training, as a speaker-ID
  probe needs; a speaker with fewer than three utterances may miss from dev or test).

Counts per part: dev = ``max(1, round(n * f_dev))``, test = ``max(1, round(n * f_test))``,
train = the rest (at least one), for ``n`` speakers (``by="speaker"``) or utterances
(``by="utterance"`` without speakers). Stratified splits use ``round`` per speaker without the
minimum and only require each part non-empty overall.

:func:`split_from_file` reads a user's own split (``utt<TAB>train|dev|test``);
:func:`split_from_lists` the split a corpus ships as lists of its dev and test files (Speech
Commands' ``validation_list.txt`` and ``testing_list.txt``; the rest is training); :meth:`Split.save`
and :meth:`Split.load` keep a split as JSON in the probe directory. :func:`dev_sample` picks the dev
utterances a sweep watches while it trains.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.layouts.speech_commands import SPLIT_LISTS

SPLIT_FORMAT_VERSION = 1
PARTS = ("train", "dev", "test")
SPLIT_BY = ("utterance", "speaker")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Split:
    """Utterance ids of the three parts (disjoint); ``info`` records how the split was made."""

    train: list[str]
    dev: list[str]
    test: list[str]
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in PARTS:
            for utt in getattr(self, name):
                if utt in seen:
                    raise SpeechUnitsError(f"split: utterance {utt!r} is in both {seen[utt]} and {name}")
                seen[utt] = name

    def part(self, name: str) -> list[str]:
        """The ids of ``"train"``, ``"dev"`` or ``"test"``."""
        if name not in PARTS:
            raise SpeechUnitsError(f"unknown split part {name!r}; choose one of {', '.join(PARTS)}")
        return list(getattr(self, name))

    def restrict(self, keep: Sequence[str] | set[str]) -> "Split":
        """The same split with only the ids in ``keep`` (e.g. the labelled utterances)."""
        keep = set(keep)
        return Split(*([u for u in getattr(self, name) if u in keep] for name in PARTS), info=dict(self.info))

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in PARTS}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split as JSON (``format_version``, ``info``, and the three id lists)."""
        path = Path(path)
        data = {"format_version": SPLIT_FORMAT_VERSION, "info": self.info,
                **{name: list(getattr(self, name)) for name in PARTS}}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Split":
        """Read a split written by :meth:`save`."""
        path = Path(path)
        data = read_json_object(path, missing=f"{path}: split file not found")
        if not all(isinstance(data.get(n), list) for n in PARTS):
            raise SpeechUnitsError(f"{path}: not a split file (needs 'train', 'dev' and 'test' lists)")
        version = data.get("format_version", 0)
        if not isinstance(version, int) or version > SPLIT_FORMAT_VERSION:
            raise SpeechUnitsError(f"{path}: split format {version!r} is not one this speechunits reads "
                                   f"(up to {SPLIT_FORMAT_VERSION})")
        try:
            return cls(*([str(u) for u in data[n]] for n in PARTS), info=dict(data.get("info") or {}))
        except SpeechUnitsError as exc:
            raise SpeechUnitsError(f"{path}: {exc}") from None


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise SpeechUnitsError(f"split fractions: need three (train, dev, test), got {list(fractions)}")
    values = tuple(float(f) for f in fractions)
    if not all(math.isfinite(f) and f > 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise SpeechUnitsError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    return values  # type: ignore[return-value]


def _counts(n: int, fractions: tuple[float, float, float], minimum: int) -> tuple[int, int, int]:
    dev = max(minimum, round(n * fractions[1]))
    test = max(minimum, round(n * fractions[2]))
    return n - dev - test, dev, test


def _shuffled(items: Sequence[str], seed: int, *salt: int) -> list[str]:
    ordered = sorted(items)
    rng = np.random.default_rng([seed, *salt])
    return [ordered[i] for i in rng.permutation(len(ordered))]


def dev_sample(ids: Sequence[str], size: int | None) -> list[str]:
    """The ``size`` utterances of ``ids`` a sweep evaluates while it trains (``--dev-sample``).

    Deterministic for the set of ids (not their order): a seeded shuffle of the sorted ids, its first
    ``size``, listed in the order ``ids`` gives them. ``None`` or a size of at least ``len(ids)``: all.
    """
    if size is not None and size < 1:
        raise SpeechUnitsError(f"--dev-sample: expected at least 1 utterance, got {size}")
    if size is None or size >= len(ids):
        return list(ids)
    chosen = set(_shuffled(ids, 0, 7)[:size])
    return [i for i in ids if i in chosen]


def make_split(ids: Sequence[str], *, by: str = "utterance", speakers: Mapping[str, str] | None = None,
               fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0, least_speakers: int = 1) -> Split:
    """Split ``ids`` into train/dev/test (see the module docstring for the rules).

    Args:
        ids: utterance ids (unique).
        by: ``"speaker"`` (needs ``speakers``) or ``"utterance"``.
        speakers: ``{utt: speaker}``; with ``by="utterance"`` it stratifies by speaker.
        fractions: train, dev, test shares, positive, summing to 1.
        seed: the shuffle's seed.
        least_speakers: by speaker: at least this many speakers in dev and in test, whatever the
            fractions (a ``verify`` probe scores pairs of speakers, so it asks for 2).

    Raises:
        SpeechUnitsError: unknown ``by``, bad fractions, duplicate ids, utterances without a
            speaker, too few speakers/utterances for three non-empty parts.
    """
    if by not in SPLIT_BY:
        raise SpeechUnitsError(f"split by {by!r}? choose one of {', '.join(SPLIT_BY)}")
    shares = _check_fractions(fractions)
    ids = list(ids)
    seen: set[str] = set()
    for utt in ids:
        if utt in seen:
            raise SpeechUnitsError(f"split: utterance {utt!r} given twice")
        seen.add(utt)
    if by == "speaker" and speakers is None:
        raise SpeechUnitsError("split by speaker needs the speakers of the utterances (speakers.tsv)")
    if speakers is not None:
        unknown = [u for u in ids if u not in speakers]
        if unknown:
            raise SpeechUnitsError(f"split: {len(unknown)} utterances have no speaker (first: "
                                   f"{', '.join(repr(u) for u in unknown[:3])})")
    part_of: dict[str, str] = {}
    if by == "speaker" and speakers is not None:
        names = _shuffled(list({speakers[u] for u in ids}), seed)
        least = max(1, int(least_speakers))
        train, dev, test = _counts(len(names), shares, least)
        if train < 1:
            raise SpeechUnitsError(f"split by speaker: {len(names)} speakers cannot fill train, dev and test "
                                   f"(fractions {list(shares)}, at least {least} speakers in dev and in test); need "
                                   f"at least {2 * least + 1}, and more for these fractions")
        speaker_part = {s: _part_at(i, train, dev) for i, s in enumerate(names)}
        part_of = {u: speaker_part[speakers[u]] for u in ids}
    elif speakers is None:
        train, dev, test = _counts(len(ids), shares, 1)
        if train < 1:
            raise SpeechUnitsError(f"split: {len(ids)} utterances cannot fill train, dev and test "
                                   f"(fractions {list(shares)})")
        part_of = {u: _part_at(i, train, dev) for i, u in enumerate(_shuffled(ids, seed))}
    else:
        groups: dict[str, list[str]] = {}
        for u in ids:
            groups.setdefault(speakers[u], []).append(u)
        for number, name in enumerate(sorted(groups)):
            members = _shuffled(groups[name], seed, number)
            train, dev, _ = _counts(len(members), shares, 0)  # the rest of the group is test
            if train < 1:  # tiny group: training first
                train, dev = 1, max(0, min(dev, len(members) - 1))
            part_of.update({u: _part_at(i, train, dev) for i, u in enumerate(members)})
    split = Split(*([u for u in ids if part_of[u] == name] for name in PARTS),
                  info={"by": by, "fractions": list(shares), "seed": seed,
                        "stratified": by == "utterance" and speakers is not None})
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise SpeechUnitsError(f"split by utterance within speakers left {', '.join(empty)} empty "
                               f"(speakers have too few utterances); split without speakers or by speaker")
    return split


def _part_at(position: int, train: int, dev: int) -> str:
    if position < train:
        return "train"
    return "dev" if position < train + dev else "test"


#: VoxCeleb1's identification split (``iden_split.txt``): ``N id10001/1zcIwhmdeo4/00001.wav`` lines.
_VOXCELEB_LINE = re.compile(r"^(?P<part>[123]) (?P<path>\S+)$")
_VOXCELEB_PARTS = {"1": "train", "2": "dev", "3": "test"}


def split_from_file(path: str | os.PathLike[str]) -> Split:
    """A user's split from ``utt<TAB>train|dev|test`` lines (no header; blank lines skipped), or
    VoxCeleb1's ``iden_split.txt`` (``1|2|3 SPEAKER/VIDEO/NNNNN.wav``: train, dev, test; ids the paths
    without extension, as a scan of the ``wav/`` folder names the files; SUPERB's speaker-identification split).

    Raises:
        SpeechUnitsError: missing file, a line that is not ``utt<TAB>part`` (or all VoxCeleb lines), an
            unknown part, an utterance twice (naming ``file:line``), or no training utterance.
    """
    from speechunits.files import iter_text_lines

    parts: dict[str, list[str]] = {name: [] for name in PARTS}
    seen: set[str] = set()
    lines = list(iter_text_lines(path, "split file"))
    voxceleb = bool(lines) and _VOXCELEB_LINE.match(lines[0][1].strip()) is not None
    for line_no, line in lines:
        if voxceleb:
            hit = _VOXCELEB_LINE.match(line.strip())
            if hit is None:
                raise SpeechUnitsError(f"{path}:{line_no}: expected VoxCeleb's '1|2|3 PATH', got {line[:80]!r}")
            cols = [Path(hit["path"]).with_suffix("").as_posix(), _VOXCELEB_PARTS[hit["part"]]]
        else:
            cols = line.split("\t")
        if len(cols) != 2 or not cols[0].strip():
            raise SpeechUnitsError(f"{path}:{line_no}: expected utt<TAB>train|dev|test, got {line[:80]!r}")
        utt, name = cols[0].strip(), cols[1].strip()
        if name not in PARTS:
            raise SpeechUnitsError(f"{path}:{line_no}: unknown part {name!r} (train, dev or test)")
        if utt in seen:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r} listed twice")
        seen.add(utt)
        parts[name].append(utt)
    if not parts["train"]:
        raise SpeechUnitsError(f"{path}: no training utterance")
    return Split(parts["train"], parts["dev"], parts["test"],
                 info={"by": "file", "file": str(path), **({"format": "voxceleb"} if voxceleb else {})})


def split_from_trials(trial_ids: Sequence[str], speakers: Mapping[str, str], *, dev_share: float = 0.1,
                      seed: int = 0, source: str = "trials") -> Split:
    """A speaker-verification split from the utterances a trial list names (``trial_ids``, matched to the
    corpus's ids already): they are the test part; the other utterances of their speakers are left out;
    the remaining speakers are shuffled (``seed``) and ``dev_share`` of them (at least 2) are dev, the rest
    train. VoxCeleb1's ``veri_test2.txt`` over the whole of ``wav/`` gives SUPERB's ASV split (its
    1,211 dev speakers train, its 40 test speakers test).

    Raises:
        SpeechUnitsError: no trial utterance among ``speakers``; too few other speakers for a dev and a
            training part.
    """
    test = sorted(set(trial_ids) & set(speakers))
    if not test:
        raise SpeechUnitsError(f"{source}: none of the utterances its trials name is a labelled utterance of the corpus")
    held = {speakers[u] for u in test}
    names = _shuffled(sorted({s for u, s in speakers.items() if s not in held}), seed)
    n_dev = max(2, int(round(dev_share * len(names))))
    if len(names) < n_dev + 1:
        raise SpeechUnitsError(f"{source}: {len(names)} speakers are not in its trials; a dev part of {n_dev} and "
                               "a training part need more")
    dev_speakers = set(names[:n_dev])
    rest = [u for u in speakers if speakers[u] not in held]
    return Split([u for u in rest if speakers[u] not in dev_speakers], [u for u in rest if speakers[u] in dev_speakers],
                 test, info={"by": "trials", "file": source, "dev_share": dev_share, "seed": seed,
                             "left_out": sum(1 for u in speakers if speakers[u] in held) - len(test)})


def split_by_fold(ids: Sequence[str], fold_of: Mapping[str, Any], fold: Any, *, dev_share: float = 0.2,
                  seed: int = 0, by: str = "fold") -> Split:
    """Cross-validation fold ``fold``: the utterances whose fold (``fold_of``, compared as text) is
    ``fold`` are the test part; the others are shuffled (``seed``) and ``dev_share`` of them is dev,
    the rest training (s3prl's emotion folds; ESC-50-style ``fold`` columns). Ids without a fold are left out.

    Raises:
        SpeechUnitsError: ``fold`` is not one of the folds present.
    """
    folds = {utt: str(fold_of[utt]) for utt in ids if utt in fold_of}
    present = sorted(set(folds.values()), key=lambda f: (len(f), f))
    if str(fold) not in present:
        raise SpeechUnitsError(f"--fold {fold}: the corpus's {by}s are {', '.join(present) or 'none'}")
    rest = [utt for utt in ids if utt in folds and folds[utt] != str(fold)]
    order = np.random.default_rng(seed).permutation(len(rest))
    n_dev = int(round(dev_share * len(rest)))
    dev = sorted(rest[i] for i in order[:n_dev])
    train = sorted(rest[i] for i in order[n_dev:])
    test = [utt for utt in ids if folds.get(utt) == str(fold)]
    return Split(train, dev, test, info={"by": by, "fold": str(fold), "dev_share": dev_share, "seed": seed})


def split_lists_of(root: str | os.PathLike[str]) -> Path | None:
    """``root`` when it is a directory holding both of :data:`SPLIT_LISTS`, else ``None``."""
    path = Path(root)
    return path if path.is_dir() and all((path / name).is_file() for name in SPLIT_LISTS.values()) else None


def split_from_lists(root: str | os.PathLike[str], ids: Sequence[str]) -> Split:
    """The split ``root`` ships: ids (file paths without extension) in ``validation_list.txt`` are
    dev, in ``testing_list.txt`` test, the ``_background_noise_`` clips as
    :func:`speechunits.layouts.speech_commands.noise_clip_part` assigns them, every other id of ``ids``
    train; listed files that are not in ``ids`` are left out (counted in ``info["unlisted"]``).

    Raises:
        SpeechUnitsError: a list missing or not UTF-8, a file in both lists, no training utterance.
    """
    from speechunits.files import iter_text_lines

    root = Path(root)
    part_of: dict[str, str] = {}
    for part, name in SPLIT_LISTS.items():
        for line_no, line in iter_text_lines(root / name, "split list"):
            utt = Path(line.strip()).with_suffix("").as_posix()
            if part_of.get(utt, part) != part:
                raise SpeechUnitsError(f"{root / name}:{line_no}: {line.strip()!r} is also in "
                                       f"{SPLIT_LISTS[part_of[utt]]}")
            part_of[utt] = part
    from speechunits.layouts.speech_commands import noise_clip_part

    known = set(ids)
    part_of.update({u: part for u in ids if u not in part_of and (part := noise_clip_part(u)) is not None})
    split = Split(*([u for u in ids if part_of.get(u, "train") == name] for name in PARTS),
                  info={"by": "lists", "lists": [str(root / n) for n in SPLIT_LISTS.values()],
                        "unlisted": sum(1 for u in part_of if u not in known)})
    if not split.train:
        raise SpeechUnitsError(f"{root}: every utterance is in {' or '.join(SPLIT_LISTS.values())}; none left to train on")
    return split


def split_from_parts(parts: Mapping[str, str], ids: Sequence[str], source: str) -> Split:
    """The split given by ``parts`` (``{id: train|dev|test}``, e.g. the dataset's own splits) over ``ids``;
    ids without a part are left out.

    Raises:
        SpeechUnitsError: a part left empty.
    """
    split = Split(*([u for u in ids if parts.get(u) == name] for name in PARTS), info={"by": "dataset", "source": source})
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise SpeechUnitsError(f"{source}: the dataset's splits leave {', '.join(empty)} without a labelled utterance")
    return split
