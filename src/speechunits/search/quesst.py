"""The ground truth of query-by-example search in the NIST STD layout that QUESST 2014/2015 and SWS 2013 use.

A ground-truth directory (QUESST 2014's ``scoring/groundtruth_quesst14_dev/``) holds three files:

* ``<name>.ecf.xml``: the documents searched, one ``<excerpt audio_filename="Audio/doc.wav" .../>``
  each;
* ``<name>.tlist.xml``: the queries (terms), one ``<term termid="query_id">`` each;
* ``<name>.rttm``: one ``LEXEME <doc> <channel> <tbeg> <dur> <query_id> ...`` line per occurrence of
  a query in a document (NIST RTTM: the sixth field, "ortho", names the query).

Documents and queries are named by their file stems (``quesst14_00001``, ``quesst14_dev_0001``).
QUESST's ``scoring/language_key_*.lst`` files (``path language`` per line) give each file's
language; SUPERB's QbE keeps the ``nnenglish`` ones.

:func:`write_ground_truth` writes the same three files (``speechunits synth qbe`` uses it) and
:func:`write_stdlist` a system's detections in the ``<stdlist>`` form QUESST's scoring script reads.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines
from speechunits.rttm import RttmRecord, read_rttm, write_rttm


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a query (term) in a document, times in seconds."""

    document: str
    term: str
    start_s: float
    duration_s: float


@dataclass
class GroundTruth:
    """What a QbE search is scored against.

    ``documents`` and ``terms`` keep their files' order; ``hits[term]`` is the set of documents the
    term occurs in (terms with no occurrence have no key).
    """

    documents: list[str]
    terms: list[str]
    hits: dict[str, set[str]] = field(default_factory=dict)
    source: str = ""

    def restricted(self, documents: Iterable[str] | None = None, terms: Iterable[str] | None = None) -> "GroundTruth":
        """The same truth over a subset of documents and/or terms (their order kept)."""
        keep_docs = set(self.documents if documents is None else documents)
        keep_terms = set(self.terms if terms is None else terms)
        docs = [d for d in self.documents if d in keep_docs]
        kept_terms = [t for t in self.terms if t in keep_terms]
        hits = {t: self.hits[t] & keep_docs for t in kept_terms if self.hits.get(t, set()) & keep_docs}
        return GroundTruth(docs, kept_terms, hits, self.source)


def file_stem(name: str) -> str:
    """``Audio/quesst14_00001.wav`` -> ``quesst14_00001`` (also for Windows separators)."""
    return Path(name.replace("\\", "/")).stem


def _xml_root(path: Path, what: str, tag: str) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise SpeechUnitsError(f"{path}: {what} not found") from None
    except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
        raise SpeechUnitsError(f"{path}: not a readable {what} ({exc})") from None
    if root.tag != tag:
        raise SpeechUnitsError(f"{path}: not a {what} (root element <{root.tag}>, expected <{tag}>)")
    return root


def _stems(path: Path, what: str, root_tag: str, element: str, attribute: str) -> list[str]:
    """The file stems in ``attribute`` of every ``element`` of an XML file, in file order, each once."""
    root = _xml_root(path, what, root_tag)
    stems: dict[str, None] = {}
    for number, node in enumerate(root.iter(element), 1):
        value = node.get(attribute)
        if not value:
            raise SpeechUnitsError(f"{path}: <{element}> {number} has no {attribute}")
        stems[file_stem(value)] = None
    if not stems:
        raise SpeechUnitsError(f"{path}: {what} lists no <{element}>")
    return list(stems)


def read_ecf(path: str | os.PathLike[str]) -> list[str]:
    """Document stems of an ``.ecf.xml`` file (``<excerpt audio_filename=...>``), in file order, each once."""
    return _stems(Path(path), "ECF file", "ecf", "excerpt", "audio_filename")


