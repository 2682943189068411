"""The sequence models: overfitting a handful of examples exactly, beam search, targets, checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment


def _train(model, task, steps, lr=1e-2):
    from speechunits.training import OptimConfig, Trainer

    torch.set_num_threads(1)  # tiny models: threads only contend (conftest restores the count)
    cfg = OptimConfig(steps=steps, lr=lr, warmup_steps=10, schedule="constant", bf16=False, weight_decay=0.0,
                      log_every=1000, checkpoint_every=10_000)
    Trainer(model, task, cfg, None, device=torch.device("cpu"), quiet=True).run()
    return model.eval()


# -- targets ---------------------------------------------------------------------------------------

def test_length_regulator_repeats_each_token_its_duration():
    from speechunits.seq2seq.tts_model import length_regulate

    h = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)  # tokens 0,1,2 and 3,4,5
    frames, lengths = length_regulate(h, torch.tensor([[2, 0, 1], [1, 3, 0]]))
    assert lengths.tolist() == [3, 4]
    assert frames[..., 0].tolist() == [[0, 0, 2, 0], [3, 4, 4, 4]]  # padding frame is 0


def test_token_durations_count_frame_centres_in_each_segment():
    from speechunits.seq2seq.data import token_durations

    # 100 Hz frames centred at 0.0125 + i/100 (MFCC): centres 0.0125, 0.0225, ..., 0.0925
    segments = [Segment(0.0, 0.03, "sil"), Segment(0.03, 0.031, "t"), Segment(0.031, 0.08, "a"),
                Segment(0.08, 0.09, "sil")]
    durations = token_durations(segments, 10, 100.0, 0.0125)
    # centres 0.0125 0.0225 | (none) | 0.0325 .. 0.0725 (5) | 0.0825 ; 0.0925 is past the end -> last segment
    assert durations.tolist() == [2, 0, 5, 3]
    assert durations.sum() == 10


def test_char_segments_share_word_time_and_give_silence_to_boundaries():
    from speechunits.seq2seq.data import char_segments
    from speechunits.seq2seq.text import text_chars

    words = [Segment(0.1, 0.3, "Hi"), Segment(0.4, 0.7, "you all")]
    segments = char_segments("Hi, you all!", words, 1.0)
    assert [s.label for s in segments] == text_chars("Hi, you all!") == list("|hi|you|all|")
    assert segments[0] == Segment(0.0, 0.1, "|") and segments[-1] == Segment(0.7, 1.0, "|")
    assert segments[1].start == pytest.approx(0.1) and segments[2].end == pytest.approx(0.3)
    with pytest.raises(SpeechUnitsError, match="do not spell"):
        char_segments("Hi there", words, 1.0)


def test_symbol_table_round_trip_and_unknown_symbols():
    from speechunits.seq2seq.symbols import SymbolTable, ids_to_units, unit_symbols, units_to_ids

    table = SymbolTable(("a", "b"), "phones")
    assert table.decode(table.encode(["b", "a"])) == ["b", "a"]
    with pytest.raises(SpeechUnitsError, match="'z'"):
        table.encode(["a", "z"])
    assert table.encode(["z"], unknown="unk") == [3]
    assert ids_to_units(units_to_ids([0, 7])) == [0, 7] and len(unit_symbols(8)) == 12
    assert SymbolTable.from_json(table.to_json(), "x") == table


# -- TTS -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ar_hidden", [0, 48])
def test_tts_model_overfits_three_utterances_exactly(ar_hidden):
    """Units and durations of 3 toy utterances come back exactly from the symbols and speaker alone (with the
    parallel head, and with the autoregressive head generating frame by frame)."""
    from speechunits.seq2seq.tasks import TTSItem, TTSTask
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    items = []
    for n, speaker in ((5, 0), (7, 1), (6, 0)):
        tokens = rng.integers(4, 10, size=n)
        durations = rng.integers(1, 4, size=n)
        units = np.repeat(rng.integers(0, 8, size=n), durations)  # one unit per token
        items.append(TTSItem(tokens, durations, units, speaker))
    model = TTSModel(TTSConfig(vocab_size=10, num_units=8, num_speakers=2, dim=32, heads=2, ffn=64,
                               encoder_layers=1, decoder_layers=1, duration_hidden=32, dropout=0.0,
                               ar_hidden=ar_hidden, ar_unit_dim=16))
    _train(model, TTSTask(items, frame_rate=50.0, batch_frames=100), steps=150 if not ar_hidden else 250)
    for item in items:
        ids, lengths, durations = model.infer(torch.as_tensor(item.tokens)[None], torch.tensor([len(item.tokens)]),
                                              torch.tensor([item.speaker]))
        assert durations[0].tolist() == item.durations.tolist()
        assert ids[0, : int(lengths[0])].tolist() == item.units.tolist()
    stretched = items[0].durations * 2  # given durations replace the predicted ones
    ids, lengths, durations = model.infer(torch.as_tensor(items[0].tokens)[None], torch.tensor([len(items[0].tokens)]),
                                          torch.tensor([items[0].speaker]), durations=torch.as_tensor(stretched)[None])
    assert durations[0].tolist() == stretched.tolist() and int(lengths[0]) == int(stretched.sum())



def test_tts_sampling_draws_each_frame_from_its_tempered_softmax():
    """At temperature T each frame's unit is a draw from softmax(logits / T) of that frame (frequencies over
    4000 copies of one utterance against the softmax computed here); T = 0 is the argmax; the generator's
    seed repeats the draws."""
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel

    torch.manual_seed(0)
    model = TTSModel(TTSConfig(vocab_size=10, num_units=4, dim=16, heads=2, ffn=32, encoder_layers=1,
                               decoder_layers=1, duration_hidden=16, dropout=0.0)).eval()
    copies = 4000
    tokens = torch.tensor([[4, 5, 6]]).repeat(copies, 1)
    lengths = torch.full((copies,), 3)
    argmax, frame_lengths, durations = model.infer(tokens[:1], lengths[:1])
    with torch.no_grad():
        h, _, _ = model.encode(tokens[:1], lengths[:1])
        logits, _ = model.decode(h, durations)
    temperature = 2.0
    expected = torch.softmax(logits[0] / temperature, -1)  # [T, K]
    drawn, _, _ = model.infer(tokens, lengths, temperature=temperature,
                              generator=torch.Generator().manual_seed(1))
    frames = int(frame_lengths[0])
    assert frames >= 1
    counts = torch.stack([torch.bincount(drawn[:, t], minlength=4) for t in range(frames)]).float() / copies
    assert torch.allclose(counts, expected[:frames], atol=0.04)
    assert argmax[0].tolist() == logits[0].argmax(-1).tolist()
    again, _, _ = model.infer(tokens, lengths, temperature=temperature, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, drawn)
    with pytest.raises(SpeechUnitsError, match="temperature"):
        model.infer(tokens[:1], lengths[:1], temperature=-1.0)


def test_tts_autoregressive_head_generates_what_teacher_forcing_scores():
    """Frame-by-frame generation and the teacher-forced pass are the same network: fed back the generated
    units, the teacher-forced logits' argmax is those units (no future frame leaks in), also when padded."""
    from speechunits.seq2seq.tts_model import FrameUnitAR

    torch.manual_seed(0)
    head = FrameUnitAR(dim=8, num_units=5, hidden=16, unit_dim=4, unit_dropout=0.5).eval()
    states = torch.randn(2, 7, 8)
    generated = head.generate(states)
    assert generated.shape == (2, 7)
    assert torch.equal(head(states, generated).argmax(-1), generated)
    padded = torch.cat([generated, torch.full((2, 3), -100)], dim=1)  # units longer than the states: cut
    assert torch.equal(head(states, padded).argmax(-1), generated)
    short = head(torch.cat([states, torch.zeros(2, 2, 8)], dim=1), generated)  # states padded at the end
    assert torch.equal(short[:, :7].argmax(-1), generated)
    inputs = torch.cat([states, head.embed(torch.cat([torch.full((2, 1), 5), generated[:, :-1]], 1))], -1)
    expected, _ = head.rnn(inputs)  # torch's GRU over the same inputs: the hand-written steps must agree
    w_ih, hidden = head.rnn.weight_ih_l0, torch.zeros(2, 16)
    for t in range(7):
        hidden = head._step(torch.nn.functional.linear(inputs[:, t], w_ih, head.rnn.bias_ih_l0), hidden,
                            head.rnn.weight_hh_l0)
        assert torch.allclose(hidden, expected[:, t], atol=1e-6)
    drawn = head.generate(states, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, head.generate(states, temperature=1.0, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(SpeechUnitsError, match="ar_hidden"):
        from speechunits.seq2seq.tts_model import TTSConfig

        TTSConfig(vocab_size=4, num_units=4, ar_hidden=-1)

# -- S2UT ------------------------------------------------------------------------------------------

def _toy_pairs(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((t, 8)).astype(np.float32), rng.integers(4, 12, size=u))
            for t, u in ((20, 4), (28, 6), (24, 3), (32, 5))]


def _seq2seq(dim=32, source="features", **kw):
    from speechunits.seq2seq.s2ut_model import Seq2SeqConfig, Seq2SeqModel

    torch.manual_seed(0)
    shape = {"source_dim": 8} if source == "features" else {"source_vocab": 12}
    return Seq2SeqModel(Seq2SeqConfig(source=source, target_vocab=12, dim=dim, heads=2, ffn=64, encoder_layers=1,
                                      decoder_layers=1, dropout=0.0, **shape, **kw))


def test_s2ut_model_overfits_four_pairs_exactly():
    from speechunits.seq2seq.beam import beam_search, greedy_decode
    from speechunits.seq2seq.tasks import Seq2SeqItem, Seq2SeqTask, collate_sources

    pairs = _toy_pairs()
    model = _seq2seq(ctc_vocab=5)
    items = [Seq2SeqItem(x, y, np.array([1, 2, 3, 4][: len(y) % 4 + 1])) for x, y in pairs]
    _train(model, Seq2SeqTask(items, batch_frames=200, label_smoothing=0.0, ctc_weight=0.1), steps=150)
    x, lengths = collate_sources([x for x, _ in pairs])
    assert greedy_decode(model, x, lengths, 20) == [y.tolist() for _, y in pairs]
    for source, target in pairs:
        best = beam_search(model, torch.from_numpy(source)[None], len(source), beam=4, max_len=20)
        assert best.ids == target.tolist()


def test_cached_decoding_steps_equal_the_full_decoder():
    from speechunits.seq2seq.symbols import BOS

    model = _seq2seq().eval()
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 18, 8)).astype(np.float32))
    lengths = torch.tensor([18, 11])
    prev = torch.from_numpy(np.concatenate([[[BOS], [BOS]], rng.integers(4, 12, size=(2, 6))], axis=1))
    with torch.no_grad():
        memory, memory_lengths = model.encode(x, lengths)
        full = model.decode(prev, memory, memory_lengths)
        state = model.start_decoding(memory, memory_lengths)
        steps = torch.stack([model.decode_step(prev[:, i], state) for i in range(prev.shape[1])], dim=1)
        reordered = model.start_decoding(memory, memory_lengths).select(torch.tensor([1, 1, 0]))
        first = model.decode_step(prev[[1, 1, 0], 0], reordered)
    assert torch.allclose(steps, full, atol=1e-5)
    assert torch.allclose(first, full[[1, 1, 0], 0], atol=1e-5)


