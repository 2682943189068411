"""Noisy speech with its clean reference (VoiceBank-DEMAND-style; SUPERB's speech enhancement data).

``write_noisy(CORPUS, OUT)`` writes ``OUT/noisy/``::

    train/ dev/ test/             disjoint speakers
        wavs/<utt>.wav            16 kHz mono int16: the utterance plus noise at an SNR
        clean/<utt>.wav           the same utterance alone, at the same scale (the reference)
        wav.scp                   ``utt wavs/<utt>.wav`` (the noisy input)
        spk1.scp                  ``utt clean/<utt>.wav`` (ESPnet's name for the reference of an enhancement set)
        utt2spk                   ``utt speaker``
        text                      ``utt transcript`` (Kaldi), when the corpus has ``text.tsv``
        noisy.tsv                 one row per utterance (header: :data:`NOISY_COLUMNS`)
    noisy.json                    the arguments, the corpus, the noise files and counts per split

Kaldi files are sorted by their first field (``LC_ALL=C`` order). Ids are the corpus's utterance ids.

* Corpus: a directory holding ``speakers.tsv`` (``utt<TAB>speaker``) whose audio
  :func:`speechunits.corpus.open_corpus_via_manifest` reads (a ``speechunits synth`` corpus, or any
  folder with a manifest and ``speakers.tsv``). Every utterance with a speaker takes part.
* Splits: the speakers are cut into train/dev/test as ``synth mix`` cuts them
  (:func:`speechunits.synth.mixtures.split_speakers`), so test voices are never heard in training.
* SNR: drawn uniformly from ``snrs`` (train and dev) or ``test_snrs`` (test); VoiceBank-DEMAND's
  are the defaults (0, 5, 10, 15 dB; test 2.5, 7.5, 12.5, 17.5, SNRs never trained on). It is the power
  of the whole clean clip over that of the noise added (:func:`noise_at_snr`; exact before int16 rounding).
* Noise: one kind per utterance, drawn uniformly from ``kinds``: ``white``, ``pink`` (1/f power),
  ``brown`` (1/f^2), ``hum`` (50 Hz mains and its harmonics over faint white noise), ``babble`` (four
  other utterances of the same split, from other speakers where the split has them, each at the same
  level, looped to length), and ``file`` (a random stretch, looped when short, of a recording under
  ``noise_dir``: DEMAND, MUSAN, Speech Commands' background noise ...; given only with ``noise_dir``).
* Scale: where ``noisy`` would clip, noisy and clean are scaled by the same factor (``scale``, 6 decimals),
  so that the reference stays the noisy clip's speech.

Built in ``OUT/.noisy.partial`` and renamed into place. ``OUT/noisy`` already holding the same set
(same arguments and corpus in ``noisy.json``) is returned as it is; another set is refused. The same
arguments give the same bytes.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import write_lines
from speechunits.synth.mixtures import PEAK_LIMIT, SAMPLE_RATE, SPLIT, SPLITS, corpus_speakers, split_speakers
from speechunits.synth.set_reuse import check_corpus_set, holds_same_set, write_set_meta

log = logging.getLogger(__name__)

KIND = "noisy"
FORMAT_VERSION = 1
SNRS = (0.0, 5.0, 10.0, 15.0)
TEST_SNRS = (2.5, 7.5, 12.5, 17.5)
GENERATED_KINDS = ("white", "pink", "brown", "hum", "babble")
FILE_KIND = "file"
BABBLE_TALKERS = 4
MAINS_HZ = 50.0
HUM_HARMONICS = 8
#: The white floor under the hum, in dB relative to the hum's power.
HUM_FLOOR_DB = -20.0
SET_ARGUMENTS = ("corpus", "snrs", "test_snrs", "kinds", "noise_dir", "split", "seed")
NOISY_COLUMNS = ("utt", "speaker", "noise", "noise_source", "snr_db", "scale")


@dataclass(frozen=True)
class Item:
    """One utterance of the corpus that takes part."""

    utt: str
    speaker: str
    path: str
    raw_format: Any = None


# ----------------------------------------------------------------------------- noise (pure)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise whose power falls as ``1 / f ** exponent`` (0 white, 1 pink,
    2 brown), zero mean, unit RMS; the DC bin is dropped."""
    white = rng.standard_normal(max(n, 2))
    if exponent == 0:
        out = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(white.size)
        spectrum[0] = 0.0
        spectrum[1:] /= freqs[1:] ** (exponent / 2.0)
        out = np.fft.irfft(spectrum, n=white.size)
    out = out[:n] - out[:n].mean()
    return out / max(float(np.sqrt(np.mean(out ** 2))), 1e-12)


