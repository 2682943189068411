"""Speaker verification: trials, cosine scoring of utterance embeddings, EER and minDCF.

A *trial* asks whether two utterances have the same speaker (a target trial) or not. Its score
is the cosine similarity of the two utterances' embeddings. Two kinds of trial list:

* every pair of the scored utterances (:func:`all_pair_scores`), which is how a ``verify`` probe's
  dev and test parts are scored, since their speakers are never seen in training;
* a trial file (:func:`read_trials`), in VoxCeleb's layout (``1 id10270/x6u/00001.wav
  id10270/8jE/00008.wav``, 1 = same speaker) or Kaldi's (``utt1 utt2 target|nontarget``).

Metrics (:func:`verification_metrics`):

* ``eer``: the equal error rate, where the miss rate (target trials scored below the threshold)
  equals the false-alarm rate (non-target trials at or above it), linearly interpolated between
  the two thresholds that bracket the crossing;
* ``min_dcf``: the minimum over thresholds of the normalised detection cost
  ``(C_miss P_miss P_target + C_fa P_fa (1 - P_target)) / min(C_miss P_target, C_fa (1 - P_target))``,
  with P_target 0.01 and both costs 1 (the VoxCeleb challenges' setting).

Score normalisation (:class:`ScoreNorm`) against a *cohort* of impostor embeddings (a ``verify``
probe keeps one per training speaker: the mean of that speaker's unit-length embeddings, made unit
length, :func:`speaker_cohort`). Each utterance ``u`` gets the mean ``mu_u`` and standard deviation
``sigma_u`` of its cosines to the cohort (all of them: S-norm; its ``top`` highest: adaptive S-norm,
AS-norm), and a trial ``(a, b)`` with cosine ``s`` scores
``((s - mu_a) / sigma_a + (s - mu_b) / sigma_b) / 2`` (symmetric: the two sides are the same kind).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines

#: Words of a Kaldi trial file's third column.
TARGET_WORDS = {"target": 1, "nontarget": 0}
#: Score normalisations :class:`ScoreNorm` knows.
NORMS = ("none", "s-norm", "as-norm")
#: AS-norm's cohort size when none is given (WeSpeaker's VoxCeleb setting).
DEFAULT_AS_NORM_TOP = 300


@dataclass(frozen=True)
class ScoreNorm:
    """How trial cosines are normalised: ``none``, ``s-norm`` (the whole cohort) or ``as-norm`` (each
    utterance's ``top`` closest cohort members; at least the cohort's size means the whole cohort)."""

    kind: str = "none"
    top: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in NORMS:
            raise SpeechUnitsError(f"score normalisation {self.kind!r}: expected one of {', '.join(NORMS)}")
        if self.kind == "as-norm" and (self.top is None or self.top < 2):
            raise SpeechUnitsError(f"as-norm needs a cohort of at least 2 per utterance, got {self.top}")
        if self.kind != "as-norm" and self.top is not None:
            raise SpeechUnitsError(f"only as-norm takes a cohort size ({self.kind} uses the whole cohort)")

    @classmethod
    def parse(cls, text: str) -> "ScoreNorm":
        """``none``, ``s-norm``, ``as-norm`` (top :data:`DEFAULT_AS_NORM_TOP`) or ``as-norm:N``."""
        kind, _, top = text.strip().partition(":")
        if kind == "as-norm":
            try:
                size = int(top) if top else DEFAULT_AS_NORM_TOP
            except ValueError:
                raise SpeechUnitsError(f"as-norm:N takes a whole number of cohort members, got {text!r}") from None
            return cls(kind, size)
        if top:
            raise SpeechUnitsError(f"score normalisation {text!r}: only as-norm takes ':N'")
        return cls(kind)

    @property
    def name(self) -> str:
        return f"as-norm:{self.top}" if self.kind == "as-norm" else self.kind

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "top": self.top}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "ScoreNorm":
        if record is None:
            return cls()
        top = record.get("top")
        return cls(str(record.get("kind", "none")), None if top is None else int(top))


@dataclass
class Trials:
    """Pairs of utterance ids and whether each pair has one speaker.

    Attributes:
        first, second: utterance ids, one pair per position.
        target: bool ``[N]``, True where the two utterances have the same speaker.
        source: where the trials came from (a file, or ``"all pairs"``).
    """

    first: list[str]
    second: list[str]
    target: np.ndarray
    source: str = "all pairs"

    def __len__(self) -> int:
        return len(self.first)

    def within(self, ids: Iterable[str]) -> "Trials":
        """The trials whose two utterances are both in ``ids``."""
        ids = set(ids)
        keep = [k for k, (a, b) in enumerate(zip(self.first, self.second)) if a in ids and b in ids]
        return Trials([self.first[k] for k in keep], [self.second[k] for k in keep], self.target[keep], self.source)


def _unit_rows(embeddings: Mapping[str, np.ndarray], ids: Sequence[str]) -> np.ndarray:
    """float64 ``[N, E]``: the embeddings of ``ids``, each scaled to unit length."""
    missing = [i for i in ids if i not in embeddings]
    if missing:
        raise SpeechUnitsError(f"{len(missing)} utterances of the trials have no embedding (first: {missing[0]!r})")
    matrix = np.stack([np.asarray(embeddings[i], dtype=np.float64).reshape(-1) for i in ids])
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def speaker_cohort(speakers: Mapping[str, str], embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """float32 ``[S, E]``: one unit-length row per speaker of ``{utt: speaker}`` (sorted by name), the
    mean of that speaker's unit-length embeddings."""
    ids = sorted(u for u in speakers if u in embeddings)
    if not ids:
        raise SpeechUnitsError("a score-normalisation cohort needs embedded utterances with speakers")
    matrix = _unit_rows(embeddings, ids)
    names, codes = np.unique(np.array([str(speakers[i]) for i in ids]), return_inverse=True)
    sums = np.zeros((len(names), matrix.shape[1]))
    np.add.at(sums, codes, matrix)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def cohort_statistics(rows: np.ndarray, cohort: np.ndarray, norm: ScoreNorm) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)``, float64 ``[N]`` each: the mean and standard deviation of each unit-length row's
    cosines to the unit-length ``cohort`` ``[S, E]`` (its ``norm.top`` highest for AS-norm)."""
    cohort = np.asarray(cohort, dtype=np.float64)
    if cohort.ndim != 2 or cohort.shape[0] < 2 or cohort.shape[1] != rows.shape[1]:
        raise SpeechUnitsError(f"a score-normalisation cohort is [speakers >= 2, {rows.shape[1]}] embeddings, "
                               f"got shape {cohort.shape}")
    mu, sigma = np.empty(len(rows)), np.empty(len(rows))
    top = cohort.shape[0] if norm.kind != "as-norm" else min(int(norm.top), cohort.shape[0])
    for start in range(0, len(rows), 1024):
        part = slice(start, start + 1024)
        sims = rows[part] @ cohort.T  # [b, S]
        if top < cohort.shape[0]:
            sims = np.partition(sims, -top, axis=1)[:, -top:]
        mu[part], sigma[part] = sims.mean(axis=1), np.maximum(sims.std(axis=1), 1e-9)
    return mu, sigma


def _statistics(matrix: np.ndarray, norm: ScoreNorm | None, cohort: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray] | None:
    if norm is None or norm.kind == "none":
        return None
    if cohort is None:
        raise SpeechUnitsError(f"{norm.name} needs a cohort of impostor embeddings (a verify probe keeps one)")
    return cohort_statistics(matrix, cohort, norm)


def all_pair_scores(speakers: Mapping[str, str], embeddings: Mapping[str, np.ndarray], *,
                    norm: ScoreNorm | None = None, cohort: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The scores and target flags of every unordered pair of the utterances of ``{utt: speaker}`` (in
    sorted id order), computed a block of rows at a time without listing the pairs (4,874 utterances,
    VoxCeleb1's test part, are 11.9 M pairs); normalised by ``norm`` against ``cohort`` when given."""
    ids = sorted(speakers)
    matrix = _unit_rows(embeddings, ids)
    stats = _statistics(matrix, norm, cohort)
    _, codes = np.unique(np.array([str(speakers[i]) for i in ids]), return_inverse=True)
    scores, target = [], []
    block = 512
    for start in range(0, len(ids), block):
        rows = slice(start, min(start + block, len(ids)))
        sims = matrix[rows] @ matrix.T  # [b, N]
        if stats is not None:
            mu, sigma = stats
            sims = ((sims - mu[rows, None]) / sigma[rows, None] + (sims - mu[None, :]) / sigma[None, :]) / 2
        upper = np.arange(len(ids))[None, :] > np.arange(rows.start, rows.stop)[:, None]
        scores.append(sims[upper])
        target.append((codes[rows][:, None] == codes[None, :])[upper])
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(target)