@pytest.mark.parametrize("source", ["features", "tokens"])
def test_beam_one_equals_greedy(source):
    from speechunits.seq2seq.beam import beam_search, greedy_decode

    model = _seq2seq(source=source).eval()
    rng = np.random.default_rng(1)
    for t in (5, 13, 30):
        x = torch.from_numpy(rng.standard_normal((1, t, 8)).astype(np.float32)) if source == "features" \
            else torch.from_numpy(rng.integers(4, 12, size=(1, t)))
        for limit in (1, 7, 25):
            greedy = greedy_decode(model, x, torch.tensor([t]), limit)[0]
            assert beam_search(model, x, t, beam=1, max_len=limit).ids == greedy
            assert len(greedy) <= limit


def test_beam_search_scores_are_length_normalised_log_probabilities():
    from speechunits.seq2seq.beam import beam_search
    from speechunits.seq2seq.symbols import BOS, EOS

    model = _seq2seq().eval()
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 16, 8)).astype(np.float32))
    best = beam_search(model, x, 16, beam=3, max_len=6, length_penalty=1.0)
    with torch.no_grad():  # rescore the hypothesis with a teacher-forced pass
        prev = torch.tensor([[BOS, *best.ids]])
        logits, _, _ = model(x, torch.tensor([16]), prev)
        logp = torch.log_softmax(logits[0].float(), -1)  # banned symbols are masked, not renormalised away
        total = sum(float(logp[i, t]) for i, t in enumerate([*best.ids, EOS]))
    if len(best.ids) < 6:
        assert best.logprob == pytest.approx(total, abs=1e-4)
    assert best.score == pytest.approx(best.logprob / (len(best.ids) + 1), abs=1e-6)


