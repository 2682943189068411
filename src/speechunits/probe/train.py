"""Training a probe: a learning-rate x seed sweep on the one training loop, best by dev, test once.

For every ``lr`` in ``lrs`` and ``seed`` in ``seeds`` a fresh model (featurizer + head) trains on
:class:`speechunits.training.Trainer` over the training part of the split, evaluating on dev
every ``eval_every`` steps (through ``on_step``) and keeping the best weights; ``patience``
evaluations without improvement stop the run (early stopping; one run is
:func:`speechunits.probe.run.train_run`). With ``dev_sample`` the evaluations while training read a fixed
sample of dev, and each run's best step is then scored on all of dev once. The learning rate with the best
mean dev metric over seeds is chosen; only then is the test part read, once per seed of that lr,
and reported as mean and standard deviation over seeds (s3prl users' most common complaint:
one hand-tuned learning rate per model and task). A ``diarize`` probe's threshold and median filter
and a ``verify`` probe's score normalisation are chosen on dev per seed before its test part is read
(:func:`slot_decision_on_dev`, :func:`scoring_on_dev`). The best seed's weights become the probe
(:mod:`speechunits.probe.model_dir`), with the learned layer weights of every seed.

``max_minutes`` is the budget of the whole sweep, shared equally by its runs; under a budget the
learning-rate warmup also ends once ``warmup_fraction`` of a run's share is spent
(``OptimConfig.warmup_fraction`` of the shared training loop), so a slow machine cannot spend its
budget warming up, and the decay follows the elapsed share when that is further along than the
steps. ``step_schedule`` makes both follow the steps alone (the budget only stops). Under torchrun the
runs are data-parallel (DDP); rank 0 evaluates, decides early stopping for all and writes the probe.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.probe.defaults import DEFAULT_VERIFICATION, DEFAULT_WARMUP_FRACTION, head_defaults
from speechunits.probe.evaluate import FRAME_LABEL_TASKS, PRIMARY, corpus_labels
from speechunits.probe.featurizers import EMBED_INITS, EMBED_RANDOM, INTERFACES
from speechunits.probe.finetune import FINETUNE_TOP, Finetune, is_conformer_block, parse_finetune
from speechunits.probe.heads import check_dropout
from speechunits.probe.feature_inputs import EncoderInput
from speechunits.probe.unit_inputs import UnitInput
from speechunits.probe.inputs import FEATURES, UNITS, ProbeInput, as_corpus, feature_statistics, identity_facts
from speechunits.probe.model import build_model, check_verification
from speechunits.probe.model_dir import PROBE_FILE, LabelCoder, save_cohort, save_probe, save_unit_models
from speechunits.probe.augment import parse_time_mask, parse_unit_noise
from speechunits.probe.resume import RUNS_DIR, split_digest
from speechunits.probe.splits import dev_sample as dev_sample_of
from speechunits.probe.run import RunResult, SweepRun, dev_metrics, train_run
from speechunits.probe.task import (CTC, FRAME_LEVEL, MARGIN, MASK, PIT, UTTERANCE,
                                    ctc_too_short, objective_of, predict_logits)
from speechunits.training.checkpoint import training_dir

log = logging.getLogger(__name__)

DEFAULT_EVAL_EVERY = 50
DEFAULT_PATIENCE = 5


@dataclass
class ProbeResult:
    """What :func:`train_probe` produced (``probe.json`` holds the same facts)."""

    probe_dir: Path
    task: str
    lr: float
    seed: int
    dev: dict[str, dict[str, Any]]
    test: dict[str, dict[str, Any]]
    layer_weights: list[float] | None
    runs: list[RunResult]
    missing_labels: list[str]
    input_errors: dict[str, str]
    meta: dict[str, Any]


def summarize(values: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "std", "values"}}`` over runs (population std; 0 for one run)."""
    names = list(values[0]) if values else []
    return {name: {"mean": float(np.mean([v[name] for v in values])),
                   "std": float(np.std([v[name] for v in values])),
                   "values": [float(v[name]) for v in values]} for name in names}


def make_coder(task: str, train_labels: Sequence[Any], *, tokenizer: str | int = "chars",
               frame_vocabulary: Any = None, speaker_slots: int | None = None) -> LabelCoder:
    """The label coder built on the training part's labels (``tokenizer``: ``"chars"`` or a BPE size).

    ``diarize``: ``speaker_slots`` slots (default: the most speakers of any training recording), named
    ``speaker1``, ``speaker2``, ... in a vocabulary of kind ``speaker-slots``."""
    from speechunits.probe import vocab

    if task == "diarize":
        from speechunits.probe.diarize import MAX_SPEAKER_SLOTS

        most = max((label.num_speakers for label in train_labels), default=0)
        slots = most if speaker_slots is None else int(speaker_slots)
        if not 1 <= slots <= MAX_SPEAKER_SLOTS:
            raise SpeechUnitsError(f"task 'diarize': {slots} speaker slots (--speakers-per-recording, else the most "
                                   f"speakers of a training recording); expected 1 to {MAX_SPEAKER_SLOTS}")
        return LabelCoder(task, vocabulary=vocab.Vocabulary(tuple(f"speaker{k + 1}" for k in range(slots)), None,
                                                            "speaker-slots"))

    if task in ("enhance", "separate"):
        from speechunits.probe.masking import mask_tokens

        layouts = {(int(label.upsample), label.sources) for label in train_labels}
        if len(layouts) != 1:
            raise SpeechUnitsError(f"task {task!r}: the labels disagree on the STFT frames per input frame or the "
                                   f"number of sources ((frames, sources): {sorted(layouts)})")
        return LabelCoder(task, vocabulary=vocab.Vocabulary(mask_tokens(*layouts.pop()), None, "stft-mask"))
    if task == "phones":
        return LabelCoder(task, vocabulary=vocab.phone_vocabulary(train_labels))
    if task == "asr":
        if tokenizer == "chars":
            return LabelCoder(task, tokenizer=vocab.char_tokenizer(train_labels))
        return LabelCoder(task, tokenizer=vocab.bpe_tokenizer(train_labels, int(tokenizer)))
    if task == "slots":
        if tokenizer != "chars":
            raise SpeechUnitsError("task 'slots' reads characters and slot tags (--tokenizer chars)")
        return LabelCoder(task, tokenizer=vocab.slot_tokenizer(train_labels))
    if task == "frames":
        if frame_vocabulary is None:
            raise SpeechUnitsError("task 'frames': the labels carry no frame vocabulary")
        return LabelCoder(task, vocabulary=frame_vocabulary)
    objective_of(task)
    classes = vocab.class_vocabulary(str(label) for label in train_labels)
    if len(classes.tokens) < 2:  # a classifier of one class learns nothing and scores 100 %
        raise SpeechUnitsError(f"task {task!r}: the training part has {len(classes.tokens)} class(es) "
                               f"({', '.join(repr(c) for c in classes.tokens)}); a {task} probe needs at least two")
    return LabelCoder(task, vocabulary=classes)