def read_tlist(path: str | os.PathLike[str]) -> list[str]:
    """Term (query) ids of a ``.tlist.xml`` file (``<term termid=...>``), in file order, each once."""
    return _stems(Path(path), "term list", "termlist", "term", "termid")


def read_rttm_occurrences(path: str | os.PathLike[str]) -> list[Occurrence]:
    """The ``LEXEME`` lines of an RTTM file (other types, e.g. ``SPEAKER``, are skipped), read by
    :func:`speechunits.rttm.read_rttm` (which names a malformed line)."""
    return [Occurrence(file_stem(r.file), file_stem(r.ortho), r.start, r.duration)
            for r in read_rttm(path, {"LEXEME"})]


def _one(directory: Path, pattern: str, what: str, required: bool) -> Path | None:
    found = sorted(directory.glob(pattern))
    if len(found) > 1:
        raise SpeechUnitsError(f"{directory}: several {what} files ({', '.join(p.name for p in found)}); keep one")
    if not found and required:
        raise SpeechUnitsError(f"{directory}: no {what} file ({pattern})")
    return found[0] if found else None


def read_ground_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """A ground-truth directory (ECF + term list + RTTM), or an RTTM file alone.

    Without an ECF file the documents are those the RTTM names (searching other documents then
    counts none of their false alarms: give the ECF when there is one); without a term list, the
    terms the RTTM names. A term list term with no occurrence stays a term (it is left out of TWV,
    as NIST scores it).
    """
    path = Path(path)
    if path.is_dir():
        rttm = _one(path, "*.rttm", "RTTM", required=True)
        ecf = _one(path, "*.ecf.xml", "ECF", required=False)
        tlist = _one(path, "*.tlist.xml", "term list", required=False)
    elif path.is_file():
        rttm, ecf, tlist = path, None, None
    else:
        raise SpeechUnitsError(f"{path}: no such ground-truth directory or RTTM file")
    assert rttm is not None
    occurrences = read_rttm_occurrences(rttm)
    documents = read_ecf(ecf) if ecf else list(dict.fromkeys(o.document for o in occurrences))
    terms = read_tlist(tlist) if tlist else list(dict.fromkeys(o.term for o in occurrences))
    known_docs, known_terms = set(documents), set(terms)
    stray_docs = sorted({o.document for o in occurrences} - known_docs)
    stray_terms = sorted({o.term for o in occurrences} - known_terms)
    if stray_docs or stray_terms:
        what = [f"documents not in the ECF ({', '.join(stray_docs[:3])})" if stray_docs else "",
                f"queries not in the term list ({', '.join(stray_terms[:3])})" if stray_terms else ""]
        raise SpeechUnitsError(f"{rttm}: occurrences of {' and '.join(w for w in what if w)}")
    hits: dict[str, set[str]] = {}
    for occurrence in occurrences:
        hits.setdefault(occurrence.term, set()).add(occurrence.document)
    return GroundTruth(documents, terms, hits, str(path))


