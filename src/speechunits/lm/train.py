"""``train_lm``: a unit store -> a unit LM directory (library entry point of ``speechunits lm train``)."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.lm.config import LMConfig, build_model
from speechunits.lm.data import LMTask, cut, with_specials
from speechunits.lm.model_dir import BPE_DIR, CODEBOOK_DIR, LM_FORMAT_VERSION, read_meta, write_meta
from speechunits.lm.vocab import LMVocab
from speechunits.training.checkpoint import has_checkpoint
from speechunits.training.distributed import init_distributed
from speechunits.training.loop import Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass
class LMTrainResult:
    model_dir: Path
    training: TrainResult
    meta: dict[str, Any]


def consumes_of(store: Any, tokenisation: str) -> dict[str, Any]:
    """What an LM trained on ``store`` reads (recorded in lm.json, checked on every input)."""
    codebook = dict(store.meta.get("codebook") or {})
    return {"kind": "units", "codebook_sha256": store.meta.get("codebook_sha256"), "k": store.vocab_size,
            "frame_rate": store.frame_rate, "frame_offset_s": float(store.meta.get("frame_offset_s") or 0.0),
            "encoder": codebook.get("encoder"), "encoder_identity": codebook.get("encoder_identity"),
            "layer": codebook.get("layer"), "tokenisation": tokenisation, "codebook": codebook}


def open_training_store(store_path: str | Path) -> Any:
    """The :class:`UnitStore` an LM trains on; a multi-stream store is refused (unit LMs read one stream)."""
    from speechunits.units.store import UnitStore

    store = UnitStore.open(store_path)
    if store.streams > 1:
        raise SpeechUnitsError(f"{store_path}: a {store.streams}-stream store; unit LMs read one stream")
    return store


def unit_bpe_for(tokens: str, bpe_dir: str | Path | None, store: Any) -> Any:
    """The unit BPE that ``--tokens bpe:DIR`` names, checked against ``store`` (None for other tokens)."""
    if tokens != "bpe":
        return None
    from speechunits.units.bpe import UnitBPE, _check_source

    if bpe_dir is None:
        raise SpeechUnitsError("--tokens bpe needs the BPE directory: --tokens bpe:DIR")
    bpe = UnitBPE.load(bpe_dir)
    _check_source(bpe, store)
    return bpe


def training_rows(store: Any, store_path: str | Path) -> list[Any]:
    """Every ``(id, Units, seconds)`` row of ``store``; an empty store is an error."""
    rows = list(store.iter_rows())
    if not rows:
        raise SpeechUnitsError(f"{store_path}: the unit store is empty; nothing to train on")
    return rows


def _export(vocab: LMVocab):
    def export(model: torch.nn.Module, out_dir: Path) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        model.save_pretrained(str(out_dir), safe_serialization=True)
        vocab.save_tokenizer(out_dir)

    return export


def _copy_codebook(codebook_dir: str | Path, sha256: str | None, out: Path) -> None:
    from speechunits.quantize import Codebook

    codebook = Codebook.load(codebook_dir)
    if codebook.sha256 != sha256:
        raise SpeechUnitsError(f"--codebook {codebook_dir}: codebook {codebook.sha256}, but the store holds units of "
                               f"codebook {sha256}")
    target = out / CODEBOOK_DIR
    if target.exists():
        shutil.rmtree(target)
    codebook.save(target)


def train_lm(store_path: str | Path, out_dir: str | Path, cfg: LMConfig, *, tokens: str = "units",
             bpe_dir: str | Path | None = None, codebook_dir: str | Path | None = None,
             interleave: str | Path | None = None, interleave_prob: float = 0.3, resume: bool = False,
             dev_store: str | Path | None = None, eval_every: int = 250, patience: int | None = None,
             device: str = "auto", quiet: bool = False) -> LMTrainResult:
    """Train (or resume) a causal or masked unit LM on ``store_path`` into ``out_dir``.

    Args:
        tokens: "units", "dedup" or "bpe" (then ``bpe_dir`` is the unit BPE, copied into the LM).
        codebook_dir: the store's codebook, copied into ``LM/codebook`` so that the LM can read audio.
        interleave: word alignments (``words.tsv``, TextGrids) for interleaved unit-text training;
            each word is shown as text with probability ``interleave_prob``.
        resume: continue ``out_dir``'s checkpoint (its config, except ``steps`` / ``max_minutes``).
        dev_store: a held-out unit store of the same codebook, scored every ``eval_every`` steps; the
            LM directory then holds the weights with the lowest held-out loss, and ``patience``
            evaluations without improvement stop the run (:mod:`speechunits.lm.validation`).
    """
    out = Path(out_dir)
    if eval_every < 1 or (patience is not None and patience < 1):
        raise SpeechUnitsError("--eval-every and --patience must be >= 1")
    store = open_training_store(store_path)
    if resume:
        saved = read_meta(out)
        if saved["consumes"].get("codebook_sha256") != store.meta.get("codebook_sha256"):
            raise SpeechUnitsError(f"{store_path}: units of codebook {store.meta.get('codebook_sha256')}, but the "
                                   f"checkpoint in {out} trained on codebook "
                                   f"{saved['consumes'].get('codebook_sha256')}")
        steps, minutes = cfg.steps, cfg.max_minutes
        cfg = LMConfig.from_dict(saved["config"])
        cfg.steps, cfg.max_minutes = steps, minutes
        tokens = saved["vocab"]["tokenisation"]
        bpe_dir = out / BPE_DIR if tokens == "bpe" else None
        if dev_store is None and saved.get("dev"):  # keep scoring the held-out store the run started with
            dev_store, eval_every, patience = (saved["dev"]["store"], saved["dev"]["eval_every"],
                                               saved["dev"]["patience"])
    elif has_checkpoint(out):
        raise SpeechUnitsError(f"{out}: already holds a checkpoint; pass --resume to continue it or pick another -o")
    bpe = unit_bpe_for(tokens, bpe_dir, store)
    rows = training_rows(store, store_path)
    alignments = None
    words: list[str] = []
    if interleave is not None:
        from speechunits.lm.interleave import check_coverage, read_words, word_vocabulary

        from speechunits.id_match import named_by

        alignments = named_by(read_words(interleave), (r[0] for r in rows), str(interleave))  # flac/u1 = u1
        check_coverage([r[0] for r in rows], alignments, str(interleave))
        words = word_vocabulary(alignments)
    vocab = LMVocab(tokens, store.vocab_size, bpe, words)

    sequences: list[np.ndarray] = []
    interleaved: list[Any] = []
    unit_runs = frames = token_count = 0
    encoded = vocab.encode_units_batch([vocab.unit_sequence(u.ids, u.durations) for _, u, _ in rows])
    for (utt_id, units, _), toks in zip(rows, encoded):
        frames += units.num_frames
        unit_runs += units.dedup().ids.size
        token_count += toks.size
        pieces = cut(toks, cfg.max_tokens)
        if alignments is not None and len(pieces) == 1 and utt_id in alignments:
            from speechunits.lm.interleave import split_units

            interleaved.append(split_units(units, alignments[utt_id], float(store.meta.get("frame_offset_s") or 0.0),
                                           vocab))
        else:
            interleaved.extend([None] * len(pieces))
        sequences.extend(with_specials(p) for p in pieces)
    if token_count == 0:
        raise SpeechUnitsError(f"{store_path}: every utterance of the unit store is empty; nothing to train on")
    longest = max(len(s) for s in sequences)
    n_interleaved = sum(1 for x in interleaved if x is not None)
    log.info("%s: %d utterances, %d tokens (%s), %d sequences, longest %d%s", store_path, len(rows), token_count,
             tokens, len(sequences), longest,
             f", {n_interleaved} with word alignments" if alignments is not None else "")

    held_out: list[np.ndarray] = []
    if dev_store is not None:  # checked before anything is written
        from speechunits.lm.validation import dev_sequences

        held_out = dev_sequences(dev_store, vocab, cfg.max_tokens, store.meta.get("codebook_sha256"))

    dist, dev = init_distributed(device)
    meta = {
        "format_version": LM_FORMAT_VERSION,
        "objective": cfg.objective,
        "config": cfg.to_dict(),
        "vocab": vocab.to_dict(),
        "consumes": consumes_of(store, tokens),
        "data": {"source": str(store_path), "utterances": len(rows), "tokens": token_count, "frames": frames},
        "frames_per_unit": frames / max(unit_runs, 1),
        "frames_per_token": frames / max(token_count, 1),
        "interleave": None if interleave is None else {"words": str(interleave), "prob": interleave_prob,
                                                       "utterances": n_interleaved},
    }
    if dev_store is not None:  # completed by BestByDevLoss.finish when the run ends
        meta["dev"] = {"store": str(dev_store), "eval_every": eval_every, "patience": patience}
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if bpe is not None and not resume:
            bpe.save(out / BPE_DIR)
        if codebook_dir is not None:
            _copy_codebook(codebook_dir, store.meta.get("codebook_sha256"), out)
        write_meta(out, meta)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, vocab.size).to(dev)
    task = LMTask(sequences, objective=cfg.objective, vocab_size=vocab.size, batch_tokens=cfg.batch_tokens,
                  seed=cfg.seed, mask_prob=cfg.mask_prob,
                  interleaved=interleaved if alignments is not None else None, interleave_prob=interleave_prob,
                  crop_prob=cfg.crop_prob)
    state = {"lm": cfg.to_dict(), "consumes": meta["consumes"], "vocab": vocab.to_dict()}
    trainer = Trainer(model, task, cfg.optim(), out, device=dev, dist=dist, state=state, export=_export(vocab),
                      desc=f"lm {cfg.objective}", amount_unit="tok", quiet=quiet)
    keeper = None
    if dev_store is not None:
        from speechunits.lm.validation import BestByDevLoss

        keeper = BestByDevLoss(model, held_out, out, objective=cfg.objective, vocab_size=vocab.size,
                               mask_prob=cfg.mask_prob, device=dev, eval_every=eval_every, patience=patience,
                               is_main=dist.is_main, store=str(dev_store))
    start = int(trainer.restore()["step"]) if resume else 0
    if keeper is not None:
        keeper.restore(start)
    result = trainer.run(start, on_step=None if keeper is None else keeper.on_step)
    if keeper is not None and dist.is_main:
        meta["dev"] = keeper.finish(result.steps_done)
        if keeper.best_step != result.steps_done:  # the last checkpoint exported the last step's weights
            _export(vocab)(model, out)
        write_meta(out, meta)
        log.info("%s: best held-out loss %.4f nats/token at step %d of %d", out, keeper.best_loss, keeper.best_step,
                 result.steps_done)
    return LMTrainResult(out, result, meta)
