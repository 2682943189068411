"""Training defaults of probes, importable without torch (the CLI shows them in its help)."""

#: Padded input frames per training batch.
DEFAULT_BATCH_FRAMES = 20000
#: The head, and a BiLSTM head's depth, where a task names no other.
DEFAULT_HEAD = "linear"
DEFAULT_LSTM_LAYERS = 2
#: Tasks whose SUPERB downstream is not the defaults above, and what they train unless told otherwise:
#: enhance and separate are s3prl's ``enhancement_stft2``/``separation_stft2`` (a 3-layer BiLSTM on
#: batches of about 8 utterances of 3 s); a linear mask head on 200 s batches learns little.
TASK_HEAD_DEFAULTS = {task: {"head": "bilstm", "lstm_layers": 3, "batch_frames": 3000}
                      for task in ("enhance", "separate")}


def head_defaults(task: str, head: str | None, lstm_layers: int | None,
                  batch_frames: int | None) -> tuple[str, int, int]:
    """``(head, lstm_layers, batch_frames)`` of a ``task`` probe: the given values, else the task's
    (:data:`TASK_HEAD_DEFAULTS`), else the general defaults."""
    own = TASK_HEAD_DEFAULTS.get(task, {})
    return (head if head is not None else own.get("head", DEFAULT_HEAD),
            lstm_layers if lstm_layers is not None else own.get("lstm_layers", DEFAULT_LSTM_LAYERS),
            batch_frames if batch_frames is not None else own.get("batch_frames", DEFAULT_BATCH_FRAMES))
#: Under a time budget, the learning-rate warmup ends at the latest once this share of a run's budget is spent.
DEFAULT_WARMUP_FRACTION = 0.1

#: ``speechunits probe train phones`` options of the intelligibility judge of the vocoder, TTS and
#: translation benchmarks: a BiLSTM probe on MFCC that learns in minutes on one CPU core (measured
#: in docs/probe.md, "A judge that learns in minutes on a CPU"). Give --encoder, -o, the budget after them.
JUDGE_PHONES_ARGS = ("--head", "bilstm", "--hidden", "128", "--lstm-layers", "1", "--stack", "3", "--standardize",
                     "--batch-frames", "4000", "--lr", "1e-2", "--max-steps", "100000")

#: ``verify`` probes: the speaker embedding's size and AM-softmax's scale s and margin m (the
#: VoxCeleb recipes' usual 30 and 0.2).
DEFAULT_VERIFICATION = {"embedding_dim": 256, "scale": 30.0, "margin": 0.2}
