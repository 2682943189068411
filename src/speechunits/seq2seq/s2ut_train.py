"""Training a speech-to-unit translation model (or a text translator) on parallel pairs.

``train_s2ut(pairs, out_dir, ...)`` reads ``pairs.tsv`` (contract of ``speechunits synth parallel``)
and its two corpora, then:

* source (``source_input``): ``"features"`` (an encoder's layer, computed once and cached in
  float16, :class:`speechunits.probe.feature_inputs.EncoderInput`), ``"units"`` (a source codebook's
  deduplicated units) or ``"text"`` (the source text's characters: the cascade's translator);
* target (``target``): ``"units"`` (the target codebook's deduplicated units of the target
  utterance) or ``"text"`` (characters of the target text);
* optional auxiliary CTC of the target text's characters on the encoder (``ctc_weight`` > 0);
* training on the ``train`` rows with :class:`~speechunits.seq2seq.tasks.Seq2SeqTask` on the
  one loop; then ``dev`` and ``test`` are decoded (beam search) and scored: unit error rate,
  unit BLEU, diversity (units) or CER and BLEU (text). The maximum output length is
  ``max_len_a * source_length + max_len_b`` with ``max_len_a`` 1.5 x the largest
  target/source length ratio seen in training.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

SOURCE_INPUTS = ("features", "units", "text")
TARGETS = ("units", "text")


def _restrict(corpus: Any, ids: set[str]) -> Any:
    return corpus.filter(lambda u: u.id in ids)


def _unit_sequences(corpus: Any, ids: set[str], codebook: Any, *, device: str, dtype: str,
                    quiet: bool) -> dict[str, Any]:
    from speechunits.seq2seq.data import corpus_units

    units, errors = corpus_units(_restrict(corpus, ids), codebook, device=device, dtype=dtype, quiet=quiet)
    if errors:
        log.warning("%d utterances gave no units (first: %s)", len(errors), next(iter(errors.items())))
    return {utt: u.dedup() for utt, u in units.items()}


def text_symbols(text: str) -> list[str]:
    """Characters of normalised text, the space as ``|`` (the text side of a translator)."""
    from speechunits.probe.vocab import text_to_chars

    return text_to_chars(text)


def symbols_text(symbols: Sequence[str]) -> str:
    from speechunits.probe.vocab import chars_to_text

    return chars_to_text(symbols)


def prepare_sources(kind: str, pairs: Sequence[Any], corpus: Any, *, encoder: str | None, layer: int | None,
                    codebook: Any, device: str, dtype: str, quiet: bool,
                    symbols: Any = None) -> tuple[dict[str, Any], dict[str, float], dict[str, Any], Any]:
    """Sources of ``pairs`` by pair id: ``(sources, seconds, source record, source symbols)``."""
    from speechunits.seq2seq.data import codebook_record
    from speechunits.seq2seq.symbols import symbols_of, unit_symbols, units_to_ids

    wanted = {p.source for p in pairs}
    if kind == "features":
        from speechunits.probe.feature_inputs import EncoderInput

        if encoder is None or layer is None:
            raise SpeechUnitsError("--source-input features needs --encoder and --layer")
        inputs = EncoderInput(encoder, [layer], corpus=_restrict(corpus, wanted), device=device, dtype=dtype,
                              quiet=quiet)
        loaded = inputs.load(sorted(wanted))
        if loaded.errors:
            log.warning("%d source utterances gave no features (first: %s)", len(loaded.errors),
                        next(iter(loaded.errors.items())))
        sources = {p.id: loaded.samples[p.source].features[0] for p in pairs if p.source in loaded.samples}
        seconds = {i: s.shape[0] / inputs.frame_rate for i, s in sources.items()}
        return sources, seconds, {"kind": "features", **inputs.identity()}, None
    if kind == "units":
        if codebook is None:
            raise SpeechUnitsError("--source-input units needs --source-codebook")
        units = _unit_sequences(corpus, wanted, codebook, device=device, dtype=dtype, quiet=quiet)
        table = symbols or unit_symbols(codebook.k)
        sources = {p.id: np.asarray(units_to_ids(units[p.source].ids), dtype=np.int64) for p in pairs
                   if p.source in units}
        seconds = {p.id: units[p.source].duration_s for p in pairs if p.source in units}
        record = {"kind": "units", **codebook_record(codebook), "dedup": True, "symbols": table.to_json()}
        return sources, seconds, record, table
    if kind == "text":
        table = symbols or symbols_of((text_symbols(p.source_text) for p in pairs), "chars")
        sources = {p.id: np.asarray(table.encode(text_symbols(p.source_text), unknown="unk"), dtype=np.int64)
                   for p in pairs if text_symbols(p.source_text)}
        return sources, {i: 0.0 for i in sources}, {"kind": "text", "symbols": table.to_json()}, table
    raise SpeechUnitsError(f"--source-input must be one of {SOURCE_INPUTS}, got {kind!r}")


def prepare_targets(kind: str, pairs: Sequence[Any], corpus: Any, *, codebook: Any, device: str, dtype: str,
                    quiet: bool, symbols: Any = None) -> tuple[dict[str, list[int]], dict[str, Any], Any]:
    """Target symbol ids of ``pairs`` by pair id: ``(targets, target record, target symbols)``."""
    from speechunits.seq2seq.data import codebook_record
    from speechunits.seq2seq.symbols import symbols_of, unit_symbols, units_to_ids

    if kind == "units":
        if codebook is None:
            raise SpeechUnitsError("a unit target needs --target-codebook")
        units = _unit_sequences(corpus, {p.target for p in pairs}, codebook, device=device, dtype=dtype, quiet=quiet)
        table = symbols or unit_symbols(codebook.k)
        targets = {p.id: units_to_ids(units[p.target].ids) for p in pairs if p.target in units}
        record = {"kind": "units", **codebook_record(codebook), "dedup": True, "symbols": table.to_json()}
        return targets, record, table
    if kind == "text":
        table = symbols or symbols_of((text_symbols(p.target_text) for p in pairs), "chars")
        targets = {p.id: table.encode(text_symbols(p.target_text), unknown="unk") for p in pairs}
        return targets, {"kind": "text", "symbols": table.to_json()}, table
    raise SpeechUnitsError(f"--target must be one of {TARGETS}, got {kind!r}")


def score_outputs(kind: str, refs: Sequence[Sequence[int]], hyps: Sequence[Sequence[int]],
                  symbols: Any) -> dict[str, float]:
    """Scores of decoded target ids against reference ids: unit sequence scores, or text CER / BLEU."""
    from speechunits.measure.sequences import asr_bleu, diversity, sequence_scores
    from speechunits.seq2seq.symbols import ids_to_units

    if not refs:
        return {}
    if kind == "units":
        return sequence_scores([ids_to_units(r) for r in refs], [ids_to_units(h) for h in hyps])
    from speechunits.probe.metrics import cer

    ref_texts = [symbols_text(symbols.decode(r)) for r in refs]
    hyp_texts = [symbols_text(symbols.decode(h)) for h in hyps]
    kept = [(r, h) for r, h in zip(ref_texts, hyp_texts) if r.strip()]
    return {"cer": cer([r for r, _ in kept], [h for _, h in kept]), "bleu": asr_bleu(ref_texts, hyp_texts),
            "diversity": diversity(hyp_texts)}


def train_s2ut(pairs_path: str | Path, out_dir: str | Path, *, source_input: str = "features",
               encoder: str | None = None, layer: int | None = None, source_codebook: str | Path | None = None,
               target: str = "units", target_codebook: str | Path | None = None,
               source_corpus: str | Path | None = None, target_corpus: str | Path | None = None,
               ctc_weight: float = 0.0, model: Mapping[str, Any] | None = None, optim: Any = None,
               batch_frames: int = 20000, label_smoothing: float = 0.1, beam: int = 5, length_penalty: float = 1.0,
               evaluate: Sequence[str] = ("dev", "test"), resume: bool = False, device: str = "auto",
               dtype: str = "fp32", quiet: bool = False) -> dict[str, Any] | None:
    """Train into ``out_dir`` (see the module docstring); the summary (None on ranks other than 0)."""
    from speechunits.corpus import open_corpus_via_manifest
    from speechunits.seq2seq.data import find_pair_corpora, load_codebook, read_parallel_pairs
    from speechunits.seq2seq.model_dir import S2UT_FILE, load_s2ut, read_meta, write_model_dir
    from speechunits.seq2seq.s2ut_model import SOURCE_FEATURES, SOURCE_TOKENS, Seq2SeqConfig, Seq2SeqModel
    from speechunits.seq2seq.symbols import SymbolTable
    from speechunits.seq2seq.tasks import Seq2SeqItem, Seq2SeqTask
    from speechunits.training import OptimConfig, Trainer, init_distributed
    from speechunits.training.checkpoint import has_checkpoint

    out = Path(out_dir)
    if has_checkpoint(out) and not resume:
        raise SpeechUnitsError(f"{out}: holds a training checkpoint; pass --resume to continue it, or another -o")
    if resume and not has_checkpoint(out):
        raise SpeechUnitsError(f"{out}: no checkpoint to resume")
    if ctc_weight < 0:
        raise SpeechUnitsError(f"--ctc-weight must be >= 0, got {ctc_weight}")
    optim = optim or OptimConfig(steps=6000, lr=1e-3, warmup_steps=300, schedule="cosine")
    dist, dev = init_distributed(device)
    quiet_here = quiet or not dist.is_main
    pairs = read_parallel_pairs(pairs_path)
    src_dir, tgt_dir = find_pair_corpora(pairs_path, pairs, source=source_corpus, target=target_corpus,
                                         need_source=source_input != "text", need_target=target == "units")
    old = read_meta(out, S2UT_FILE, "S2UT model") if resume else None
    src_cb = load_codebook(source_codebook) if source_codebook is not None else None
    tgt_cb = load_codebook(target_codebook) if target_codebook is not None else None
    old_src = SymbolTable.from_json(old["source"]["symbols"], str(out)) if old and old["source"].get("symbols") else None
    old_tgt = SymbolTable.from_json(old["target"]["symbols"], str(out)) if old else None
    sources, seconds, source_record, source_symbols = prepare_sources(
        source_input, pairs, open_corpus_via_manifest(src_dir) if source_input != "text" else None, encoder=encoder,
        layer=layer, codebook=src_cb, device=str(dev), dtype=dtype, quiet=quiet_here, symbols=old_src)
    targets, target_record, target_symbols = prepare_targets(
        target, pairs, open_corpus_via_manifest(tgt_dir) if target == "units" else None, codebook=tgt_cb, device=str(dev),
        dtype=dtype, quiet=quiet_here, symbols=old_tgt)
    if old is not None:
        for side, got in (("source", source_record), ("target", target_record)):
            keys = ("kind", "sha256", "encoder_identity", "layers")
            if any(old[side].get(k) != got.get(k) for k in keys):
                raise SpeechUnitsError(f"{out} was trained on {side} {[old[side].get(k) for k in keys]}, "
                                       f"not {[got.get(k) for k in keys]}")
    ctc_symbols = None
    if ctc_weight > 0:
        from speechunits.seq2seq.symbols import symbols_of

        ctc_symbols = (SymbolTable.from_json(old["ctc"]["symbols"], str(out)) if old and old.get("ctc")
                       else symbols_of((text_symbols(p.target_text) for p in pairs), "chars"))

    def item(p: Any) -> Seq2SeqItem | None:
        if p.id not in sources or p.id not in targets or len(sources[p.id]) == 0:
            return None
        ctc = None
        if ctc_symbols is not None:  # CTC ids: the table's ids minus the specials, + 1 (blank 0)
            ctc = np.asarray(ctc_symbols.encode(text_symbols(p.target_text), unknown="unk"), dtype=np.int64) - 3
            ctc = ctc[ctc > 0]
        return Seq2SeqItem(sources[p.id], np.asarray(targets[p.id], dtype=np.int64), ctc, seconds.get(p.id, 0.0))

    parts: dict[str, list[tuple[Any, Seq2SeqItem]]] = {"train": [], "dev": [], "test": []}
    for p in pairs:
        made = item(p)
        if made is not None:
            parts[p.split].append((p, made))
    if not parts["train"]:
        raise SpeechUnitsError(f"{pairs_path}: no training pair has both a source and a target")
    ratio = max(len(i.target) / max(len(i.source), 1) for _, i in parts["train"])
    if old is not None:
        config = Seq2SeqConfig.from_dict(old["config"])
    else:
        first = parts["train"][0][1].source
        shape = {"source": SOURCE_FEATURES, "source_dim": int(first.shape[1])} if source_input == "features" \
            else {"source": SOURCE_TOKENS, "source_vocab": len(source_symbols)}
        config = Seq2SeqConfig(**{**shape, "target_vocab": len(target_symbols),
                                  "ctc_vocab": (len(ctc_symbols) - 3) if ctc_symbols is not None else 0,
                                  **dict(model or {})})
    meta = {"kind": "s2ut", "config": config.to_dict(), "source": source_record, "target": target_record,
            "codebook_meta": tgt_cb.meta if tgt_cb is not None else None,
            "source_codebook_meta": src_cb.meta if src_cb is not None else None,
            "ctc": {"symbols": ctc_symbols.to_json(), "weight": ctc_weight} if ctc_symbols is not None else None,
            "decoding": old["decoding"] if old else {"max_len_a": 1.5 * ratio, "max_len_b": 10, "beam": beam,
                                                     "length_penalty": length_penalty},
            "data": {"pairs": str(pairs_path), "source_corpus": src_dir and str(src_dir),
                     "target_corpus": tgt_dir and str(tgt_dir),
                     **{f"{k}_pairs": len(v) for k, v in parts.items()},
                     "train_source_seconds": float(sum(i.seconds for _, i in parts["train"]))},
            "training": {"batch_frames": batch_frames, "label_smoothing": label_smoothing}}
    net = Seq2SeqModel(config).to(dev)
    task = Seq2SeqTask([i for _, i in parts["train"]], batch_frames=batch_frames, seed=optim.seed,
                       label_smoothing=label_smoothing, ctc_weight=ctc_weight)
    trainer = Trainer(net, task, optim, out, device=dev, dist=dist,
                      state={"consumes": {"source": source_record.get("kind"), "target": target_record.get("kind"),
                                          "sha256": source_record.get("sha256") or source_record.get("encoder_identity"),
                                          "target_sha256": target_record.get("sha256")}},
                      export=lambda m, d: write_model_dir(d, m, meta, S2UT_FILE), desc="s2ut",
                      amount_unit="s audio", quiet=quiet)
    start = trainer.restore()["step"] if resume else 0
    started = time.perf_counter()
    result = trainer.run(start)
    if not dist.is_main:
        return None
    bundle = load_s2ut(out, device=dev)
    scores: dict[str, Any] = {}
    for part in evaluate:
        chosen = parts.get(part) or []
        if chosen:
            hyps = bundle.decode([i.source for _, i in chosen], device=dev)
            scores[part] = score_outputs(target, [i.target.tolist() for _, i in chosen], hyps, target_symbols)
    meta["scores"] = scores
    meta["result"] = {"steps_done": result.steps_done, "steps_max": result.steps_max,
                      "stop_reason": result.stop_reason, "train_minutes": (time.perf_counter() - started) / 60.0,
                      "final_loss": result.history[-1].loss if result.history else None}
    write_model_dir(out, bundle.model, meta, S2UT_FILE)
    return {"s2ut": str(out), **meta["data"], **meta["result"], "scores": scores}
