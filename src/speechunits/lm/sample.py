"""GSLM-style continuation of prompts (or unconditional samples) with ``transformers``' ``generate``.

Length: ``seconds`` of speech = ``seconds * frame_rate / frames_per_token`` new tokens
(``frames_per_token`` is the training data's mean, in lm.json). ``</s>`` is suppressed unless
``stop_at_eos``, so samples have that length; specials and text words are never sampled.

Output units: a frame-level LM (``--tokens units``) gives a frame-level store. A ``dedup`` or
``bpe`` LM gives a *deduplicated* store whose durations are placeholders: every unit lasts the
training data's mean run length (``frames_per_unit``, rounded, at least 1 frame). A vocoder
is given the ids without durations, so a deduplicated vocoder predicts them; a frame-level vocoder
is refused for such an LM (as ``translate`` refuses it for S2UT).
Seeds: sample ``i`` is drawn with ``torch.manual_seed(mix_seed(seed, i))`` - the same seed and
settings give the same units.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.lm.model_dir import UnitLM
from speechunits.lm.vocab import BOS_ID, EOS_ID, NUM_SPECIAL
from speechunits.training.batching import mix_seed
from speechunits.units.units import Units

log = logging.getLogger(__name__)


@dataclass
class SampleOptions:
    seconds: float = 5.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stop_at_eos: bool = False
    keep_prompt: bool = False

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise SpeechUnitsError(f"--seconds must be > 0, got {self.seconds}")
        if self.temperature <= 0:
            raise SpeechUnitsError(f"--temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise SpeechUnitsError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise SpeechUnitsError(f"--top-p must lie in (0, 1], got {self.top_p}")


@dataclass
class Sample:
    id: str
    units: Units
    new_tokens: int
    seconds: float


def new_token_count(lm: UnitLM, seconds: float) -> int:
    return max(1, math.ceil(seconds * lm.frame_rate / float(lm.meta.get("frames_per_token") or 1.0)))


def _units(lm: UnitLM, tokens: np.ndarray) -> Units:
    ids = lm.vocab.decode_units(tokens)
    k = lm.vocab.unit_vocab_size
    if lm.vocab.frame_level:
        return Units(ids, lm.frame_rate, k)
    runs = Units(ids, lm.frame_rate, k).dedup() if ids.size else Units(ids, lm.frame_rate, k, np.zeros(0, np.int64))
    duration = max(1, int(round(float(lm.meta.get("frames_per_unit") or 1.0))))
    return Units(runs.ids, lm.frame_rate, k, np.full(runs.ids.size, duration, dtype=np.int64))


@torch.inference_mode()
def sample_units(lm: UnitLM, prompts: Sequence[tuple[str, Units | None]], options: SampleOptions) -> list[Sample]:
    """One continuation per ``(id, prompt units or None)`` (None: unconditional, from ``<s>``)."""
    if lm.objective != "causal":
        raise SpeechUnitsError(f"{lm.path}: a masked LM cannot sample continuations; use a causal LM")
    count = new_token_count(lm, options.seconds)
    room = prompt_room(lm, count, options.seconds)
    suppress = [t for t in range(NUM_SPECIAL) if options.stop_at_eos is False or t != EOS_ID]
    suppress += list(range(lm.vocab.word_offset, lm.vocab.size))
    samples = []
    cut = 0
    for index, (utt_id, prompt) in enumerate(prompts):
        prompt_tokens = np.zeros(0, np.int64) if prompt is None else lm.tokens(prompt.ids, prompt.durations)
        context = prompt_tokens[-room:] if prompt_tokens.size > room else prompt_tokens  # the prompt's end goes on
        cut += int(context.size < prompt_tokens.size)
        ids = torch.from_numpy(np.concatenate(([BOS_ID], context))).unsqueeze(0).to(lm.device)
        torch.manual_seed(mix_seed(options.seed, index))
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                max_new_tokens=count, min_new_tokens=0 if options.stop_at_eos else count,
                                temperature=options.temperature, top_k=options.top_k or 0,
                                top_p=options.top_p if options.top_p is not None else 1.0,
                                suppress_tokens=suppress, eos_token_id=EOS_ID, pad_token_id=0)
        generated = out[0, ids.shape[1]:].cpu().numpy()
        if generated.size and generated[-1] == EOS_ID:
            generated = generated[:-1]
        kept = np.concatenate((prompt_tokens, generated)) if options.keep_prompt else generated
        units = _units(lm, kept)
        samples.append(Sample(utt_id, units, int(generated.size), units.duration_s))
    if cut:
        log.warning("%d of %d prompts were longer than the %d tokens that fit before %d new ones in the LM's "
                    "training length (%d): each continues its last %d tokens", cut, len(prompts), room, count,
                    lm.trained_length, room)
    return samples


def prompt_room(lm: UnitLM, count: int, seconds: float) -> int:
    """How many prompt tokens go before ``count`` new ones: what fits in the training length after ``<s>``,
    but at least a quarter of it (a longer sample then runs past the trained length, with a warning).

    Raises:
        SpeechUnitsError: ``count`` new tokens (plus ``<s>`` and that quarter) exceed the model's positions.
    """
    trained, positions = lm.trained_length, int(lm.model.config.max_position_embeddings)
    room = max(trained - 1 - count, trained // 4)
    if 1 + room + count > positions:
        most = (positions - 1 - trained // 4) * float(lm.meta.get("frames_per_token") or 1.0) / lm.frame_rate
        raise SpeechUnitsError(f"--seconds {seconds:g}: {count} new tokens do not fit the LM's {positions} positions "
                               f"after a prompt; ask for at most {most:.1f} s")
    if 1 + room + count > trained:
        log.warning("--seconds %g: %d new tokens run past the %d tokens of the LM's training sequences; the end "
                    "of each sample is generated from longer contexts than the model has seen", seconds, count,
                    trained)
    return room


def prompts_from(lm: UnitLM, source: str | None, *, num_samples: int = 1, prompt_seconds: float | None = None,
                 codebook: str | None = None, encoder: str | None = None) -> list[tuple[str, Units | None]]:
    """Prompts from a unit store or audio (each cut to ``prompt_seconds``), or ``num_samples`` empty ones.

    With prompts, each yields ``num_samples`` samples named ``<id>`` (or ``<id>-<j>``).
    """
    from speechunits.lm.score import is_unit_store

    if source is None:
        return [(f"sample{j:04d}", None) for j in range(num_samples)]
    if is_unit_store(source):
        from speechunits.units.store import UnitStore

        store = UnitStore.open(source)
        lm.check_store(store)
        items = list(store)
    else:
        from speechunits.lm.audio import encode_audio

        items, errors = encode_audio(lm, source, codebook=codebook, encoder=encoder)
        for utt, error in errors.items():
            log.warning("%s: %s", utt, error)
    if not items:
        raise SpeechUnitsError(f"{source}: no prompt (empty store or no readable audio)")
    out: list[tuple[str, Units | None]] = []
    for utt_id, units in items:
        if prompt_seconds is not None:
            frames = units.expand()
            frames = Units(frames.ids[:max(1, int(round(prompt_seconds * units.frame_rate)))], units.frame_rate,
                           units.vocab_size)
            units = frames.dedup() if units.is_deduplicated else frames
        for j in range(num_samples):
            out.append((utt_id if num_samples == 1 else f"{utt_id}-{j}", units))
    return out


def vocoder_for(path: str, lm: UnitLM, device: str = "auto") -> Any:
    """The vocoder of contract A (``speechunits.vocoder.load_vocoder``), checked against the LM's codebook."""
    try:
        from speechunits.vocoder import load_vocoder
    except ImportError:
        raise SpeechUnitsError("--vocoder needs speechunits.vocoder (`speechunits vocoder train`), which this "
                               "installation does not have") from None
    vocoder = load_vocoder(path, device=device)
    vocoder.check_codebook(lm.consumes["codebook_sha256"], source=f"the unit LM {lm.path}")
    if not lm.vocab.frame_level and not vocoder.meta.get("dedup"):
        raise SpeechUnitsError(f"the unit LM {lm.path} samples deduplicated units without durations; the vocoder "
                               f"{path} reads frame-level units and would give every unit one frame: use a vocoder "
                               "trained with --dedup (it predicts durations)")
    return vocoder


def synthesize(vocoder: Any, sample: Sample, speaker: str | None = None) -> Any:
    """Audio of one sample (deduplicated units go without their placeholder durations)."""
    units = sample.units
    if units.is_deduplicated:
        units = Units(units.ids, units.frame_rate, units.vocab_size)
    return vocoder.synthesize(units, speaker=speaker)