# -- codebook checks and bad inputs ----------------------------------------------------------------

class FakeVocoder:
    """The vocoder interface of contract A, speaking silence: enough to test the checks around it."""

    def __init__(self, sha256: str, dedup: bool = True, speakers=("a",)):
        self.meta = {"codebook_sha256": [sha256], "dedup": dedup, "sample_rate": 16000}
        self.speakers = list(speakers)
        self.calls = []

    def check_codebook(self, sha256s, *, source):
        shas = [sha256s] if isinstance(sha256s, str) else list(sha256s)
        if shas != self.meta["codebook_sha256"]:
            raise SpeechUnitsError(f"vocoder refuses {source}")

    def synthesize(self, units, *, speaker=None, reference=None, f0=None):
        from speechunits.audio import Audio

        if speaker is not None and speaker not in self.speakers:
            raise SpeechUnitsError(f"unknown speaker {speaker}")
        self.calls.append(units)
        return Audio(np.zeros(160 * max(units.num_frames, 1), dtype=np.float32), 16000)


def test_a_vocoder_of_another_codebook_is_refused_naming_both():
    from speechunits.seq2seq.model_dir import check_codebook, check_vocoder

    ours, theirs = "a" * 64, "b" * 64
    check_vocoder(FakeVocoder(ours), {"sha256": ours}, model="TTS", vocoder_path="VOC")
    with pytest.raises(SpeechUnitsError) as info:
        check_vocoder(FakeVocoder(theirs), {"sha256": ours}, model="TTS", vocoder_path="VOC")
    assert "aaaaaaaaaaaa" in str(info.value) and "bbbbbbbbbbbb" in str(info.value) and "VOC" in str(info.value)
    with pytest.raises(SpeechUnitsError, match="aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        check_codebook({"sha256": ours}, theirs, model="S2UT", role="reads", source="CB")


def test_units_for_a_frame_level_vocoder_are_expanded_or_refused():
    from speechunits.seq2seq.infer import vocoder_units
    from speechunits.units.units import Units

    tts_units = Units(np.array([3, 1]), 50.0, 8, np.array([2, 1]))
    assert vocoder_units(tts_units, FakeVocoder("a", dedup=False), model="m").ids.tolist() == [3, 3, 1]
    assert vocoder_units(tts_units, FakeVocoder("a", dedup=True), model="m") is tts_units
    with pytest.raises(SpeechUnitsError, match="without durations"):
        vocoder_units(Units(np.array([3, 1]), 50.0, 8), FakeVocoder("a", dedup=False), model="m")


def test_pairs_file_errors(tmp_path):
    from speechunits.seq2seq.data import read_parallel_pairs

    path = tmp_path / "pairs.tsv"
    path.write_text("id\tsource\ttarget\tsplit\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="header lacks"):
        read_parallel_pairs(path)
    path.write_text("split\tid\tsource\ttarget\tsource_text\ttarget_text\nholdout\tp\ta\tb\tx\ty\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="split 'holdout'"):
        read_parallel_pairs(path)
    path.write_text("split\tid\tsource\ttarget\tsource_text\ttarget_text\ntest\tp\ta\tb\tx\ty\n", encoding="utf-8")
    pair = read_parallel_pairs(path)[0]  # columns by name, not position
    assert (pair.id, pair.source, pair.target, pair.split) == ("p", "a", "b", "test")
    path.write_text("id\tsource\ttarget\tsource_text\ttarget_text\tsplit\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="no pairs"):
        read_parallel_pairs(path)