def read_trials(path: str | os.PathLike[str]) -> Trials:
    """A trial file: VoxCeleb's ``LABEL UTT1 UTT2`` (LABEL 1 or 0) or Kaldi's ``UTT1 UTT2 target|nontarget``.

    Blank lines are skipped. An utterance is named as in the file (a relative audio path such as
    ``id10270/x6uYqmx31kE/00001.wav`` or a Kaldi id); :func:`match_trials` matches the names to a
    corpus's ids.

    Raises:
        SpeechUnitsError: a missing file, a line of neither layout (the message names it), no trial.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: no such trial file")
    first: list[str] = []
    second: list[str] = []
    target: list[bool] = []
    for number, line in iter_text_lines(path, "trial file"):
        trial = _trial(line.split())
        if trial is None:
            raise SpeechUnitsError(f"{path}:{number}: expected 'LABEL UTT1 UTT2' (LABEL 1 or 0, VoxCeleb's) or "
                                   f"'UTT1 UTT2 target|nontarget' (Kaldi's), got {line.strip()!r}")
        first.append(trial[0]), second.append(trial[1]), target.append(trial[2])
    if not first:
        raise SpeechUnitsError(f"{path}: no trial in the file")
    return Trials(first, second, np.array(target, dtype=bool), str(path))


def _trial(fields: Sequence[str]) -> tuple[str, str, bool] | None:
    """``(first, second, same speaker)`` of one trial line's fields in either layout, else ``None``."""
    if len(fields) == 3 and fields[0] in ("0", "1"):
        return fields[1], fields[2], fields[0] == "1"
    if len(fields) == 3 and fields[2].lower() in TARGET_WORDS:
        return fields[0], fields[1], bool(TARGET_WORDS[fields[2].lower()])
    return None