def finetune_input(encoder_name: str, finetune: str, *, corpus: Any, device: str = "auto", dtype: str = "fp32",
                   quiet: bool = False) -> EncoderInput:
    """The input of a fine-tuning probe, cached (the frozen part): layer ``K - N`` of the model for
    ``top:N``; layer 0 (the transformer's input) for ``lora`` and ``adapters``."""
    from speechunits.encoders import load_encoder

    parsed = parse_finetune(finetune)
    encoder = load_encoder(encoder_name, device=device, dtype=dtype)
    num_layers = encoder.info.num_layers
    if num_layers < 1:
        raise SpeechUnitsError(f"--finetune {finetune}: {encoder_name} has no transformer blocks to fine-tune")
    if parsed is None or (parsed.kind == FINETUNE_TOP and not 1 <= parsed.blocks <= num_layers):
        raise SpeechUnitsError(f"--finetune {finetune}: {encoder_name} has {num_layers} blocks")
    first = 0 if parsed.low_rank else num_layers - parsed.blocks
    return EncoderInput(encoder_name, [first], corpus=corpus, encoder=encoder, quiet=quiet)


def _finetune_spec(parsed: Finetune, identity: Mapping[str, Any], first: int, read_layers: Sequence[int] | None,
                   num_layers: int | None, conformer: bool = False) -> tuple[dict[str, Any], list[int]]:
    """``spec["finetune"]`` and the layers the featurizer weighs, for an input caching layer ``first``
    of an encoder of ``num_layers`` blocks (``read_layers`` None: all of them; ``conformer``: its
    blocks are conformer blocks, whose adapted layers have other names)."""
    record: dict[str, Any] = {"kind": parsed.kind, "blocks": parsed.blocks, "encoder": identity["encoder"]}
    if not parsed.low_rank:
        if read_layers is not None:
            raise SpeechUnitsError("--finetune top:N weighs layers K-N..K; drop --layers")
        return record, list(range(first, first + parsed.blocks + 1))
    if first != 0:
        raise SpeechUnitsError(f"--finetune {parsed.kind} reads layer 0 of the encoder (see finetune_input)")
    if read_layers is None and num_layers is not None:
        read_layers = range(num_layers + 1)
    layers = sorted({int(x) for x in read_layers}) if read_layers is not None else None
    if layers is not None and (not layers or layers[0] < 0):
        raise SpeechUnitsError(f"--layers {read_layers}: expected layer numbers >= 0")
    deepest = layers[-1] if layers is not None else None
    if deepest is None or deepest < 1:
        raise SpeechUnitsError(f"--finetune {parsed.kind}: give the layers to read (--layers), the deepest >= 1; "
                               "blocks 1..deepest are adapted")
    record.update(blocks=deepest, first=0, rank=parsed.rank, targets=list(parsed.targets(conformer)), select=layers,
                  encoder_identity=identity.get("encoder_identity"))
    return record, layers