def hum_noise(n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mains hum: :data:`MAINS_HZ` and its harmonics (amplitude ``1/k``, random phases) over white noise
    :data:`HUM_FLOOR_DB` below it; unit RMS."""
    t = np.arange(n) / sample_rate
    phases = rng.uniform(0, 2 * np.pi, size=HUM_HARMONICS)
    hum = sum(np.sin(2 * np.pi * MAINS_HZ * k * t + phases[k - 1]) / k for k in range(1, HUM_HARMONICS + 1))
    hum = np.asarray(hum, dtype=np.float64)
    hum /= max(float(np.sqrt(np.mean(hum ** 2))), 1e-12)
    out = hum + rng.standard_normal(n) * 10.0 ** (HUM_FLOOR_DB / 20.0)
    return out / max(float(np.sqrt(np.mean(out ** 2))), 1e-12)


def looped(samples: np.ndarray, n: int, start: int) -> np.ndarray:
    """``n`` samples of ``samples`` from ``start``, wrapping around (a recording shorter than ``n`` repeats)."""
    if samples.size == 0:
        raise SpeechUnitsError("noise: an empty recording")
    index = (start + np.arange(n)) % samples.size
    return samples[index]


def noise_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``mean(clean^2) / mean(noise^2)`` is ``10 ** (snr_db / 10)``.

    Raises:
        SpeechUnitsError: silent clean audio or silent noise (the SNR is undefined).
    """
    speech = float(np.mean(np.asarray(clean, dtype=np.float64) ** 2))
    power = float(np.mean(np.asarray(noise, dtype=np.float64) ** 2))
    if speech == 0.0 or power == 0.0:
        raise SpeechUnitsError(f"noise at {snr_db} dB: the {'clean audio' if speech == 0.0 else 'noise'} is silent")
    return np.asarray(noise, dtype=np.float64) * math.sqrt(speech / power / 10.0 ** (snr_db / 10.0))


def to_int16_pair(clean: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(clean int16, noisy int16, scale)``: both times ``scale`` (1, or where ``noisy`` would clip the
    largest 6-decimal factor that keeps its peak within int16), full scale 1 = 32768."""
    peak = float(np.max(np.abs(noisy))) if noisy.size else 0.0
    scale = 1.0 if peak <= PEAK_LIMIT else math.floor(PEAK_LIMIT / peak * 1e6) / 1e6

    def as_int16(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x, dtype=np.float64) * (scale * 32768.0)), -32768, 32767).astype(np.int16)

    return as_int16(clean), as_int16(noisy), scale


# ----------------------------------------------------------------------------- reading


def read_items(corpus: str | Path) -> list[Item]:
    """The utterances of ``corpus`` that have a speaker, sorted by id.

    Raises:
        SpeechUnitsError: ``corpus`` not a directory, no speakers (:func:`~speechunits.synth.mixtures.corpus_speakers`),
            or no utterance with a speaker.
    """
    utterances, speakers, source = corpus_speakers(corpus, "the noisy set splits by speaker", "a utt2spk field")
    items = [Item(u.id, speakers[u.id], u.path, u.raw_format) for u in utterances if u.id in speakers]
    if not items:
        raise SpeechUnitsError(f"{corpus}: no utterance has audio and a speaker in {source}")
    return sorted(items, key=lambda x: x.utt)


def noise_files(noise_dir: str | Path | None) -> list[Path]:
    """The audio files under ``noise_dir`` (recursive, sorted); ``[]`` for None.

    Raises:
        SpeechUnitsError: ``noise_dir`` is not a directory or holds no audio file.
    """
    from speechunits.audio import AUDIO_EXTENSIONS

    if noise_dir is None:
        return []
    root = Path(noise_dir)
    if not root.is_dir():
        raise SpeechUnitsError(f"--noise {noise_dir}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SpeechUnitsError(f"--noise {noise_dir}: no audio file under it")
    return files


# ----------------------------------------------------------------------------- public entry point


def write_noisy(corpus: str | Path, out_dir: str | Path, *, snrs: Sequence[float] = SNRS,
                test_snrs: Sequence[float] = TEST_SNRS, kinds: Sequence[str] | None = None,
                noise_dir: str | Path | None = None, split: Sequence[float] = SPLIT, seed: int = 0,
                quiet: bool = False) -> Path:
    """Write the noisy set of ``corpus`` to ``out_dir/noisy`` (see the module docstring); returns that directory.

    ``kinds``: the noise kinds to draw from (default: every generated kind, plus ``file`` when
    ``noise_dir`` is given).

    Raises:
        SpeechUnitsError: a bad argument (no SNR, a non-finite one, an unknown kind, ``file`` without
            ``noise_dir``, a negative seed), a corpus without speakers or with fewer than 6,
            ``out_dir`` inside the corpus, or ``out_dir/noisy`` holding another set.
    """
    from speechunits.audio import Audio
    from speechunits.progress import AudioProgress

    files = noise_files(noise_dir)
    if kinds is None:
        kinds = GENERATED_KINDS + ((FILE_KIND,) if files else ())
    request = _arguments(corpus, snrs, test_snrs, kinds, noise_dir, split, seed)
    out = Path(out_dir)
    target = out / KIND
    if _check(corpus, out, request, bool(files)):
        log.info("synth noisy: %s already holds this set", target)
        return target
    items = read_items(corpus)
    by_split = split_speakers((x.speaker for x in items), split, seed)
    transcripts = _transcripts(Path(corpus), [x.utt for x in items])
    building = out / f".{KIND}.partial"
    if building.exists():
        log.warning("%s: removing a half-written set from an interrupted run", building)
        shutil.rmtree(building)
    summary: dict[str, Any] = {}

    def load(item: Item) -> np.ndarray:
        return Audio.load(item.path, sample_rate=SAMPLE_RATE, raw_format=item.raw_format).samples

    with AudioProgress(None, desc="synth noisy", quiet=quiet) as progress:
        for split_index, name in enumerate(SPLITS):
            folder = building / name
            (folder / "wavs").mkdir(parents=True)
            (folder / "clean").mkdir()
            members = [x for x in items if x.speaker in set(by_split[name])]
            rng = np.random.default_rng([seed, 2, split_index])
            levels = list(request["test_snrs"] if name == "test" else request["snrs"])
            rows = []
            for item in members:
                clean = load(item).astype(np.float64)
                if not np.any(clean):
                    log.warning("synth noisy: %s is silent: left out", item.utt)
                    continue
                kind = str(request["kinds"][int(rng.integers(len(request["kinds"])))])
                snr = float(levels[int(rng.integers(len(levels)))])
                noise, source = _noise(kind, clean.size, rng, members, item, files, load)
                noisy = clean + noise_at_snr(clean, noise, snr)
                clean16, noisy16, scale = to_int16_pair(clean, noisy)
                _write_wav(folder / "clean" / f"{item.utt}.wav", clean16)
                _write_wav(folder / "wavs" / f"{item.utt}.wav", noisy16)
                rows.append((item, kind, source, snr, scale, clean.size))
                progress.update(clean.size / SAMPLE_RATE)
            summary[name] = _write_split(folder, rows, by_split[name], transcripts)
    meta = {"format_version": FORMAT_VERSION, "kind": KIND, **request, "sample_rate": SAMPLE_RATE,
            "noise_files": [str(p) for p in files], "splits": summary}
    write_set_meta(building / f"{KIND}.json", meta)
    if target.exists():
        target.rmdir()  # empty (checked before); a non-empty one was refused
    building.rename(target)
    log.info("synth noisy: %s", ", ".join(f"{n} {summary[n]['utterances']} utterances ({summary[n]['minutes']} min)"
                                          for n in SPLITS))
    return target


def _noise(kind: str, n: int, rng: np.random.Generator, members: Sequence[Item], item: Item,
           files: Sequence[Path], load: Any) -> tuple[np.ndarray, str]:
    """``(noise [n], where it came from)`` of ``kind`` for ``item`` (see the module docstring)."""
    if kind in ("white", "pink", "brown"):
        return coloured_noise(n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng), "-"
    if kind == "hum":
        return hum_noise(n, rng), "-"
    if kind == "babble":
        others = [x for x in members if x.speaker != item.speaker] or [x for x in members if x.utt != item.utt]
        if not others:
            raise SpeechUnitsError(f"babble noise for {item.utt}: its split has no other utterance")
        picks = [others[int(i)] for i in rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)),
                                                      replace=False)]
        total = np.zeros(n, dtype=np.float64)
        for pick in picks:
            talker = load(pick).astype(np.float64)
            rms = float(np.sqrt(np.mean(talker ** 2))) if talker.size else 0.0
            if rms > 0:
                total += looped(talker, n, int(rng.integers(talker.size))) / rms
        return total, "+".join(sorted(p.utt for p in picks))
    path = files[int(rng.integers(len(files)))]
    from speechunits.audio import Audio

    recording = Audio.load(path, sample_rate=SAMPLE_RATE).samples.astype(np.float64)
    return looped(recording, n, int(rng.integers(max(recording.size, 1)))), str(path)


def _arguments(corpus: str | Path, snrs: Sequence[float], test_snrs: Sequence[float], kinds: Sequence[str],
               noise_dir: str | Path | None, split: Sequence[float], seed: int) -> dict[str, Any]:
    return dict(corpus=str(Path(corpus).resolve()), snrs=[float(s) for s in snrs],
                test_snrs=[float(s) for s in test_snrs], kinds=[str(k) for k in kinds],
                noise_dir=None if noise_dir is None else str(Path(noise_dir).resolve()),
                split=[float(s) for s in split], seed=seed)


def _check(corpus: str | Path, out: Path, request: dict[str, Any], have_files: bool) -> bool:
    """Check the arguments; whether ``out/noisy`` already holds this very set."""
    for option in ("snrs", "test_snrs"):
        if not request[option] or not all(math.isfinite(s) for s in request[option]):
            raise SpeechUnitsError(f"--{option.replace('_', '-')} must be one or more finite dB values, "
                                   f"got {request[option]}")
    known = GENERATED_KINDS + (FILE_KIND,)
    unknown = [k for k in request["kinds"] if k not in known]
    if unknown or not request["kinds"]:
        raise SpeechUnitsError(f"--noise-kinds: expected some of {', '.join(known)}, got {request['kinds']}")
    if FILE_KIND in request["kinds"] and not have_files:
        raise SpeechUnitsError("--noise-kinds file needs --noise DIR (recordings of noise)")
    check_corpus_set(corpus, out, request, SPLITS, "noisy set")
    return holds_same_set(out / KIND, f"{KIND}.json", request, SET_ARGUMENTS, FORMAT_VERSION, "noisy set")


def _transcripts(root: Path, ids: Sequence[str]) -> dict[str, str]:
    from speechunits.id_match import rekey
    from speechunits.probe.labels import read_transcripts

    path = root / "text.tsv"
    return rekey(read_transcripts(path), ids, str(path)) if path.is_file() else {}


# ----------------------------------------------------------------------------- writing


def _write_wav(path: Path, samples: np.ndarray) -> None:
    from speechunits.synth.corpus import write_wav  # the stdlib writer; loads no espeak-ng

    path.parent.mkdir(parents=True, exist_ok=True)  # ids with folders (flac/103-1240-0000)
    write_wav(path, samples)


def _write_split(folder: Path, rows: list[tuple[Item, str, str, float, float, int]], speakers: list[str],
                 transcripts: dict[str, str]) -> dict[str, Any]:
    """wav.scp, spk1.scp, utt2spk, text and noisy.tsv of one split; its counts."""
    ordered = sorted(rows, key=lambda r: r[0].utt.encode("utf-8"))
    ids = [r[0].utt for r in ordered]
    write_lines(folder / "wav.scp", [f"{u} wavs/{u}.wav" for u in ids])
    write_lines(folder / "spk1.scp", [f"{u} clean/{u}.wav" for u in ids])
    write_lines(folder / "utt2spk", [f"{r[0].utt} {r[0].speaker}" for r in ordered])
    texts = [f"{u} {' '.join(transcripts[u].split())}" for u in ids if u in transcripts]
    if texts:
        write_lines(folder / "text", texts)
    write_lines(folder / "noisy.tsv", ["\t".join(NOISY_COLUMNS)] + [
        "\t".join((r[0].utt, r[0].speaker, r[1], r[2], f"{r[3]:g}", f"{r[4]:.6f}".rstrip("0").rstrip(".")))
        for r in ordered])
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r[1]] = kinds.get(r[1], 0) + 1
    return {"utterances": len(rows), "speakers": len(speakers), "speaker_ids": speakers,
            "minutes": round(sum(r[5] for r in rows) / SAMPLE_RATE / 60.0, 3),
            "noise_kinds": dict(sorted(kinds.items())),
            "scaled": sum(1 for r in rows if r[4] != 1.0)}
