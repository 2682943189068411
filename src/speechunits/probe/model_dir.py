"""A probe is one directory.

Layout::

    PROBE/probe.json          format_version, task, what it reads (the input identity), the model
                              spec (interface, head, sizes), the label coder (vocabulary or
                              tokenizer file), split summary, chosen lr and seed, dev and test
                              metrics (mean and std over seeds), learned layer weights, every run
    PROBE/head.safetensors    the chosen run's best weights (featurizer + head; never the frozen
                              encoder: a top:N probe holds its trained blocks, a lora/adapters
                              probe only the low-rank updates, its base checked by identity)
    PROBE/vocab.json          label vocabulary (phones, classes, frame labels), or
    PROBE/tokenizer/          the ``asr`` text tokenizer (chars.json or tokenizer.json)
    PROBE/split.json          the train/dev/test utterance ids
    PROBE/training/           the chosen run's training-loop checkpoint (its last step; resumable
                              with :class:`speechunits.training.Trainer`)
    PROBE/runs/lr*-seed*/     every run's checkpoint and log.jsonl
    PROBE/codebooks/0 ...     unit probes given ``--codebook``: a copy of each stream's codebook, and
    PROBE/bpe/                of the BPE it read, so ``transcribe`` turns audio into its units unaided

``probe.json`` is written last: a directory without it is not a probe. :func:`load_probe`
rebuilds the model from the spec, loads the weights exactly and gives the same predictions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.probe.model import ProbeModel, build_model
from speechunits.probe.inputs import Sample, check_identity
from speechunits.probe.task import CTC, FRAME, MASK, PIT, objective_of, predict_logits

PROBE_FORMAT_VERSION = 1
PROBE_KIND = "speechunits-probe"
PROBE_FILE = "probe.json"
HEAD_FILE = "head.safetensors"
VOCAB_FILE = "vocab.json"
TOKENIZER_DIR = "tokenizer"
SPLIT_FILE = "split.json"
COHORT_FILE = "cohort.safetensors"
CODEBOOKS_DIR = "codebooks"
BPE_DIR = "bpe"


class LabelCoder:
    """Labels <-> model ids: a :class:`~speechunits.probe.vocab.Vocabulary` or, for ``asr``, a
    :class:`~speechunits.probe.vocab.TextTokenizer`.

    ``encode(label)``: a target (id list for CTC, the ids array for frames, an int per utterance,
    float32 ``[T, S]`` speaker activity for ``diarize``, whose vocabulary names its ``S`` speaker slots,
    float16 ``[N, 1 + S, F]`` mixture and reference STFT magnitudes for ``enhance`` and ``separate``, whose
    vocabulary names its outputs);
    ``decode(output)``: CTC: collapsed ids -> phone list or text; utterance: class id -> label string.
    ``decision``: ``diarize`` only, how slot logits become activity
    (:class:`~speechunits.probe.diarize.SlotDecision`; None until dev has chosen one: the default).
    """

    def __init__(self, task: str, vocabulary: Any = None, tokenizer: Any = None):
        if (vocabulary is None) == (tokenizer is None):
            raise SpeechUnitsError("LabelCoder: give exactly one of vocabulary and tokenizer")
        self.task = task
        self.objective = objective_of(task)
        self.vocabulary = vocabulary
        self.tokenizer = tokenizer
        self.decision: Any = None

    @property
    def num_classes(self) -> int:
        return int(self.tokenizer.vocab_size if self.tokenizer is not None else len(self.vocabulary))

    def encode(self, label: Any) -> Any:
        if self.tokenizer is not None:
            return self.tokenizer.encode(label)
        if self.objective == CTC:
            return self.vocabulary.encode(label)
        if self.objective == FRAME:
            return np.asarray(label, dtype=np.int64)  # frame labels arrive as ids of this vocabulary
        if self.objective == PIT:
            from speechunits.probe.diarize import slot_targets

            return slot_targets(label, self.num_classes)
        if self.objective == MASK:
            from speechunits.probe.masking import magnitude_targets

            return magnitude_targets(label)
        return self.vocabulary.index(label)

    def decode(self, ids: Any) -> Any:
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids)
        if self.objective == CTC:
            return self.vocabulary.decode(ids)
        if self.objective == FRAME:
            return np.asarray(ids, dtype=np.int64)
        if self.objective == PIT:
            return np.asarray(ids, dtype=np.uint8)  # [T, S] activity of the slots
        if self.objective == MASK:
            return np.asarray(ids, dtype=np.float32)  # [T r, S, F] masks
        return self.vocabulary.tokens[int(ids)]

    def record(self) -> dict[str, Any]:
        """What ``probe.json`` says about the labels."""
        if self.tokenizer is not None:
            return {"tokenizer": TOKENIZER_DIR, "kind": self.tokenizer.kind, "sha256": self.tokenizer.sha256,
                    "num_classes": self.num_classes}
        record = {"vocabulary": VOCAB_FILE, "kind": self.vocabulary.kind, "sha256": self.vocabulary.sha256,
                  "num_classes": self.num_classes}
        if self.objective == PIT:
            record["speaker_slots"] = self.num_classes
            if self.decision is not None:
                record["decision"] = self.decision.record()
        if self.objective == MASK:
            from speechunits.probe.masking import STFT, mask_layout

            upsample, sources = mask_layout(self.vocabulary.tokens)
            record.update(stft=STFT.record(), upsample=upsample, sources=sources)
        return record

    def save(self, directory: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save(directory / TOKENIZER_DIR)
        else:
            self.vocabulary.save(directory / VOCAB_FILE)

    @classmethod
    def load(cls, directory: Path, task: str, record: Mapping[str, Any]) -> "LabelCoder":
        from speechunits.probe.vocab import TextTokenizer, Vocabulary

        if "tokenizer" in record:
            coder = cls(task, tokenizer=TextTokenizer.load(directory / record["tokenizer"]))
        else:
            coder = cls(task, vocabulary=Vocabulary.load(directory / record.get("vocabulary", VOCAB_FILE)))
        if record.get("sha256") and record["sha256"] != (coder.tokenizer or coder.vocabulary).sha256:
            raise SpeechUnitsError(f"{directory}: the label files do not match {PROBE_FILE} (sha256 differs)")
        if "decision" in record:
            from speechunits.probe.diarize import SlotDecision

            coder.decision = SlotDecision.from_record(record["decision"])
        return coder


@dataclass
class Probe:
    """A loaded probe: the model (eval mode, on CPU unless moved), its labels and its record."""

    model: ProbeModel
    coder: LabelCoder
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def identity(self) -> dict[str, Any]:
        """What the probe reads (see :mod:`speechunits.probe.inputs`)."""
        return dict(self.meta["input"])

    def check_input(self, identity: Mapping[str, Any]) -> None:
        """Refuse an input of another encoder, layers or codebook (SpeechUnitsError)."""
        try:
            check_identity(self.identity, dict(identity))
        except SpeechUnitsError as exc:
            raise SpeechUnitsError(f"{self.path or 'probe'}: {exc}") from None

    def logits(self, samples: Mapping[str, Sample], ids: Sequence[str] | None = None, *,
               device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
        """Raw logits per utterance (see :func:`speechunits.probe.task.predict_logits`)."""
        self.model.to(device)
        return predict_logits(self.model, samples, list(samples) if ids is None else ids, device=device)

    def embeddings(self, samples: Mapping[str, Sample], ids: Sequence[str] | None = None, *,
                   device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
        """``verify`` probes: each utterance's unit-length speaker embedding ``[E]``."""
        if self.task != "verify":
            raise SpeechUnitsError(f"{self.path or 'probe'}: a {self.task!r} probe gives no speaker embeddings "
                                   "(a 'verify' probe does)")
        self.model.to(device)
        return predict_logits(self.model, samples, list(samples) if ids is None else ids, device=device,
                              embeddings=True)

    def scoring(self) -> tuple[Any, np.ndarray | None]:
        """``verify`` probes: the dev-chosen :class:`~speechunits.probe.verification.ScoreNorm` and the
        cohort it normalises against (float32 ``[S, E]``, one row per training speaker; None for a
        probe saved without one, whose norm is then ``none``)."""
        from speechunits.probe.verification import ScoreNorm

        if self.task != "verify":
            raise SpeechUnitsError(f"{self.path or 'probe'}: a {self.task!r} probe has no trial scoring")
        record = self.meta.get("scoring") or {}
        norm = ScoreNorm.from_record(record.get("norm"))
        if not record.get("cohort") or self.path is None:
            return norm, None
        return norm, load_cohort(self.path / record["cohort"])

    def predict(self, samples: Mapping[str, Sample], ids: Sequence[str] | None = None, *,
                device: torch.device | str = "cpu", decoder: Any = None) -> dict[str, Any]:
        """Decoded predictions: phone lists (``phones``), text (``asr``), frame id arrays
        (``frames``), label strings (``speaker``, ``classify``), uint8 ``[T, S]`` activity of the
        speaker slots (``diarize``); ``decoder``: an LM beam search
        instead of greedy CTC (:mod:`speechunits.probe.lm_decode`)."""
        from speechunits.probe.evaluate import decode_logits

        return {utt: decode_logits(self.coder, out, decoder)
                for utt, out in self.logits(samples, ids, device=device).items()}