def model_spec(task: str, inputs: ProbeInput, num_classes: int, *, interface: str = "weighted-sum",
               head: str = "linear", layer: int | None = None, combine: str = "sum", embed_dim: int = 256,
               hidden: int = 256, normalize: bool = False, finetune: str | None = None,
               finetune_layers: Sequence[int] | None = None, standardize: bool = False, stack: int = 1,
               lstm_layers: int = 2, embed_init: str = EMBED_RANDOM, dropout: float = 0.0,
               time_mask: str | None = None, unit_noise: str | None = None,
               verification: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The JSON spec of the probe model (see :class:`speechunits.probe.model.ProbeModel`).

    ``finetune_layers``: the layers a ``lora``/``adapters`` probe weighs (blocks 1..max adapted).
    ``standardize``, ``stack``, ``lstm_layers``: see ProbeModel (a ``frames`` probe cannot stack).
    ``embed_init``: unit tables from random, from the codebook centroids, or fixed to them (units
    read with their codebooks: :meth:`~speechunits.probe.unit_inputs.UnitInput.centroid_tables`).
    ``dropout``: the head's, while training (recorded only when above 0). ``time_mask``: ``"N:R"``
    SpecAugment time masks while training (:func:`~speechunits.probe.augment.parse_time_mask`;
    recorded only when given). ``unit_noise``: ``"P[:N]"`` substitution of units by their N nearest
    while training (:func:`~speechunits.probe.augment.parse_unit_noise`; units with centroid tables).
    ``verification``: ``verify`` probes' ``{"embedding_dim", "scale", "margin"}`` (default
    :data:`DEFAULT_VERIFICATION`)."""
    source = inputs.model_spec()
    objective = objective_of(task)
    if int(stack) < 1 or int(lstm_layers) < 1:
        raise SpeechUnitsError(f"--stack and --lstm-layers must be >= 1, got {stack} and {lstm_layers}")
    if int(hidden) < 1:
        raise SpeechUnitsError(f"--hidden must be >= 1, got {hidden}")
    if int(embed_dim) < 1:
        raise SpeechUnitsError(f"embed_dim must be >= 1, got {embed_dim}")
    if head == "xvector" and objective not in (UTTERANCE, MARGIN):
        raise SpeechUnitsError(f"--head xvector pools utterances (speaker, classify, verify), not task {task!r}")
    if int(stack) > 1 and objective in FRAME_LEVEL:
        raise SpeechUnitsError(f"--stack {stack}: task {task!r} labels every input frame; it cannot stack frames")
    if standardize and (source["kind"] != FEATURES or finetune is not None):
        raise SpeechUnitsError("--standardize applies to features (--encoder, --features) without --finetune")
    spec: dict[str, Any] = {"input": source, "head": head, "num_classes": int(num_classes), "hidden": int(hidden),
                            "level": "utterance" if objective in (UTTERANCE, MARGIN) else "frame",
                            "stack": int(stack), "standardize": bool(standardize)}
    if objective == MARGIN:
        spec["verification"] = check_verification({**DEFAULT_VERIFICATION, **dict(verification or {})})
    elif verification is not None:
        raise SpeechUnitsError(f"--speaker-dim, --margin and --scale apply to task 'verify', not {task!r}")
    if head == "bilstm":
        spec["lstm_layers"] = int(lstm_layers)
    if check_dropout(dropout) > 0:  # checked here, before any input is loaded
        spec["dropout"] = float(dropout)
    masks = parse_time_mask(time_mask)
    if masks is not None:
        spec["time_mask"] = masks.spec()
    noise = parse_unit_noise(unit_noise)
    if noise is not None:
        if source["kind"] != UNITS or embed_init == EMBED_RANDOM:
            raise SpeechUnitsError("--unit-noise substitutes units by their nearest centroids: it applies to "
                                   "--units with --embed-init centroids or centroids-frozen")
        spec["unit_noise"] = noise.spec()
    parsed = parse_finetune(finetune)
    if parsed is not None and (source["kind"] != FEATURES or source["num_layers"] != 1):
        raise SpeechUnitsError("--finetune reads encoder features of one layer (see finetune_input)")
    if source["kind"] == FEATURES:
        if interface not in INTERFACES:
            raise SpeechUnitsError(f"--interface: expected one of {INTERFACES}, got {interface!r}")
        spec.update(interface=interface, normalize=bool(normalize))
        layers = list(getattr(inputs, "layers", range(source["num_layers"])))
        if parsed is not None:
            encoder = getattr(inputs, "encoder", None)
            blocks = getattr(getattr(getattr(encoder, "model", None), "encoder", None), "layers", None)
            spec["finetune"], layers = _finetune_spec(parsed, inputs.identity(), layers[0], finetune_layers,
                                                      None if encoder is None else encoder.info.num_layers,
                                                      conformer=bool(blocks) and is_conformer_block(blocks[0]))
        spec["layers"] = layers
        if interface == "single":
            chosen = layers[0] if layer is None and len(layers) == 1 else layer
            if chosen not in layers:
                raise SpeechUnitsError(f"--interface single: pick one layer of {layers} (--layers N)")
            spec["layer_index"] = layers.index(chosen)
    else:
        spec.update(interface="embedding", combine=combine, embed_dim=int(embed_dim))
        if embed_init not in EMBED_INITS:
            raise SpeechUnitsError(f"--embed-init: expected one of {EMBED_INITS}, got {embed_init!r}")
        if embed_init != EMBED_RANDOM:
            spec.update(embed_init=embed_init, table_dims=[int(t.shape[1]) for t in inputs.centroid_tables()])
    if source["kind"] != UNITS and embed_init != EMBED_RANDOM:
        raise SpeechUnitsError(f"--embed-init {embed_init}: applies to units (--units with --codebook)")
    return spec


def train_probe(task: str, inputs: ProbeInput, labels: Any, split: Any, out_dir: str | Path, *,
                interface: str = "weighted-sum", head: str | None = None, layer: int | None = None,
                combine: str = "sum", embed_dim: int = 256, hidden: int = 256, normalize: bool = False,
                tokenizer: str | int = "chars", lrs: Sequence[float] = (1e-3,), seeds: Sequence[int] = (0,),
                max_steps: int = 2000, max_minutes: float | None = None, eval_every: int = DEFAULT_EVAL_EVERY,
                patience: int = DEFAULT_PATIENCE, dev_sample: int | None = None, batch_frames: int | None = None,
                crop_seconds: float | None = None,
                warmup_steps: int | None = None, warmup_fraction: float = DEFAULT_WARMUP_FRACTION,
                step_schedule: bool = False, standardize: bool = False, stack: int = 1,
                lstm_layers: int | None = None,
                embed_init: str = EMBED_RANDOM, dropout: float = 0.0, time_mask: str | None = None,
                unit_noise: str | None = None, bf16: bool = False, finetune: str | None = None,
                finetune_layers: Sequence[int] | None = None, resume: bool = False,
                classes: str | None = None, balance: bool = False,
                verification: Mapping[str, float] | None = None, speaker_slots: int | None = None,
                device: str = "auto", quiet: bool = False) -> ProbeResult | None:
    """Train the probe of ``task`` on ``inputs`` into ``out_dir`` (see the module docstring).

    Args:
        labels: a :class:`~speechunits.probe.labels.LabelSet` (or ``{utt: label}``).
        split: a :class:`~speechunits.probe.splits.Split`; utterances without a label or an
            input are dropped from it (and reported).
        interface, head, layer, combine, embed_dim, hidden, normalize: the model (see
            :mod:`speechunits.probe.model`); ``layer`` is the layer number of ``single``. ``head``,
            ``lstm_layers`` and ``batch_frames`` left None are the task's
            (:func:`~speechunits.probe.defaults.head_defaults`: SUPERB's 3-layer BiLSTM on 3000-frame
            batches for ``enhance``/``separate``, else linear, 2 layers, 20000 frames).
        tokenizer: ``asr`` targets: ``"chars"`` or a BPE vocabulary size.
        lrs, seeds: the sweep. max_steps, max_minutes: per-run step cap, whole-sweep time budget.
        eval_every, patience: dev evaluation period (steps) and early-stopping patience (evaluations).
        dev_sample: evaluate only this many dev utterances while training (a seeded sample, the same
            for every run: :func:`~speechunits.probe.splits.dev_sample`), then score each run's best step
            on all of dev, which chooses the lr (None: all of dev every time). For a dev part whose
            evaluation would eat a short budget; refused for ``verify`` (its trials are dev's pairs).
        crop_seconds: train on random crops of at most this long (frame-level tasks: ``frames``,
            ``diarize``, ``enhance``, ``separate``; :class:`~speechunits.probe.task.ProbeTask`); dev and
            test read whole utterances. None: whole utterances.
        batch_frames: padded frames per batch. warmup_steps: default ``min(100, max_steps // 10)``.
        warmup_fraction: under ``max_minutes``, the warmup ends at the latest once this share of a
            run's budget is spent (``OptimConfig.warmup_fraction``).
        step_schedule: warmup and decay follow the steps alone; ``max_minutes`` only stops a run
            (``OptimConfig.decay_by_time`` False). A sweep that no budget stops then repeats
            step for step on a loaded machine.
        standardize, stack, lstm_layers: the judge's speed options (see :func:`model_spec` and
            docs/probe.md): the training part's feature mean and std removed, ``stack`` frames
            concatenated before the head, BiLSTM depth.
        dropout: the head's dropout while training (0: none; see docs/probe.md).
        time_mask: ``"N:R"``: N SpecAugment time masks per utterance while training, each up to a
            share R of it (:mod:`speechunits.probe.augment`); None: none.
        unit_noise: ``"P[:N]"``: units replaced with probability P by one of their N nearest units
            (centroid distance) while training; unit inputs with centroid tables only.
        embed_init: unit probes: ``random`` tables, or tables that start from (``centroids``) or stay at
            (``centroids-frozen``) the standardised codebook centroids (DASB's initialisation; the
            input needs its ``codebooks``).
        finetune: ``"top:N"``: also train the top N blocks of the model (``inputs`` from
            :func:`finetune_input`); the probe then holds those blocks too. ``"lora[:R]"`` /
            ``"adapters[:R]"``: rank-R peft LoRA updates of blocks 1..max(``finetune_layers``)
            (attention or feed-forward); the probe holds only the updates and the base's identity.
        finetune_layers: the layers a ``lora``/``adapters`` probe weighs.
        classes: recorded in the probe: the spec ``classify`` labels were mapped with
            (:mod:`speechunits.probe.classes`), which ``probe eval`` applies too.
        balance: ``speaker``/``classify``: weigh each training utterance's loss by
            ``n / (C * n_c)`` (its class's share of the training part), so that every class counts
            alike (the effect of s3prl's class-balanced sampling of keyword-spotting batches).
        verification: ``verify`` probes: ``{"embedding_dim", "scale", "margin"}``, any of them
            (the rest from :data:`~speechunits.probe.defaults.DEFAULT_VERIFICATION`). A ``verify``
            split must keep its dev and test speakers out of training, and dev must hold two
            speakers and one speaker's two utterances (a target and a non-target trial).
        speaker_slots: ``diarize`` probes: speaker slots (default: the most speakers of a training
            recording); a recording of any part with more speakers is an error naming it.
        resume: continue the unfinished sweep in ``out_dir`` (:mod:`speechunits.probe.resume`): runs
            that ended are reused, runs with a checkpoint continue from their last dev evaluation
            (exactly, under ``step_schedule`` or without ``max_minutes``; a run whose schedule
            follows the clock starts again), the others start. The time budget counts the time a
            run has already spent; a run the budget stopped continues if the budget is now larger.

    Under torchrun (``WORLD_SIZE > 1``) every rank loads the input and trains on its share of
    each step's batches (:class:`~speechunits.training.Trainer`'s DDP); rank 0 alone evaluates
    on dev (its early-stopping decision is broadcast, so the ranks stop together), reads the
    test part and writes the probe. Other ranks return None.

    Raises:
        SpeechUnitsError: an existing probe in ``out_dir``, an unfinished sweep there without
            ``resume`` (or one of another input, labels, split or settings), no labelled training
            or dev utterance, bad options.
    """
    from speechunits import __version__
    from speechunits.training.distributed import init_distributed

    out = Path(out_dir)
    if (out / PROBE_FILE).exists():
        raise SpeechUnitsError(f"{out}: already holds a probe; pick another -o")
    if not resume and (out / RUNS_DIR).is_dir() and any((out / RUNS_DIR).iterdir()):
        raise SpeechUnitsError(f"{out}: holds an unfinished sweep ({RUNS_DIR}/); pass --resume to continue it "
                               "or pick another -o")
    head, lstm_layers, batch_frames = head_defaults(task, head, lstm_layers, batch_frames)
    if not lrs or not seeds:
        raise SpeechUnitsError("--lr and --seeds: at least one of each")
    if eval_every < 1 or patience < 1 or max_steps < 1 or batch_frames < 1:
        raise SpeechUnitsError("--max-steps, --eval-every, --patience and --batch-frames must be >= 1")
    if dev_sample is not None and dev_sample < 1:
        raise SpeechUnitsError(f"--dev-sample: expected at least 1 utterance, got {dev_sample}")
    if dev_sample is not None and task == "verify":
        raise SpeechUnitsError("--dev-sample: not for 'verify', whose dev score is over every pair of dev "
                               "utterances; use a smaller dev part (--fractions) instead")
    if crop_seconds is not None and (not crop_seconds > 0 or objective_of(task) not in FRAME_LEVEL
                                     or finetune is not None):
        raise SpeechUnitsError(f"--crop-seconds: a length > 0 for frame-level tasks (frames, diarize, enhance, "
                               f"separate) without --finetune; got {crop_seconds} for {task!r}")
    if crop_seconds is not None and getattr(inputs, "dedup", False):
        raise SpeechUnitsError("--crop-seconds: crops need frame-aligned inputs, not deduplicated units or BPE")
    if not 0.0 < warmup_fraction <= 1.0:
        raise SpeechUnitsError(f"--warmup-fraction: expected a share in (0, 1], got {warmup_fraction}")
    # library callers: bad values fail before any input is loaded
    check_dropout(dropout), parse_time_mask(time_mask), parse_unit_noise(unit_noise)
    objective = objective_of(task)
    if objective == MASK:  # its judges must be there before anything trains
        from speechunits.probe.masking import check_judges

        check_judges(task)
    _check_balance(task, balance)
    _check_speaker_slots(task, speaker_slots)
    dist, dev = init_distributed(device)
    label_map: dict[str, Any] = dict(getattr(labels, "labels", labels))
    missing = list(getattr(labels, "missing", []))
    split = split.restrict(set(label_map))
    loaded = inputs.load(split.train + split.dev + split.test)
    loaded.warn_errors()
    samples = loaded.samples
    split = split.restrict(set(samples))
    if not split.train or not split.dev:
        hint = (f" (labelled ids such as {sorted(label_map)[:3]}; the input's such as {inputs.available_ids()[:3]})"
                if not samples else "")
        raise SpeechUnitsError(f"probe {task}: the split has {len(split.train)} training and {len(split.dev)} dev "
                               "utterances with labels and inputs; both must be non-empty" + hint)
    if objective == MARGIN:
        check_verification_split(label_map, split)
    coder = make_coder(task, [label_map[i] for i in split.train], tokenizer=tokenizer,
                       frame_vocabulary=getattr(labels, "vocabulary", None), speaker_slots=speaker_slots)
    if objective == PIT:  # dev and test are scored with the slots the training part gives
        from speechunits.probe.diarize import check_speaker_slots

        check_speaker_slots({i: label_map[i] for i in split.train + split.dev + split.test}, coder.num_classes,
                            str(getattr(labels, "source", "") or "the labels"))
    targets = {i: coder.encode(label_map[i]) for i in split.train}
    class_weights = balanced_class_weights(list(targets.values()), coder.num_classes) if balance else None
    spec = model_spec(task, inputs, coder.num_classes, interface=interface, head=head, layer=layer,
                      combine=combine, embed_dim=embed_dim, hidden=hidden, normalize=normalize, finetune=finetune,
                      finetune_layers=finetune_layers, standardize=standardize, stack=stack, lstm_layers=lstm_layers,
                      embed_init=embed_init, dropout=dropout, time_mask=time_mask,
                      unit_noise=unit_noise, verification=verification)
    centroids = inputs.centroid_tables() if spec.get("embed_init", EMBED_RANDOM) != EMBED_RANDOM else None
    short: list[str] = []
    if objective == CTC:
        short = ctc_too_short({i: math.ceil(samples[i].num_frames / stack) for i in split.train}, targets)
        if short:
            log.warning("%d of %d training utterances have fewer %sframes than CTC needs for their targets "
                        "(the loss of those is zeroed: they teach nothing), e.g. %s", len(short), len(split.train),
                        f"stacked (x{stack}) " if stack > 1 else "input ", short[0])
    statistics = feature_statistics(samples, split.train) if standardize else None
    warmup = min(100, max_steps // 10) if warmup_steps is None else warmup_steps
    per_run_minutes = None if max_minutes is None else max_minutes / (len(lrs) * len(seeds))
    train_audio = sum(samples[i].input_frames for i in split.train) / inputs.frame_rate

    # what the input is, not where it was read from: a sweep resumes from another working directory
    fingerprint = {"task": task, "spec": spec, "consumes": identity_facts(inputs.identity()), "labels": coder.record(),
                   "split": split_digest(split.train, split.dev, split.test), "max_steps": int(max_steps),
                   "eval_every": int(eval_every), "patience": int(patience), "batch_frames": int(batch_frames),
                   "warmup_steps": int(warmup), "step_schedule": bool(step_schedule), "bf16": bool(bf16),
                   "class_weights": class_weights,
                   "world_size": dist.world}
    crop_frames = None if crop_seconds is None else max(1, round(crop_seconds * inputs.frame_rate))
    if crop_frames is not None:  # absent otherwise: sweeps begun before the option resume
        fingerprint["crop_frames"] = crop_frames
    sampled = dev_sample_of(split.dev, dev_sample)
    watched = sampled if len(sampled) < len(split.dev) else None  # None: every evaluation reads all of dev
    if watched is not None:  # absent otherwise: sweeps begun before the option resume
        fingerprint["dev_sample"] = len(watched)
    clock_schedule = per_run_minutes is not None and not step_schedule
    if clock_schedule:  # the schedule follows the budget: a resumed run must have the same one
        fingerprint.update(max_minutes=float(max_minutes), runs=len(lrs) * len(seeds),
                           warmup_fraction=float(warmup_fraction))

    sweep = SweepRun(out=out, task=task, spec=spec, inputs=inputs, samples=samples, targets=targets,
                     labels=label_map, coder=coder, split=split, fingerprint=fingerprint, resume=resume, dist=dist,
                     device=dev, statistics=statistics, centroids=centroids, per_run_minutes=per_run_minutes,
                     clock_schedule=clock_schedule, max_steps=max_steps, eval_every=eval_every, patience=patience,
                     warmup_steps=warmup, warmup_fraction=warmup_fraction, batch_frames=batch_frames,
                     step_schedule=step_schedule, bf16=bf16, quiet=quiet, class_weights=class_weights,
                     watched=watched, crop_frames=crop_frames)
    runs = [run for lr in lrs for seed in seeds if (run := train_run(sweep, float(lr), int(seed))) is not None]

    if not dist.is_main:
        return None
    by_lr: dict[float, list[RunResult]] = {}
    for run in runs:
        by_lr.setdefault(run.lr, []).append(run)
    chosen_lr = max(by_lr, key=lambda lr: float(np.mean([r.dev_score for r in by_lr[lr]])))
    finalists = by_lr[chosen_lr]
    test_ids = split.test
    model = build_model(spec).to(dev)
    decisions: dict[int, tuple[Any, dict[str, dict[str, float]]]] = {}
    scorings: dict[int, Any] = {}
    for run in finalists:  # the test part is read here, once per seed of the chosen lr
        model.load_state_dict(run.state)
        scoring = None
        if objective == PIT:  # the threshold and median filter are chosen on dev too, before test
            decisions[run.seed] = slot_decision_on_dev(model, samples, label_map, split.dev, dev, batch_frames,
                                                       inputs.frame_rate)
            coder.decision = decisions[run.seed][0]
            run.dev = decisions[run.seed][1][coder.decision.key]
        if objective == MARGIN:  # so is the score normalisation, against the training speakers
            scorings[run.seed] = scoring_on_dev(model, samples, label_map, split.train, split.dev, dev, batch_frames)
            run.dev = scorings[run.seed].dev[scorings[run.seed].norm.name]
            scoring = (scorings[run.seed].norm, scorings[run.seed].cohort)
        if test_ids:
            run.test = dev_metrics(task, model, coder, samples, label_map, test_ids, dev, batch_frames, scoring)
    chosen = max(finalists, key=lambda r: r.dev_score)
    model.load_state_dict(chosen.state)
    if objective == PIT:
        coder.decision = decisions[chosen.seed][0]
    scoring_record = None
    if objective == MARGIN:
        chosen_scoring = scorings[chosen.seed]
        out.mkdir(parents=True, exist_ok=True)
        scoring_record = {"norm": chosen_scoring.norm.record(), "cohort": save_cohort(out, chosen_scoring.cohort),
                          "cohort_speakers": int(chosen_scoring.cohort.shape[0]),
                          "dev_eer": {name: m["eer"] for name, m in chosen_scoring.dev.items()}}
    name, lower = PRIMARY[task]
    chosen_dir = out / RUNS_DIR / f"lr{chosen.lr:g}-seed{chosen.seed}"
    if training_dir(chosen_dir).is_dir():
        shutil.copytree(training_dir(chosen_dir), training_dir(out), dirs_exist_ok=True)
    dev_summary = summarize([r.dev for r in finalists])
    test_summary = summarize([r.test for r in finalists if r.test is not None]) if test_ids else {}
    identity = inputs.identity()
    total_train = sum(r.train_seconds for r in runs)
    meta = {
        "task": task,
        "input": identity,
        "interface": spec.get("interface"),
        "head": head,
        "classes": classes,
        "class_weights": class_weights,
        "split": {**split.info, **split.sizes()},
        "selection": {"metric": name, "lower_is_better": lower, "lr": chosen.lr, "seed": chosen.seed,
                      "lrs": [float(x) for x in lrs], "seeds": [int(s) for s in seeds],
                      "dev_by_lr": {f"{lr:g}": summarize([r.dev for r in rs]) for lr, rs in by_lr.items()}},
        "dev": dev_summary,
        "test": test_summary,
        "layers": spec.get("layers"),
        "finetune": spec.get("finetune"),
        "layer_weights": chosen.layer_weights,
        "layer_weights_by_seed": {str(r.seed): r.layer_weights for r in finalists},
        "runs": [r.record() for r in runs],
        "scoring": scoring_record,
        "decision_grid": ({"chosen": coder.decision.key,
                           "dev_der": {k: v["der"] for k, v in decisions[chosen.seed][1].items()}}
                          if objective == PIT else None),
        "missing_labels": len(missing),
        "input_errors": len(loaded.errors),
        "ctc_too_short": len(short),
        "throughput": {"feature_seconds": round(inputs.load_seconds, 3),
                       "feature_x_realtime": inputs.cached_seconds() / max(inputs.load_seconds, 1e-9),
                       "train_x_realtime": sum(r.audio_seconds for r in runs) / max(total_train, 1e-9),
                       "train_utterances_per_s": (sum(r.audio_seconds for r in runs) / max(total_train, 1e-9))
                       * len(split.train) / max(train_audio, 1e-9)},
        "training": {"max_steps": max_steps, "max_minutes": max_minutes, "eval_every": eval_every,
                     "patience": patience,
                     "dev_sample": None if watched is None else len(watched),
                     "crop_seconds": crop_seconds, "batch_frames": batch_frames, "warmup_steps": warmup,
                     "warmup_fraction": warmup_fraction, "step_schedule": step_schedule, "bf16": bf16,
                     "world_size": dist.world},
        "speechunits_version": __version__,
    }
    if isinstance(inputs, UnitInput):
        save_unit_models(out, inputs.codebooks, inputs.bpe)
    save_probe(out, model, coder, meta, split)
    return ProbeResult(out, task, chosen.lr, chosen.seed, dev_summary, test_summary, chosen.layer_weights, runs,
                       missing, dict(loaded.errors), meta)


def slot_decision_on_dev(model: Any, samples: Mapping[str, Any], labels: Mapping[str, Any], ids: Sequence[str],
                         device: Any, batch_frames: int, frame_rate: float) -> tuple[Any, dict[str, dict[str, float]]]:
    """A ``diarize`` model's :class:`~speechunits.probe.diarize.SlotDecision` chosen on the dev
    utterances ``ids`` and every grid setting's dev metrics (:func:`~speechunits.probe.diarize.tune_decision`)."""
    from speechunits.probe.diarize import tune_decision

    logits = predict_logits(model, samples, ids, device=device, batch_frames=batch_frames)
    return tune_decision([labels[i] for i in logits], list(logits.values()), frame_rate)


def scoring_on_dev(model: Any, samples: Mapping[str, Any], speakers: Mapping[str, Any], train_ids: Sequence[str],
                   dev_ids: Sequence[str], device: Any, batch_frames: int) -> Any:
    """A ``verify`` model's :class:`~speechunits.probe.verification.VerificationScoring`: its training
    utterances' embeddings make the cohort, its dev utterances' choose the normalisation
    (:func:`~speechunits.probe.verification.choose_score_norm`)."""
    from speechunits.probe.verification import choose_score_norm

    train = predict_logits(model, samples, train_ids, device=device, batch_frames=batch_frames, embeddings=True)
    dev = predict_logits(model, samples, dev_ids, device=device, batch_frames=batch_frames, embeddings=True)
    return choose_score_norm({i: str(speakers[i]) for i in (*train_ids, *dev_ids)}, train, dev)


def speakers_shared(speakers: Mapping[str, Any], split: Any, parts: Sequence[str] = ("dev", "test")) -> list[str]:
    """The speakers of ``split``'s ``parts`` that are in its training part too (sorted)."""
    train = {str(speakers[i]) for i in split.train if i in speakers}
    return sorted(train & {str(speakers[i]) for part in parts for i in getattr(split, part) if i in speakers})


def check_verification_split(speakers: Mapping[str, Any], split: Any) -> None:
    """A ``verify`` probe's split: no dev or test speaker in training; dev with at least two speakers,
    one of them with two utterances (SpeechUnitsError naming what is wrong)."""
    for part in ("dev", "test"):
        seen = speakers_shared(speakers, split, (part,))
        if seen:
            raise SpeechUnitsError(f"task 'verify' scores speakers never seen in training, but {len(seen)} {part} "
                                   f"speakers are in the training part too ({', '.join(seen[:3])}); split by "
                                   "speaker (the default for 'verify') or give a split file that does")
    counts: dict[str, int] = {}
    for i in split.dev:
        counts[str(speakers[i])] = counts.get(str(speakers[i]), 0) + 1
    if len(counts) < 2 or max(counts.values()) < 2:
        raise SpeechUnitsError(f"task 'verify': the dev part has {len(counts)} speaker(s) and at most "
                               f"{max(counts.values(), default=0)} utterance(s) of one; scoring it needs two speakers "
                               "and two utterances of one of them (more speakers, or larger dev fractions)")


def _check_balance(task: str, balance: bool) -> None:
    if balance and objective_of(task) != UTTERANCE:
        raise SpeechUnitsError(f"--balance applies to tasks 'speaker' and 'classify', not {task!r}")


def _check_speaker_slots(task: str, speaker_slots: int | None) -> None:
    if speaker_slots is not None and objective_of(task) != PIT:
        raise SpeechUnitsError(f"--speakers-per-recording applies to task 'diarize', not {task!r}")


def balanced_class_weights(class_ids: Sequence[int], num_classes: int) -> list[float]:
    """``n / (C * n_c)`` for each class ``c`` of ``class_ids`` (``n`` utterances, ``C`` classes seen;
    classes never seen get 0): weights under which every class carries the same total loss.

    Raises:
        SpeechUnitsError: no class id.
    """
    counts = np.bincount(np.asarray(class_ids, dtype=np.int64), minlength=num_classes)
    seen = int((counts > 0).sum())
    if seen == 0:
        raise SpeechUnitsError("class weights: no training label")
    total = float(counts.sum())
    return [total / (seen * float(n)) if n else 0.0 for n in counts]


#: The column of a manifest or table that numbers cross-validation folds.
FOLD_COLUMN = "fold"


def _fold_split(corpus: Any, ids: list[str], fold: int, seed: int) -> Any:
    """Fold ``fold`` of an IEMOCAP release (its sessions) or of a corpus whose manifest or table has
    a ``fold`` column (ESC-50, UrbanSound8K and many clinical sets ship one)."""
    from speechunits.layouts.manifests import read_manifest_columns
    from speechunits.id_match import rekey
    from speechunits.layouts.hf_datasets import has_column, is_table_source, read_column
    from speechunits.layouts.iemocap import is_iemocap_tree, session_fold_split
    from speechunits.probe.splits import split_by_fold

    if isinstance(corpus, (str, Path)) and is_iemocap_tree(corpus):
        return session_fold_split(ids, fold, seed=seed)
    source = str(getattr(corpus, "source", corpus))
    if is_table_source(source) and has_column(source, (FOLD_COLUMN,)):
        folds = read_column(source, (FOLD_COLUMN,), "fold")
    elif Path(source).suffix.lower() in (".jsonl", ".json", ".csv"):
        folds = read_manifest_columns(source, [FOLD_COLUMN])
    else:
        raise SpeechUnitsError(f"--fold: {source} is neither an IEMOCAP release nor a manifest or table with a "
                               f"'{FOLD_COLUMN}' column")
    return split_by_fold(ids, rekey(folds, ids, source), fold, seed=seed)


def train_probe_on_corpus(task: str, corpus: str | Path, inputs: ProbeInput, out_dir: str | Path, *,
                          labels: str | Path | None = None, alignments: str | Path | None = None,
                          speakers: str | Path | None = None, split_by: str | None = None,
                          split_file: str | Path | None = None, split_seed: int = 0,
                          fractions: Sequence[float] = (0.8, 0.1, 0.1), classes: str | None = None,
                          fold: int | None = None,
                          **options: Any) -> ProbeResult | None:
    """Labels and split from ``corpus`` (its conventional files unless given), then :func:`train_probe`.

    ``classes`` (``classify``): a spec or preset of :mod:`speechunits.probe.classes` (keep, rename,
    merge or drop classes; ``superb-ks``, ``superb-er``); utterances whose class is dropped count as
    unlabelled. Recorded in the probe, which ``probe eval`` applies to the labels it scores against.
    ``fold``: cross-validation fold K (:func:`speechunits.probe.splits.split_by_fold`): for an IEMOCAP
    release its session K (SUPERB's emotion folds), else the utterances whose manifest or table
    ``fold`` column is K, are the test part; a random fifth of the others (``split_seed``) is dev.

    A ``speaker`` probe splits by utterance within each speaker (every speaker is in training);
    ``split_by="speaker"`` keeps dev and test speakers out of training (other tasks). A corpus
    directory that ships lists of its dev and test files (Speech Commands' ``validation_list.txt``,
    ``testing_list.txt``) is split by them unless ``split_file`` or ``split_by="speaker"`` says
    otherwise; ``split_file`` may also be such a directory. So is a corpus given as a dataset's train,
    dev/validation and test parts: a glob over Hugging Face tables or WebDataset shards of those
    splits, or a pattern over one input per split (``'data/{train,dev,test}'``, :mod:`speechunits.sources`).

    A ``verify`` probe is always split by speaker (at least two in dev and in test): by the corpus's own
    parts when no speaker is in two of them (LibriSpeech's), else by drawing speakers. Its ``split_file``
    may be a trial file (VoxCeleb's ``veri_test2.txt``, Kaldi's ``trials``): the utterances it names are
    the test part (:func:`~speechunits.probe.splits.split_from_trials`).
    """
    from speechunits.corpus import read_speakers
    from speechunits.id_match import rekey
    from speechunits.probe.labels import find_label_files
    from speechunits.layouts.hf_datasets import split_parts
    from speechunits.layouts.tar_shards import split_parts as shard_split_parts
    from speechunits.sources import split_parts as named_split_parts
    from speechunits.layouts.snips import superb_parts
    from speechunits.probe.splits import (SPLIT_LISTS, make_split, split_from_file, split_from_lists, split_from_parts,
                                          split_from_trials, split_lists_of)
    from speechunits.probe.verification import is_trial_file, match_trials, read_trials

    _check_balance(task, options.get("balance", False))  # before any label or input is read
    _check_speaker_slots(task, options.get("speaker_slots"))
    if split_by is None:
        split_by = "speaker" if task == "verify" else "utterance"
    class_map = None
    if classes is not None:
        if task != "classify":
            raise SpeechUnitsError(f"--classes applies to task 'classify', not {task!r}")
        from speechunits.probe.classes import ClassMap

        class_map = ClassMap.parse(classes)
    if task == "speaker" and split_by == "speaker":
        raise SpeechUnitsError("task 'speaker' needs every speaker in training: use --split-by utterance")
    if task == "verify" and split_by != "speaker":
        raise SpeechUnitsError("task 'verify' scores speakers never seen in training: it splits by speaker "
                               "(drop --split-by utterance)")
    if task == "verify" and fold is not None:
        raise SpeechUnitsError("--fold splits utterances by a fold column; task 'verify' splits by speaker")
    ids = [utt.id for utt in as_corpus(corpus)]
    if task in FRAME_LABEL_TASKS:
        loaded = inputs.load(ids)
        label_set = corpus_labels(task, corpus, list(loaded.samples), labels=labels, alignments=alignments,
                                  inputs=inputs, samples=loaded.samples, speaker_slots=options.get("speaker_slots"))
        label_set.missing = [i for i in ids if i not in label_set.labels]
    else:
        label_set = corpus_labels(task, corpus, ids, labels=labels, alignments=alignments, speakers=speakers)
    if class_map is not None:
        class_map.apply_to(label_set)
    # unasked, a corpus that ships its split is split by it (not a speaker probe's, nor one split by speaker,
    # except a verify probe's when the shipped parts keep their speakers apart, as LibriSpeech's do)
    own_split = split_file is None and (split_by == "utterance" or task == "verify") and task != "speaker" \
        and isinstance(corpus, (str, Path)) and fold is None
    shipped = split_lists_of(split_file) if split_file is not None else (split_lists_of(corpus) if own_split else None)
    dataset_parts = (split_parts(corpus) or shard_split_parts(corpus) or named_split_parts(corpus)
                     or superb_parts(corpus, list(label_set.labels))) if own_split and shipped is None else None
    labelled = list(label_set.labels)
    own, own_note = None, ""  # the corpus's own split, read once
    if fold is None and shipped is not None:  # the corpus's own dev/test lists (Speech Commands)
        own = split_from_lists(shipped, labelled)
        own_note = f"split: {shipped}'s {SPLIT_LISTS['dev']} (dev) and {SPLIT_LISTS['test']} (test), the rest training"
    elif fold is None and dataset_parts is not None:  # the dataset's own train, validation and test parts
        own = split_from_parts(dataset_parts, labelled, str(corpus))
        own_note = "split: the dataset's own train, validation (dev) and test parts"
    if own is not None and task == "verify" and split_file is None and speakers_shared(label_set.labels, own):
        log.info("split: the corpus's own parts share speakers; a verify probe splits by speaker instead")
        own = None
    if fold is not None:  # one fold (an IEMOCAP session, a manifest's fold column) is the test part
        if split_file is not None or split_by != "utterance":
            raise SpeechUnitsError("--fold draws the split itself: drop --split-file and --split-by")
        split = _fold_split(corpus, labelled, fold, split_seed)
    elif own is not None:
        split = own
        log.info(own_note)
    elif split_file is not None and task == "verify" and is_trial_file(split_file):
        trials, _ = match_trials(read_trials(split_file), list(label_set.labels))
        split = split_from_trials(sorted(set(trials.first) | set(trials.second)),
                                  {u: str(s) for u, s in label_set.labels.items()},
                                  dev_share=fractions[1] / (fractions[0] + fractions[1]), seed=split_seed,
                                  source=str(split_file))
        log.info("split: the %d utterances of %s's trials are the test part", len(split.test), split_file)
    elif split_file is not None:
        split = split_from_file(split_file)
    else:
        speaker_map = None
        if task in ("speaker", "verify"):  # the speakers are the labels (matched to the corpus's ids already)
            speaker_map = {utt: str(label) for utt, label in label_set.labels.items()}
        elif split_by == "speaker":
            source = speakers or find_label_files(corpus).get("speakers")
            if source is None:
                raise SpeechUnitsError(f"{corpus}: no speakers.tsv to split by speaker (give --speakers)")
            speaker_map = rekey(read_speakers(source), list(label_set.labels), str(source))
        split = make_split(list(label_set.labels), by=split_by, speakers=speaker_map, fractions=fractions,
                           seed=split_seed, least_speakers=2 if task == "verify" else 1)
    return train_probe(task, inputs, label_set, split, out_dir, classes=class_map and class_map.spec, **options)
