"""Held-out loss during LM training, and the best weights by it (fairseq's ``checkpoint_best``).

``speechunits lm train --dev STORE`` scores a second unit store (same codebook) every
``--eval-every`` steps: mean negative log-likelihood per predicted token, in nats. A causal LM is
scored on every position after ``<s>`` (what ``lm score`` sums); a masked LM on one fixed draw of
masked positions (BERT's 80/10/10 with the training ``mask_prob``, the same draw at every
evaluation, so the curve compares like with like). The weights with the lowest held-out loss are
kept in ``training/best.safetensors`` and become the LM directory's weights when training ends;
``--patience N`` stops after N evaluations without improvement. The training checkpoint stays
the latest step, so ``--resume`` continues from there and keeps the best so far
(``training/dev.json``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.lm.data import LMTask, cut, with_specials
from speechunits.lm.score import DEFAULT_BATCH_TOKENS
from speechunits.lm.vocab import LMVocab
from speechunits.training.checkpoint import load_safetensors, training_dir
from speechunits.training.loop import StepLog
from speechunits.training.task import move_to

BEST_FILE = "best.safetensors"
DEV_FILE = "dev.json"
#: The seed of the held-out batches (for a masked LM: its one draw of masked positions).
MASK_SEED = 1234


def dev_sequences(store_path: str | Path, vocab: LMVocab, max_tokens: int, codebook_sha256: str | None
                  ) -> list[np.ndarray]:
    """The held-out store's utterances as ``<s> ... </s>`` token sequences, cut as for training.

    Raises:
        SpeechUnitsError: units of another codebook, or no tokens at all.
    """
    from speechunits.units.store import UnitStore

    store = UnitStore.open(store_path)
    if store.meta.get("codebook_sha256") != codebook_sha256:
        raise SpeechUnitsError(f"--dev {store_path}: units of codebook {store.meta.get('codebook_sha256')}, but the "
                               f"training store holds codebook {codebook_sha256}")
    if store.streams > 1:
        raise SpeechUnitsError(f"--dev {store_path}: a {store.streams}-stream store; unit LMs read one stream")
    rows = list(store.iter_rows())
    encoded = vocab.encode_units_batch([vocab.unit_sequence(u.ids, u.durations) for _, u, _ in rows])
    sequences = [with_specials(piece) for tokens in encoded for piece in cut(tokens, max_tokens) if tokens.size]
    if not sequences:
        raise SpeechUnitsError(f"--dev {store_path}: no tokens to score (empty store or empty utterances)")
    return sequences


@torch.inference_mode()
def dev_loss(model: torch.nn.Module, sequences: Sequence[np.ndarray], *, objective: str, vocab_size: int,
             mask_prob: float, device: torch.device, batch_tokens: int = DEFAULT_BATCH_TOKENS) -> float:
    """Mean negative log-likelihood (nats) per predicted token of ``sequences`` (see the module docstring):
    the training objective (:class:`LMTask`) over one epoch of its batches, with a fixed seed."""
    task = LMTask(list(sequences), objective=objective, vocab_size=vocab_size, batch_tokens=batch_tokens,
                  seed=MASK_SEED, mask_prob=mask_prob)
    was_training = model.training
    model.eval()
    total = count = 0.0
    try:
        for index in range(len(task.sampler)):  # epoch 0: every sequence once
            out = task.loss(model, move_to(task.batch(index), device))
            total, count = total + float(out.loss), count + out.count
    finally:
        model.train(was_training)
    if count == 0:
        raise SpeechUnitsError("the held-out store gives no position to score")
    return total / count


class BestByDevLoss:
    """Scores the held-out sequences every ``eval_every`` steps (rank 0), keeps the best weights.

    ``on_step`` is a :meth:`speechunits.training.Trainer.run` callback: True asks the loop to stop
    (``patience`` evaluations without improvement; None: never). Call :meth:`finish` after the run.
    """

    def __init__(self, model: torch.nn.Module, sequences: list[np.ndarray], out_dir: Path, *, objective: str,
                 vocab_size: int, mask_prob: float, device: torch.device, eval_every: int,
                 patience: int | None, is_main: bool, store: str):
        self.model, self.sequences, self.out = model, sequences, out_dir
        self.objective, self.vocab_size, self.mask_prob, self.device = objective, vocab_size, mask_prob, device
        self.eval_every, self.patience, self.is_main = eval_every, patience, is_main
        self.store = store
        self.history: list[dict[str, float]] = []
        self.best_loss, self.best_step, self.bad = math.inf, 0, 0

    @property
    def _best_path(self) -> Path:
        return training_dir(self.out) / BEST_FILE

    def restore(self, step: int) -> None:
        """After a resume at ``step``: the evaluations up to it and their best (weights on disk)."""
        path = training_dir(self.out) / DEV_FILE
        if not path.is_file():
            return
        saved = read_json_object(path)
        self.history = [h for h in saved.get("history", []) if h["step"] <= step]
        for entry in self.history:
            self._note(entry["step"], entry["loss"], save=False)

    def _note(self, step: int, loss: float, save: bool) -> None:
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.bad = loss, step, 0
            if save:
                from safetensors.torch import save_model

                self._best_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._best_path.with_name(BEST_FILE + ".tmp")
                save_model(self.model, str(tmp))
                tmp.replace(self._best_path)
        else:
            self.bad += 1

    def evaluate(self, step: int) -> float:
        loss = dev_loss(self.model, self.sequences, objective=self.objective, vocab_size=self.vocab_size,
                        mask_prob=self.mask_prob, device=self.device)
        self.history.append({"step": step, "loss": loss})
        self._note(step, loss, save=True)
        (training_dir(self.out) / DEV_FILE).write_text(json.dumps(self.summary(), indent=1) + "\n", encoding="utf-8")
        return loss

    def on_step(self, entry: StepLog) -> bool:
        if not self.is_main or entry.step % self.eval_every:
            return False
        self.evaluate(entry.step)
        return self.patience is not None and self.bad >= self.patience

    def finish(self, steps_done: int) -> dict[str, Any]:
        """Rank 0, after the run: scores the last step if it was not, loads the best weights into the
        model; the summary for ``lm.json``."""
        if not self.history or self.history[-1]["step"] != steps_done:
            self.evaluate(steps_done)
        if self.best_step != steps_done:
            load_safetensors(self._best_path, self.model, "the best weights by held-out loss")
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {"store": self.store, "sequences": len(self.sequences), "eval_every": self.eval_every,
                "patience": self.patience, "best_step": self.best_step, "best_loss": self.best_loss,
                "history": self.history}
