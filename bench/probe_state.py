"""Carry bench/probe.py's run across machines: save the small part of its ``--out`` folder, restore it later.

bench/probe.py's full run takes about 12 hours of this 2-core CPU, longer than a working session, and a
session's machine does not keep ``bench/out``. What the remaining sweeps need, and what cannot be rebuilt
exactly, is small: the pretrained model (its pretraining is the run's one step that is costly to repeat),
the codebooks, unit stores and BPEs fitted on it, the split, and each finished sweep's ``probe.json`` (the
record its report reads; heads and checkpoints stay behind). The corpus is left out: the same seed
synthesises the same audio, which ``restore`` checks against the saved digest.

    python bench/probe_state.py save bench/out/probe3 bench/state/probe3       # end of a session
    python bench/probe_state.py restore bench/state/probe3 bench/out/probe3    # start of the next one
    # then bench/probe.py with the same --out and options: finished sweeps are reused, the others run

A sweep that was still running when its state was saved starts again from nothing after a restore
(its checkpoints are ~55 MB a run and stay behind).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

#: The model's own files (its training checkpoints stay behind); the rest of OUT's top level that is kept.
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "speechunits.json")
WEIGHTS = "model.safetensors"
TOP_FILES = ("options.json", "split.tsv", "pretrain.json")
TOP_DIRS = ("codebook-k*", "units-k*", "bpe-k*")
STATE_FILE = "state.json"


def _read_weights(path: Path) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A safetensors file's tensors and metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}, handle.metadata()


def round_weights_to_half(path: Path) -> bool:
    """Round a safetensors file's float32 tensors to float16 values, kept as float32 (the file is rewritten
    atomically only when some value changes). The model then loses nothing when its state is stored in
    float16. Returns whether the file changed."""
    import torch
    from safetensors.torch import save_file

    tensors, metadata = _read_weights(path)
    rounded = {name: t.half().float() if t.dtype == torch.float32 else t for name, t in tensors.items()}
    if all(rounded[name].equal(tensors[name]) for name in tensors):
        return False
    partial = path.with_name(path.name + ".partial")
    save_file(rounded, str(partial), metadata=metadata)
    partial.replace(path)
    return True


def convert_weights(source: Path, target: Path, dtype: str) -> None:
    """Write ``source``'s safetensors with its float tensors as ``dtype`` ("float16" or "float32")."""
    import torch
    from safetensors.torch import save_file

    wanted = getattr(torch, dtype)
    tensors, metadata = _read_weights(source)
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            if dtype == "float16" and not tensor.half().float().equal(tensor.float()):
                raise SystemExit(f"{source}: {name} is not float16-exact (round_weights_to_half was not applied)")
            tensors[name] = tensor.to(wanted)
    save_file(tensors, str(target), metadata=metadata)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corpus_digest(corpus: Path) -> str:
    """sha256 over the corpus's files in name order, paths relative (``manifest.tsv`` holds absolute
    paths, so it is left out; the wavs, texts and alignments are in)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.name != "manifest.tsv"):
        digest.update(str(path.relative_to(corpus)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def finished(folder: Path) -> bool:
    """Whether a codebook, unit store or BPE folder of OUT is complete: a codebook has its
    ``codebook.json``, a BPE its ``bpe.json``, and a unit store is complete once the bench has fitted
    the BPE of the same K on it (it does so right after the store is written; a store being encoded
    already holds files)."""
    name = folder.name
    if name.startswith("codebook-"):
        return (folder / "codebook.json").is_file()
    if name.startswith("bpe-"):
        return (folder / "bpe.json").is_file()
    k = name.removeprefix("units-")
    return any((bpe / "bpe.json").is_file() for bpe in folder.parent.glob(f"bpe-{k}-*"))


def save(out: Path, state: Path) -> list[str]:
    """Copy OUT's small lasting part into STATE (replacing what was there); returns what was kept."""
    corpus_info = json.loads((out / "corpus" / "corpus.json").read_text())
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    kept: list[str] = []
    model = out / "tiny"
    if (model / "config.json").is_file():
        (state / "tiny").mkdir()
        for name in (n for n in MODEL_FILES if (model / n).is_file()):
            if name == WEIGHTS:  # float16 on disk, restored to the same float32
                convert_weights(model / name, state / "tiny" / name, "float16")
            else:
                shutil.copy2(model / name, state / "tiny" / name)
            kept.append(f"tiny/{name}")
    for name in TOP_FILES:
        if (out / name).is_file():
            shutil.copy2(out / name, state / name)
            kept.append(name)
    for pattern in TOP_DIRS:
        for folder in sorted(out.glob(pattern)):
            if folder.is_dir() and finished(folder):
                shutil.copytree(folder, state / folder.name)
                kept.append(folder.name + "/")
    for record in sorted((out / "probes").glob("*/probe.json")):
        target = state / "probes" / record.parent.name / "probe.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, target)
        kept.append(f"probes/{record.parent.name}/probe.json")
    (state / STATE_FILE).write_text(json.dumps({
        "corpus": {"minutes": corpus_info.get("minutes"), "speakers": corpus_info.get("speakers"),
                   "seed": corpus_info.get("seed"), "sha256": corpus_digest(out / "corpus")},
        "weights_sha256": file_sha256(model / WEIGHTS) if (model / WEIGHTS).is_file() else None,
        "kept": kept}, indent=1) + "\n")
    return kept


def restore(state: Path, out: Path) -> list[str]:
    """Synthesise the corpus into OUT (same seed), check it is the saved one, copy STATE back into OUT."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from probe import ensure_corpus  # bench/probe.py (which imports this module)

    info = json.loads((state / STATE_FILE).read_text())
    corpus = info["corpus"]
    ensure_corpus(out, corpus["minutes"], corpus["speakers"])
    got = corpus_digest(out / "corpus")
    if got != corpus["sha256"]:
        raise SystemExit(f"{out}/corpus differs from the one {state} was made with (sha256 {got[:12]} vs "
                         f"{corpus['sha256'][:12]}): its probes would not compare; use another --out")
    restored: list[str] = []
    for name in info["kept"]:
        source, target = state / name, out / name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        elif name == f"tiny/{WEIGHTS}":
            convert_weights(source, target, "float32")
            if file_sha256(target) != info["weights_sha256"]:
                raise SystemExit(f"{target}: restored weights differ from the saved model's (sha256)")
        else:
            shutil.copy2(source, target)
        restored.append(name)
    return restored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("source", help="save: bench/probe.py's --out; restore: the state folder")
    parser.add_argument("target", help="save: the state folder; restore: bench/probe.py's --out")
    args = parser.parse_args()
    source, target = Path(args.source), Path(args.target)
    done = save(source, target) if args.action == "save" else restore(source, target)
    print(f"{args.action}: {len(done)} entries " + ("kept" if args.action == "save" else "restored (the rest "
                                                     "were already there)"))
    for name in done:
        print("  " + name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