def read_language_key(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{stem: language}`` of a QUESST ``language_key_*.lst`` file (``path language`` per line)."""
    languages: dict[str, str] = {}
    for line_no, line in iter_text_lines(path, "language key"):
        fields = line.split()
        if len(fields) != 2:
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'path language', got {line!r}")
        languages[file_stem(fields[0])] = fields[1]
    return languages


def quesst_ground_truth(root: str | os.PathLike[str], split: str, languages: Sequence[str] | None = None) -> GroundTruth:
    """The ground truth of one split (``dev``/``eval``) of a QUESST database directory.

    ``root/scoring/groundtruth_*_<split>/`` is read; with ``languages`` (e.g. ``["nnenglish"]``,
    SUPERB's choice) only the documents and queries of those languages (from
    ``scoring/language_key_utterances.lst`` and ``language_key_<split>.lst``) are kept.
    """
    root = Path(root)
    scoring = root / "scoring"
    folders = sorted(p for p in scoring.glob(f"groundtruth_*_{split}") if p.is_dir())
    if len(folders) != 1:
        found = ", ".join(p.name for p in folders) or "none"
        raise SpeechUnitsError(f"{scoring}: expected one groundtruth_*_{split} directory, found {found}")
    truth = read_ground_truth(folders[0])
    if not languages:
        return truth
    wanted = set(languages)
    doc_languages = read_language_key(scoring / "language_key_utterances.lst")
    term_languages = read_language_key(scoring / f"language_key_{split}.lst")
    seen = set(doc_languages.values()) | set(term_languages.values())
    if not wanted & seen:
        raise SpeechUnitsError(f"{scoring}: no file in language {', '.join(sorted(wanted))} "
                               f"(the language keys name {', '.join(sorted(seen))})")
    return truth.restricted([d for d in truth.documents if doc_languages.get(d) in wanted],
                            [t for t in truth.terms if term_languages.get(t) in wanted])


def is_quesst_root(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a QUESST database directory (``scoring/groundtruth_*``)."""
    scoring = Path(path) / "scoring"
    return scoring.is_dir() and any(p.is_dir() for p in scoring.glob("groundtruth_*"))


def write_ground_truth(directory: str | os.PathLike[str], name: str, documents: Mapping[str, float],
                       terms: Mapping[str, str], occurrences: Iterable[Occurrence], *,
                       audio_folder: str = "Audio", language: str = "english") -> None:
    """Write ``<name>.ecf.xml``, ``<name>.tlist.xml`` and ``<name>.rttm`` into ``directory``.

    Args:
        documents: ``{document stem: duration in seconds}``, in the order to list them.
        terms: ``{query stem: its text}`` (the text goes to ``<termtext>``).
        occurrences: the RTTM lines, written in the order given.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(documents.values())
    ecf = ET.Element("ecf", source_signal_duration=f"{total:.3f}", language=language, version="1")
    for doc, duration in documents.items():
        ET.SubElement(ecf, "excerpt", audio_filename=f"{audio_folder}/{doc}.wav", channel="1", tbeg="0.000",
                      dur=f"{duration:.3f}", source_type="splitcts")
    tlist = ET.Element("termlist", ecf_filename=f"{name}.ecf.xml", version="1", language=language, encoding="UTF-8")
    for term, text in terms.items():
        ET.SubElement(ET.SubElement(tlist, "term", termid=term), "termtext").text = text
    for element, suffix in ((ecf, ".ecf.xml"), (tlist, ".tlist.xml")):
        ET.indent(element)
        ET.ElementTree(element).write(directory / f"{name}{suffix}", encoding="UTF-8", xml_declaration=True)
    write_rttm(directory / f"{name}.rttm",
               (RttmRecord("LEXEME", o.document, "1", o.start_s, o.duration_s, ortho=o.term) for o in occurrences))


def write_stdlist(path: str | os.PathLike[str], scores: Mapping[str, Sequence[tuple[str, float]]],
                  threshold: float, *, term_list: str = "benchmark.stdlist.xml") -> None:
    """A system's detections as QUESST's ``<stdlist>`` XML: every (query, document) score, ``YES``
    above ``threshold``. Document-level detections: ``tbeg`` 0 and ``dur`` 0, as QUESST 2014 scores
    files, not times."""
    root = ET.Element("stdlist", termlist_filename=term_list, indexing_time="1.00", language="english",
                      index_size="1", system_id="speechunits")
    for term, doc_scores in scores.items():
        terms = ET.SubElement(root, "detected_termlist", termid=term, term_search_time="1.0", oov_term_count="1")
        for doc, score in doc_scores:
            ET.SubElement(terms, "term", file=doc, channel="1", tbeg="0.000", dur="0.00", score=f"{score:.4f}",
                          decision="YES" if score > threshold else "NO")
    ET.indent(root)
    ET.ElementTree(root).write(Path(path), encoding="UTF-8", xml_declaration=True)