def is_trial_file(path: str | os.PathLike[str]) -> bool:
    """Whether the first non-blank line of ``path`` (a file) is a trial in either layout of :func:`read_trials`."""
    if not Path(path).is_file():
        return False
    try:
        first = next(iter_text_lines(path, "trial file"), None)
    except SpeechUnitsError:  # not UTF-8 text, or a broken .gz
        return False
    return first is not None and _trial(first[1].split()) is not None


def match_trials(trials: Trials, ids: Sequence[str]) -> tuple[Trials, list[str]]:
    """``trials`` with its names replaced by ids of ``ids``, and the names no id matches.

    A name matches the id it equals, else the id it equals once its audio extension is dropped
    (``id10270/x6uYqmx31kE/00001.wav`` -> ``id10270/x6uYqmx31kE/00001``), else by whole path parts
    at the end (:func:`speechunits.id_match.match_ids`: a corpus whose ids keep a longer or shorter
    part of the path). Trials with an unmatched name are left out.
    """
    from speechunits.audio import AUDIO_EXTENSIONS
    from speechunits.id_match import match_ids

    names = sorted(set(trials.first) | set(trials.second))
    stem_of = {n: n[: -len(Path(n).suffix)] if Path(n).suffix.lower() in AUDIO_EXTENSIONS else n for n in names}
    wanted = set(ids)
    keys = {(n if n in wanted else stem_of[n]): n for n in names}  # as written when an id equals it
    id_of = match_ids(list(ids), keys, trials.source)  # corpus id -> key
    by_name = {keys[key]: utt for utt, key in id_of.items()}
    unmatched = [n for n in names if n not in by_name]
    kept = trials.within(by_name)
    return Trials([by_name[n] for n in kept.first], [by_name[n] for n in kept.second], kept.target,
                  trials.source), unmatched


def cosine_scores(embeddings: Mapping[str, np.ndarray], trials: Trials, *, norm: ScoreNorm | None = None,
                  cohort: np.ndarray | None = None) -> np.ndarray:
    """float64 ``[N]``: the cosine similarity of each trial's two embeddings, normalised by ``norm``
    against ``cohort`` when given."""
    ids = sorted(set(trials.first) | set(trials.second))
    matrix = _unit_rows(embeddings, ids)
    stats = _statistics(matrix, norm, cohort)
    row = {utt: k for k, utt in enumerate(ids)}
    a = np.array([row[i] for i in trials.first], dtype=np.int64)
    b = np.array([row[i] for i in trials.second], dtype=np.int64)
    out = np.empty(len(a))
    for start in range(0, len(a), 1 << 16):  # a chunk at a time: never [N, E] copies of the rows
        part = slice(start, start + (1 << 16))
        out[part] = np.einsum("nd,nd->n", matrix[a[part]], matrix[b[part]])
    if stats is not None:
        mu, sigma = stats
        out = ((out - mu[a]) / sigma[a] + (out - mu[b]) / sigma[b]) / 2
    return out


