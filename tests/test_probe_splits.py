"""Probe splits: by speaker (disjoint speakers), by utterance (stratified), determinism, files."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.probe.splits import Split, make_split, split_from_file

SPEAKERS = {f"s{s}_{u:02d}": f"s{s}" for s in range(10) for u in range(6)}
IDS = list(SPEAKERS)


def test_split_by_speaker_keeps_speakers_apart() -> None:
    split = make_split(IDS, by="speaker", speakers=SPEAKERS, seed=3)
    speakers_of = {name: {SPEAKERS[u] for u in split.part(name)} for name in ("train", "dev", "test")}
    assert speakers_of["train"].isdisjoint(speakers_of["dev"])
    assert speakers_of["train"].isdisjoint(speakers_of["test"])
    assert speakers_of["dev"].isdisjoint(speakers_of["test"])
    # fractions count speakers: 10 speakers at 0.8/0.1/0.1 -> 8/1/1, with all their utterances
    assert [len(speakers_of[n]) for n in ("train", "dev", "test")] == [8, 1, 1]
    assert split.sizes() == {"train": 48, "dev": 6, "test": 6}
    assert sorted(split.train + split.dev + split.test) == sorted(IDS)
    # each part keeps the given order
    assert split.train == [u for u in IDS if u in set(split.train)]


def test_split_is_deterministic_and_order_independent() -> None:
    first = make_split(IDS, by="speaker", speakers=SPEAKERS, seed=1)
    again = make_split(IDS, by="speaker", speakers=SPEAKERS, seed=1)
    reversed_input = make_split(IDS[::-1], by="speaker", speakers=SPEAKERS, seed=1)
    assert first == again
    assert set(first.test) == set(reversed_input.test) and set(first.dev) == set(reversed_input.dev)
    seeds = {tuple(sorted(make_split(IDS, by="speaker", speakers=SPEAKERS, seed=s).test)) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_split_by_utterance_without_and_with_speakers() -> None:
    plain = make_split(IDS, fractions=(0.5, 0.25, 0.25), seed=0)
    assert plain.sizes() == {"train": 30, "dev": 15, "test": 15}
    stratified = make_split(IDS, speakers=SPEAKERS, seed=0)
    # every speaker: 6 utterances -> dev round(0.6)=1, test 1, train 4
    for speaker in {SPEAKERS[u] for u in IDS}:
        counts = [sum(SPEAKERS[u] == speaker for u in stratified.part(n)) for n in ("train", "dev", "test")]
        assert counts == [4, 1, 1]
    assert stratified.info["stratified"] is True


def test_split_errors() -> None:
    two = {"a": "s1", "b": "s2"}
    with pytest.raises(SpeechUnitsError, match="2 speakers cannot fill train, dev and test"):
        make_split(list(two), by="speaker", speakers=two)
    with pytest.raises(SpeechUnitsError, match="needs the speakers"):
        make_split(IDS, by="speaker")
    with pytest.raises(SpeechUnitsError, match="1 utterances have no speaker"):
        make_split([*IDS, "stranger"], by="speaker", speakers=SPEAKERS)
    with pytest.raises(SpeechUnitsError, match="sum to 1"):
        make_split(IDS, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(SpeechUnitsError, match="given twice"):
        make_split(["a", "b", "c", "a"])
    with pytest.raises(SpeechUnitsError, match="split by 'gender'"):
        make_split(IDS, by="gender")
    singletons = {f"u{i}": f"s{i}" for i in range(20)}
    with pytest.raises(SpeechUnitsError, match="left dev, test empty"):
        make_split(list(singletons), speakers=singletons)


def test_split_save_load_and_restrict(tmp_path: Path) -> None:
    split = make_split(IDS, by="speaker", speakers=SPEAKERS, seed=2)
    loaded = Split.load(split.save(tmp_path / "split.json"))
    assert loaded == split and loaded.info["by"] == "speaker"
    labelled = set(IDS[::2])
    restricted = split.restrict(labelled)
    assert set(restricted.train) == set(split.train) & labelled
    assert set(restricted.test) == set(split.test) & labelled
    with pytest.raises(SpeechUnitsError, match="in both train and test"):
        Split(["a"], [], ["a"])


def test_split_from_file(tmp_path: Path) -> None:
    path = tmp_path / "split.tsv"
    path.write_text("u1\ttrain\nu2\tdev\n\nu3\ttest\nu4\ttrain\n", encoding="utf-8")
    split = split_from_file(path)
    assert (split.train, split.dev, split.test) == (["u1", "u4"], ["u2"], ["u3"])
    for text, line, match in [("u1\ttrain\nu2\tvalid\n", 2, "unknown part 'valid'"),
                              ("u1 train\n", 1, "expected utt<TAB>train|dev|test"),
                              ("u1\ttrain\nu1\ttest\n", 2, "'u1' listed twice")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SpeechUnitsError, match=match) as raised:
            split_from_file(path)
        assert str(raised.value).startswith(f"{path}:{line}: ")
    path.write_text("u1\tdev\n", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="no training utterance"):
        split_from_file(path)