def save_probe(directory: str | os.PathLike[str], model: ProbeModel, coder: LabelCoder, meta: dict[str, Any],
               split: Any = None) -> Path:
    """Write ``head.safetensors`` (``model`` ends on the CPU), the label files, ``split.json`` (a
    :class:`~speechunits.probe.splits.Split`) and ``probe.json`` (last)."""
    from safetensors.torch import save_file, save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PROBE_FILE).unlink(missing_ok=True)
    if model.low_rank:  # only the updates of the frozen encoder blocks, beside featurizer and head
        save_file(model.cpu().saved_state(), str(directory / HEAD_FILE))
    else:
        save_model(model.cpu(), str(directory / HEAD_FILE))
    coder.save(directory)
    if split is not None:
        split.save(directory / SPLIT_FILE)
    record = {"format_version": PROBE_FORMAT_VERSION, "kind": PROBE_KIND, **meta, "model": model.spec,
              "labels": coder.record(), "head": HEAD_FILE}
    tmp = directory / (PROBE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, directory / PROBE_FILE)
    return directory


def save_cohort(directory: str | os.PathLike[str], cohort: np.ndarray) -> str:
    """Write a ``verify`` probe's score-normalisation cohort (float32 ``[S, E]``); its file name."""
    from safetensors.numpy import save_file

    save_file({"cohort": np.ascontiguousarray(cohort, dtype=np.float32)}, str(Path(directory) / COHORT_FILE))
    return COHORT_FILE


