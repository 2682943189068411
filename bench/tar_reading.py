"""Reading WebDataset shards: speechunits' random access against webdataset's own streaming reader.

Both decode every sample's audio to float32 with libsndfile (soundfile); webdataset streams each
shard front to back (its ``WebDataset`` pipeline, no shuffling, the bytes decoded by soundfile as
its audio decoders do), speechunits opens each member through its cached index with one seek
(``open_corpus`` + ``Audio.load``, no resampling). The loose files they were packed from are read
too, as a floor. The three alternate ``--rounds`` times in one run so a busy machine slows them
alike; the best round of each is compared.

    python bench/tar_reading.py DIR_OF_AUDIO --shard-size 100 --rounds 3
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path


def _pack(files: list[Path], out: Path, shard_size: int) -> list[Path]:
    import webdataset as wds

    shards = []
    for start in range(0, len(files), shard_size):
        shard = out / f"shard-{start // shard_size:06d}.tar"
        with wds.TarWriter(str(shard)) as writer:
            for f in files[start:start + shard_size]:
                writer.write({"__key__": f.stem, f.suffix.lstrip(".").lower(): f.read_bytes()})
        shards.append(shard)
    return shards


def _ours(pattern: str) -> tuple[int, int]:
    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus

    count = samples = 0
    for utt in open_corpus(pattern):
        samples += len(Audio.load(utt.path).samples)
        count += 1
    return count, samples


def _webdataset(shards: list[Path]) -> tuple[int, int]:
    import soundfile as sf
    import webdataset as wds

    count = samples = 0
    for sample in wds.WebDataset([str(s) for s in shards], shardshuffle=False):
        ext = next(k for k in sample if not k.startswith("__"))
        data, _ = sf.read(io.BytesIO(sample[ext]), dtype="float32")
        samples += len(data)
        count += 1
    return count, samples


def _files(files: list[Path]) -> tuple[int, int]:
    import soundfile as sf

    count = samples = 0
    for f in files:
        data, _ = sf.read(str(f), dtype="float32")
        samples += len(data)
        count += 1
    return count, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p for p in args.audio_dir.rglob("*") if p.suffix.lower() in (".flac", ".wav", ".mp3", ".ogg"))
    with tempfile.TemporaryDirectory() as tmp:
        shards = _pack(files, Path(tmp), args.shard_size)
        pattern = f"{tmp}/shard-{{000000..{len(shards) - 1:06d}}}.tar"
        readers = {"speechunits": lambda: _ours(pattern), "webdataset": lambda: _webdataset(shards),
                   "loose files": lambda: _files(files)}
        seconds: dict[str, list[float]] = {name: [] for name in readers}
        counts = {}
        for _ in range(args.rounds):
            for name, read in readers.items():
                started = time.perf_counter()
                counts[name] = read()
                seconds[name].append(time.perf_counter() - started)
    if len(set(counts.values())) != 1:
        raise SystemExit(f"the readers disagree on what they read: {counts}")
    utterances, samples = counts["speechunits"]
    best = {name: min(times) for name, times in seconds.items()}
    print(json.dumps({"utterances": utterances, "shards": len(shards), "audio_s": round(samples / 16000, 1),
                      "wall_s": {name: [round(t, 3) for t in times] for name, times in seconds.items()},
                      "speechunits_vs_webdataset": round(best["webdataset"] / best["speechunits"], 2),
                      "speechunits_vs_loose_files": round(best["loose files"] / best["speechunits"], 2)}, indent=1))


if __name__ == "__main__":
    main()
