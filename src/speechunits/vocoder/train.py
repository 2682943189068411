"""Train a unit vocoder on a corpus (the library side of ``speechunits vocoder train``).

Units of the given codebooks and F0 are computed once per utterance (cached in ``VOC/cache``),
per-speaker log-F0 statistics are computed and stored, and the model trains in the project's
one loop (:class:`speechunits.training.Trainer`: resume, bf16, progress with ETA, DDP); GAN
configurations run as a two-phase task (discriminator, generator) with one optimizer each. At
every checkpoint the usable vocoder (``vocoder.json``, ``vocoder.safetensors``) is written
beside the training state, with syntheses of a few training utterances in
``VOC/samples/step-N/``.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speechunits.corpus import open_corpus_via_manifest
from speechunits.errors import SpeechUnitsError
from speechunits.vocoder.config import ARCHS, VocoderConfig, perturb_semitones
from speechunits.vocoder.data import CACHE_DIR, Utterance, find_speakers_file, load_utterances, speaker_f0_stats
from speechunits.vocoder.vocoder import (CODEBOOKS_DIR, FORMAT_VERSION, KIND, META_FILE, SAMPLES_DIR, WEIGHTS_FILE,
                                         Vocoder, codebook_dir)

log = logging.getLogger(__name__)

#: Utterances synthesised into ``samples/step-N/`` at every checkpoint.
NUM_SAMPLES = 3


@dataclass
class TrainOptions:
    """How long and how fast (the vocoder's own shape is a :class:`VocoderConfig`)."""

    steps: int = 100000
    minutes: float | None = None
    lr: float | None = None
    bf16: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    warmup_steps: int = 200


def default_config(arch: str, hop: int, **overrides: Any) -> VocoderConfig:
    """The tier's defaults for a codebook of hop ``hop``, then ``overrides`` (None values ignored).

    ``cpu``: 64-frame crops (0.64 s at 100 Hz), batch 8. ``hifigan``: crops of 8960 samples at
    16 kHz (speech-resynthesis), batch 16, discriminators from step 0.
    """
    if arch not in ARCHS:
        raise SpeechUnitsError(f"--arch must be one of {ARCHS}, got {arch!r}")
    base: dict[str, Any] = {"arch": arch, "hop": hop}
    if arch == "cpu":
        base.update(segment_frames=max(2, round(10240 / hop)), batch_size=8)
    else:
        base.update(segment_frames=max(2, round(8960 / hop)), batch_size=16, gan_start=0)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return VocoderConfig(**base)


def _optim_config(cfg: VocoderConfig, options: TrainOptions) -> Any:
    from speechunits.training.config import OptimConfig

    if cfg.gan and cfg.arch == "hifigan":  # HiFi-GAN: AdamW 2e-4, betas (0.8, 0.99)
        lr, betas, warmup = options.lr or 2e-4, (0.8, 0.99), 0
    else:
        lr, betas, warmup = options.lr or 1e-3, (0.9, 0.98), options.warmup_steps
    return OptimConfig(steps=options.steps, lr=lr, warmup_steps=min(warmup, options.steps - 1 if options.steps > 1 else 0),
                       schedule="cosine" if cfg.arch == "cpu" else "constant", weight_decay=0.0 if cfg.arch == "cpu" else 0.01,
                       betas=betas, grad_clip=1000.0 if cfg.gan else 5.0, bf16=options.bf16,
                       max_minutes=options.minutes, seed=options.seed, log_every=options.log_every,
                       checkpoint_every=options.checkpoint_every)


def vocoder_meta(cfg: VocoderConfig, codebooks: Sequence[Any], *, dedup: bool, f0: str, f0_method: str,
                 speaker: str, speakers: Sequence[str], stats: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """The ``vocoder.json`` dict (see :mod:`speechunits.vocoder.vocoder`)."""
    from speechunits import __version__

    first = codebooks[0]
    layers = [c.layer for c in codebooks]
    return {
        "format_version": FORMAT_VERSION, "kind": KIND, "speechunits_version": __version__,
        "codebook_sha256": [c.sha256 for c in codebooks], "k": [int(c.k) for c in codebooks],
        "layer": layers[0] if len(set(layers)) == 1 else layers, "layers": layers,
        "encoder": first.encoder_name, "encoder_identity": first.encoder_identity,
        "frame_rate": float(first.frame_rate), "frame_offset_s": float(first.meta.get("frame_offset_s") or 0.0),
        "hop": int(cfg.hop), "dedup": bool(dedup), "sample_rate": int(cfg.sample_rate), "f0": f0,
        "f0_method": f0_method, "speaker": speaker, "speakers": list(speakers), "arch": cfg.arch,
        "f0_stats": {name: s.to_dict() for name, s in stats.items()},
        "codebooks": [f"{CODEBOOKS_DIR}/stream{j}" for j in range(len(codebooks))],
        "config": cfg.to_dict(), "trained": trained,
    }


def write_vocoder(model: torch.nn.Module, out: Path, meta: dict[str, Any]) -> None:
    """Inference weights (no discriminators) and ``vocoder.json`` (written last, atomically)."""
    from safetensors.torch import save_file

    from speechunits.vocoder.model import DISCRIMINATOR_PREFIX

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.startswith(DISCRIMINATOR_PREFIX)}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    tmp_meta = out / (META_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp_meta.replace(out / META_FILE)


def _speaker_means(model: Any, cfg: VocoderConfig, utterances: Sequence[Utterance], speakers: Sequence[str],
                   device: torch.device) -> None:
    """Fill an embedding vocoder's mean reference vector per known speaker (up to 4 crops each)."""
    if cfg.speaker != "embedding" or not speakers:
        return
    length = int(cfg.reference_seconds * cfg.sample_rate)
    with torch.no_grad():
        for i, name in enumerate(speakers):
            crops = [u.audio[:length] for u in utterances if u.speaker == name][:4]
            vecs = [model.conditioner.reference(torch.from_numpy(c.copy())[None].to(device)) for c in crops]
            if vecs:
                model.conditioner.speaker_means[i] = torch.cat(vecs).mean(0)


def train_vocoder(input: str | Path, codebook_paths: Sequence[str | Path], out_dir: str | Path, *,
                  arch: str = "cpu", dedup: bool = False, f0: str = "continuous", f0_method: str = "dio",
                  speaker: str = "none", speakers_file: str | Path | None = None,
                  config: dict[str, Any] | None = None, options: TrainOptions | None = None, resume: bool = False,
                  device: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """Train a vocoder for the units of ``codebook_paths`` on the corpus ``input`` into ``out_dir``.

    Args:
        config: :class:`VocoderConfig` fields overriding the tier's defaults (e.g. ``TINY``);
            ``{"embed_init": "centroids"}`` starts the unit tables from the codebooks' centroids
            (``unit_table_dims`` is then taken from the codebooks).
        resume: continue the checkpoint in ``out_dir`` (its stored config and options win;
            ``options.steps`` / ``minutes`` may extend the run).

    Returns:
        a JSON-able summary (steps, stop reason, audio seconds, throughput, files).

    Raises:
        SpeechUnitsError: bad codebooks (other encoders, multi-stream), an existing vocoder without
            ``resume``, speaker table without speakers, no usable utterance.
    """
    from speechunits.quantize import Codebook
    from speechunits.training.checkpoint import has_checkpoint, read_state
    from speechunits.training.distributed import init_distributed
    from speechunits.training.loop import Trainer
    from speechunits.training.optim import make_optimizers
    from speechunits.units.tokenizer import UnitTokenizer
    from speechunits.vocoder.model import DISCRIMINATOR, GENERATOR, VocoderModel
    from speechunits.vocoder.task import VocoderTask

    options = options or TrainOptions()
    out = Path(out_dir)
    if not codebook_paths:
        raise SpeechUnitsError("--codebook: at least one codebook")
    if resume:
        if not has_checkpoint(out):
            raise SpeechUnitsError(f"{out}: no checkpoint to resume (training/state.json missing)")
        stored = read_state(out)["vocoder"]
        arch, dedup, f0, f0_method, speaker = (stored[k] for k in ("arch", "dedup", "f0", "f0_method", "speaker"))
        config = stored["config"]
    elif (out / META_FILE).exists() or has_checkpoint(out):
        raise SpeechUnitsError(f"{out}: already holds a vocoder; pass --resume to continue it or pick another -o")
    codebooks = [Codebook.load(p) for p in codebook_paths]
    for path, cb in zip(codebook_paths, codebooks):
        if getattr(cb, "streams", 1) > 1:
            raise SpeechUnitsError(f"--codebook {path}: multi-stream codebooks ({cb.kind}) are not supported by the "
                                   "vocoder; give one k-means codebook per stream")
        if cb.encoder_identity != codebooks[0].encoder_identity:
            raise SpeechUnitsError(f"--codebook {path}: made for encoder {cb.encoder_name}, but {codebook_paths[0]} "
                                   f"for {codebooks[0].encoder_name}; all streams must share one encoder")
        if not cb.encoder_name or not cb.frame_rate:
            raise SpeechUnitsError(f"--codebook {path}: does not name its encoder and frame rate")
    if resume:
        stored_sha = stored["codebook_sha256"]
        if [c.sha256 for c in codebooks] != stored_sha:
            raise SpeechUnitsError(f"{out}: trained on codebook(s) {[s[:12] for s in stored_sha]}, but --codebook gives "
                                   f"{[c.sha256[:12] for c in codebooks]}")

    from speechunits.encoders import load_encoder

    dist, dev = init_distributed(device)
    encoder = load_encoder(codebooks[0].encoder_name, device=str(dev))
    tokenizer = UnitTokenizer(encoder, codebooks)
    sample_rate, hop = int(encoder.info.sample_rate), int(encoder.info.hop_length)
    corpus = open_corpus_via_manifest(input)
    speakers_map = None
    if speaker == "table" or speaker == "embedding":
        source = speakers_file or find_speakers_file(input)
        if source is None and speaker == "table":
            raise SpeechUnitsError(f"{input}: --speaker table needs a speakers file (utt<TAB>speaker: the corpus's "
                                   "speakers.tsv, or --speakers FILE)")
        if source is not None:
            from speechunits.corpus import read_speakers
            from speechunits.id_match import rekey

            speakers_map = rekey(read_speakers(source), (utt.id for utt in corpus), str(source))
    cache = out / CACHE_DIR
    perturb = perturb_semitones((config or {}).get("perturb_semitones") or [])
    load = functools.partial(load_utterances, corpus, tokenizer, hop=hop, frame_offset_s=encoder.info.frame_offset_s,
                             f0_method=f0_method, speakers=speakers_map, cache_dir=cache,
                             codebook_sha256s=[c.sha256 for c in codebooks], perturb_semitones=perturb)
    if dist.is_main:  # computes and caches; the other ranks then read the cache
        utterances = load(quiet=quiet)
    dist.barrier()
    if not dist.is_main:
        utterances = load(quiet=True)
    speakers = sorted({u.speaker for u in utterances if u.speaker is not None})
    stats = speaker_f0_stats(utterances, sample_rate / hop)
    if resume:
        cfg = VocoderConfig.from_dict(config)
        if cfg.speaker == "table" and speakers != stored["speakers"]:
            raise SpeechUnitsError(f"{out}: trained on speakers {stored['speakers']}, the corpus now has {speakers}")
        speakers = stored["speakers"]
    else:
        overrides = dict(config or {})
        if overrides.get("embed_init") == "centroids":
            overrides["unit_table_dims"] = [int(c.dim) for c in codebooks]
        cfg = default_config(arch, hop, **overrides, sample_rate=sample_rate,
                             vocab_sizes=[int(c.k) for c in codebooks], dedup=dedup, f0=f0, speaker=speaker,
                             num_speakers=len(speakers))
    if cfg.sample_rate != sample_rate or cfg.hop != hop:
        raise SpeechUnitsError(f"vocoder config: sample rate {cfg.sample_rate} / hop {cfg.hop} do not match the "
                               f"encoder's {sample_rate} / {hop}")
    if cfg.dedup and len(codebooks) > 1:
        raise SpeechUnitsError("--dedup: one codebook only (several streams deduplicate differently)")

    torch.manual_seed(options.seed)
    model = VocoderModel(cfg)
    if cfg.embed_init == "centroids" and not resume:  # a resumed run loads its trained tables
        model.conditioner.load_centroids([torch.as_tensor(np.asarray(c.centroids)) for c in codebooks])
    model = model.to(dev)
    phases = {GENERATOR: model.generator_modules()}
    if model.discriminators is not None:
        phases[DISCRIMINATOR] = model.discriminators
    optim_cfg = _optim_config(cfg, options)
    optimizers = make_optimizers(phases, optim_cfg)
    task = VocoderTask(cfg, utterances, stats, speakers, seed=options.seed)
    audio_seconds = sum(u.audio.size for u in utterances) / sample_rate
    facts = {"arch": cfg.arch, "dedup": cfg.dedup, "f0": cfg.f0, "f0_method": f0_method, "speaker": cfg.speaker,
             "speakers": speakers, "codebook_sha256": [c.sha256 for c in codebooks], "config": cfg.to_dict()}
    consumes = {"codebook_sha256": facts["codebook_sha256"], "k": cfg.vocab_sizes, "encoder": encoder.info.name,
                "encoder_identity": encoder.info.identity, "frame_rate": sample_rate / hop, "dedup": cfg.dedup}
    progress = {"step": 0, "audio": 0.0}
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for j, cb in enumerate(codebooks):
            if not (codebook_dir(out, j) / "codebook.json").is_file():
                cb.save(codebook_dir(out, j))
    sample_utts = _pick_samples(utterances)

    def export(trained_model: torch.nn.Module, root: Path) -> None:
        _speaker_means(trained_model, cfg, utterances, speakers, dev)
        meta = vocoder_meta(cfg, codebooks, dedup=cfg.dedup, f0=cfg.f0, f0_method=f0_method, speaker=cfg.speaker,
                            speakers=speakers, stats=stats,
                            trained={"steps": progress["step"], "audio_seconds_seen": progress["audio"],
                                     "corpus": str(input), "utterances": len(utterances),
                                     "corpus_audio_seconds": audio_seconds})
        write_vocoder(trained_model, root, meta)
        was_training = trained_model.training
        _write_samples(Vocoder(trained_model.eval(), meta, root, dev), sample_utts,
                       root / SAMPLES_DIR / f"step-{progress['step']}")
        trained_model.train(was_training)

    trainer = Trainer(model, task, optim_cfg, out, device=dev, dist=dist, optimizer=optimizers,
                      state={"vocoder": facts, "consumes": consumes}, export=export,
                      desc=f"vocoder {cfg.arch}", amount_unit="audio s", quiet=quiet)
    start = 0
    if resume:
        state = trainer.restore()
        start = int(state["step"])
        progress["audio"] = float(state.get("audio_seconds_seen", 0.0))
    progress["step"] = start

    def on_step(entry: Any) -> bool:
        progress["step"] = entry.step
        progress["audio"] += entry.amount
        trainer.state["audio_seconds_seen"] = progress["audio"]
        return False

    result = trainer.run(start, on_step)
    wall = sum(h.wall_seconds for h in result.history)
    history = result.history
    first = history[0].metrics if history else {}
    last = {k: float(np.mean([h.metrics.get(k, 0.0) for h in history[-10:]])) for k in (history[-1].metrics if history else {})}
    return {"vocoder": str(out), "arch": cfg.arch, "steps_done": result.steps_done, "steps_max": result.steps_max,
            "stop_reason": result.stop_reason, "train_seconds": wall,
            "audio_seconds_trained": sum(h.amount for h in history),
            "audio_seconds_per_second": sum(h.amount for h in history) / max(wall, 1e-9),
            "utterances": len(utterances), "corpus_audio_seconds": audio_seconds, "speakers": len(speakers),
            "first_metrics": first, "last_metrics": last}


def _pick_samples(utterances: Sequence[Utterance]) -> list[Utterance]:
    """Up to :data:`NUM_SAMPLES` utterances, from different speakers where possible."""
    picked: list[Utterance] = []
    seen: set[str | None] = set()
    for utt in utterances:
        if utt.speaker not in seen or utt.speaker is None:
            picked.append(utt)
            seen.add(utt.speaker)
        if len(picked) == NUM_SAMPLES:
            break
    return picked


def _write_samples(vocoder: Vocoder, utterances: Sequence[Utterance], out: Path) -> None:
    """Resyntheses of ``utterances`` (their units, F0 and speaker) into ``out/<id>.wav``."""
    from speechunits.audio import Audio
    from speechunits.pitch import F0Track
    from speechunits.units.units import Units

    out.mkdir(parents=True, exist_ok=True)
    for utt in utterances:
        streams = [Units(row, vocoder.frame_rate, k) for row, k in zip(utt.units, vocoder.meta["k"])]
        if vocoder.meta["dedup"]:
            streams = [streams[0].dedup()]
        kwargs: dict[str, Any] = {}
        if vocoder.meta["speaker"] == "table":
            kwargs["speaker"] = utt.speaker
        elif vocoder.meta["speaker"] == "embedding":
            kwargs["reference"] = Audio(utt.audio, vocoder.sample_rate)
        audio = vocoder.synthesize(streams, f0=F0Track(utt.f0, vocoder.frame_rate), **kwargs)
        audio.save(out / f"{utt.id.replace('/', '_')}.wav")