def load_cohort(path: str | os.PathLike[str]) -> np.ndarray:
    """The cohort :func:`save_cohort` wrote (SpeechUnitsError when missing or malformed)."""
    from speechunits.files import read_safetensors

    tensors = read_safetensors(path)
    if "cohort" not in tensors:
        raise SpeechUnitsError(f"{path}: no 'cohort' tensor")
    return np.asarray(tensors["cohort"], dtype=np.float32)


def save_unit_models(directory: str | os.PathLike[str], codebooks: Sequence[Any] | None, bpe: Any = None) -> None:
    """Copies of a unit probe's codebooks (``codebooks/<stream>``) and BPE (``bpe/``), when it has them."""
    directory = Path(directory)
    for i, codebook in enumerate(codebooks or []):
        codebook.save(directory / CODEBOOKS_DIR / str(i))
    if bpe is not None:
        bpe.save(directory / BPE_DIR)


def bundled_codebooks(directory: str | os.PathLike[str]) -> list[Path]:
    """The codebook copies :func:`save_unit_models` wrote, in stream order (empty when none)."""
    root = Path(directory) / CODEBOOKS_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def bundled_bpe(directory: str | os.PathLike[str]) -> Path | None:
    """The BPE copy :func:`save_unit_models` wrote, or None."""
    path = Path(directory) / BPE_DIR
    return path if path.is_dir() else None


def read_probe_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``probe.json`` of a probe directory (SpeechUnitsError when missing, invalid or too new)."""
    path = Path(directory) / PROBE_FILE
    meta = read_json_object(path, missing=f"{directory}: not a probe directory (no {PROBE_FILE})")
    if meta.get("kind") != PROBE_KIND:
        raise SpeechUnitsError(f"{path}: not a speechunits probe")
    if int(meta.get("format_version", 0)) > PROBE_FORMAT_VERSION:
        raise SpeechUnitsError(f"{path}: probe format {meta.get('format_version')} is newer than this "
                               f"speechunits ({PROBE_FORMAT_VERSION})")
    return meta


def load_probe(directory: str | os.PathLike[str], base: str | None = None) -> Probe:
    """The probe in ``directory``: model rebuilt from its spec with its exact weights, in eval mode.

    A LoRA/adapters probe loads its base encoder (``base``: from there instead of the recorded
    name) and refuses one whose identity is not the recorded one (SpeechUnitsError)."""
    from speechunits.files import read_safetensors
    from speechunits.training.checkpoint import load_safetensors

    directory = Path(directory)
    meta = read_probe_meta(directory)
    try:
        model = build_model(meta["model"], base=base)
    except SpeechUnitsError as exc:
        raise SpeechUnitsError(f"{directory}: {exc}") from None
    head = directory / meta.get("head", HEAD_FILE)
    if model.low_rank:
        try:
            model.load_saved(read_safetensors(head))
        except RuntimeError as exc:
            raise SpeechUnitsError(f"{head}: does not match the model in {PROBE_FILE} ({str(exc)[:300]})") from None
    else:
        load_safetensors(head, model, f"the model in {PROBE_FILE}")
    model.eval()
    coder = LabelCoder.load(directory, meta["task"], meta["labels"])
    return Probe(model, coder, meta, directory)


def read_split(directory: str | os.PathLike[str]) -> Any:
    """The :class:`~speechunits.probe.splits.Split` a probe was trained with (``split.json``)."""
    from speechunits.probe.splits import Split

    return Split.load(Path(directory) / SPLIT_FILE)
