"""Training defaults of probes, importable without torch (the CLI shows them in its help)."""

#: Padded input frames per training batch.
DEFAULT_BATCH_FRAMES = 20000
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