def _error_curves(scores: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (the distinct scores, ascending, then +inf) with the miss and false-alarm rates of
    accepting scores at or above each."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=bool).reshape(-1)
    if scores.shape != target.shape:
        raise SpeechUnitsError(f"verification: {scores.size} scores but {target.size} trial labels")
    n_target, n_nontarget = int(target.sum()), int((~target).sum())
    if n_target == 0 or n_nontarget == 0:
        raise SpeechUnitsError(f"verification needs target and non-target trials; got {n_target} target and "
                               f"{n_nontarget} non-target (scored utterances of one speaker each, or of one speaker)")
    if not np.isfinite(scores).all():
        raise SpeechUnitsError("verification: scores must be finite")
    thresholds = np.append(np.unique(scores), np.inf)
    # misses: targets below the threshold; false alarms: non-targets at or above it
    misses = np.searchsorted(np.sort(scores[target]), thresholds, side="left") / n_target
    below = np.searchsorted(np.sort(scores[~target]), thresholds, side="left")
    false_alarms = (n_nontarget - below) / n_nontarget
    return thresholds, misses, false_alarms


def equal_error_rate(scores: np.ndarray, target: np.ndarray) -> float:
    """The rate at which misses equal false alarms (see the module docstring), in [0, 1]."""
    _, misses, false_alarms = _error_curves(scores, target)
    gap = false_alarms - misses  # falls from 1 (threshold at the lowest score) to -1 (at +inf)
    k = int(np.argmax(gap <= 0))  # the first threshold where misses reach false alarms
    if k == 0 or gap[k] == 0:
        return float((misses[k] + false_alarms[k]) / 2)
    # between thresholds k-1 and k the two rates cross: interpolate linearly
    w = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(misses[k - 1] + w * (misses[k] - misses[k - 1]))


def min_dcf(scores: np.ndarray, target: np.ndarray, *, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """The minimum normalised detection cost over thresholds (see the module docstring)."""
    if not 0.0 < p_target < 1.0:
        raise SpeechUnitsError(f"min_dcf: p_target must be in (0, 1), got {p_target}")
    _, misses, false_alarms = _error_curves(scores, target)
    cost = c_miss * misses * p_target + c_fa * false_alarms * (1.0 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def verification_metrics(speakers: Mapping[str, str], embeddings: Mapping[str, np.ndarray],
                         trials: Trials | None = None, *, norm: ScoreNorm | None = None,
                         cohort: np.ndarray | None = None) -> dict[str, float | int]:
    """``{"eer", "min_dcf", "trials", "target_trials"}`` of cosine scoring over ``trials`` (default:
    every pair of the utterances that have both a speaker and an embedding), normalised by ``norm``
    against ``cohort`` when given."""
    if trials is None:
        scores, target = all_pair_scores({u: str(s) for u, s in speakers.items() if u in embeddings}, embeddings,
                                         norm=norm, cohort=cohort)
    else:
        scores, target = cosine_scores(embeddings, trials, norm=norm, cohort=cohort), trials.target
    if len(scores) == 0:
        raise SpeechUnitsError("verification: no trial to score (fewer than two utterances)")
    return {"eer": equal_error_rate(scores, target), "min_dcf": min_dcf(scores, target),
            "trials": int(len(scores)), "target_trials": int(target.sum())}


@dataclass
class VerificationScoring:
    """A score normalisation chosen on dev, its cohort (float32 ``[S, E]``, one row per training
    speaker) and each candidate's dev metrics, by :attr:`ScoreNorm.name`."""

    norm: ScoreNorm
    cohort: np.ndarray
    dev: dict[str, dict[str, float | int]]


def choose_score_norm(speakers: Mapping[str, str], train: Mapping[str, np.ndarray],
                      dev: Mapping[str, np.ndarray]) -> VerificationScoring:
    """The cohort of the ``train`` embeddings' speakers (:func:`speaker_cohort`) and the normalisation
    with the least EER over every pair of the ``dev`` embeddings, among none, S-norm and AS-norm
    (top :data:`DEFAULT_AS_NORM_TOP`, or half the cohort when it has fewer than twice that many
    speakers; a cohort under 4 speakers offers none). Ties go to the simpler one, in that order."""
    cohort = speaker_cohort({u: speakers[u] for u in train}, train)
    candidates = [ScoreNorm()]
    if cohort.shape[0] >= 4:
        candidates += [ScoreNorm("s-norm"), ScoreNorm("as-norm", min(DEFAULT_AS_NORM_TOP, cohort.shape[0] // 2))]
    scores = {norm.name: verification_metrics({u: speakers[u] for u in dev}, dev, norm=norm, cohort=cohort)
              for norm in candidates}
    best = min(candidates, key=lambda norm: scores[norm.name]["eer"])  # min keeps the first of equals
    return VerificationScoring(best, cohort, scores)
