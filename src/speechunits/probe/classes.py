"""Which classes a ``classify`` probe learns: keep, rename, merge or drop a corpus's labels.

A spec is a comma-separated list: ``NAME`` keeps a class, ``FROM=TO`` renames one (merging it into
``TO`` when that is kept too), ``*=TO`` turns every other class into ``TO``; without ``*=`` every other
class is dropped (its utterances count as unlabelled). Two presets spell SUPERB's tasks:

* ``superb-ks``: Speech Commands' ten keywords and ``_silence_``, every other word ``_unknown_``;
* ``superb-er``: IEMOCAP's neutral, happy (excited merged into it), angry and sad; the rest dropped.

The probe records its spec and ``probe eval`` applies it to the labels it scores against.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from speechunits.errors import SpeechUnitsError
from speechunits.layouts.speech_commands import SILENCE, SUPERB_KEYWORDS, UNKNOWN

PRESETS = {
    "superb-ks": ",".join((*SUPERB_KEYWORDS, SILENCE, f"*={UNKNOWN}")),
    "superb-er": "neu,hap,ang,sad,exc=hap",
}


@dataclass(frozen=True)
class ClassMap:
    """A parsed spec (see the module docstring): ``rename`` maps a label to its class, ``other`` is
    the class of every label not in ``rename`` (None: dropped)."""

    spec: str
    rename: dict[str, str] = field(default_factory=dict)
    other: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ClassMap":
        """A preset name or a spec.

        Raises:
            SpeechUnitsError: an empty spec or item, a class named twice, two ``*=`` items.
        """
        spec = PRESETS.get(text.strip().lower(), text)
        rename: dict[str, str] = {}
        other = None
        for item in (part.strip() for part in spec.split(",")):
            source, eq, target = (s.strip() for s in item.partition("="))
            if not source or (eq and not target):
                raise SpeechUnitsError(f"--classes: bad item {item!r} in {text!r} (NAME, FROM=TO or *=TO; "
                                       f"or one of {', '.join(PRESETS)})")
            if source == "*":
                if other is not None:
                    raise SpeechUnitsError(f"--classes: '*=' given twice in {text!r}")
                other = target
                continue
            if source in rename:
                raise SpeechUnitsError(f"--classes: {source!r} named twice in {text!r}")
            rename[source] = target if eq else source
        if not rename and other is None:
            raise SpeechUnitsError(f"--classes: no class in {text!r}")
        return cls(spec, rename, other)

    def apply(self, labels: Mapping[str, str]) -> dict[str, str]:
        """``labels`` with each label mapped to its class; utterances whose class is dropped left out."""
        mapped = {utt: self.rename.get(label, self.other) for utt, label in labels.items()}
        return {utt: label for utt, label in mapped.items() if label is not None}

    def apply_to(self, label_set: Any) -> None:
        """Map a :class:`~speechunits.probe.labels.LabelSet`'s labels in place; the utterances whose
        class is dropped join its ``missing`` (they are unlabelled for the probe)."""
        kept = self.apply(label_set.labels)
        label_set.missing += [utt for utt in label_set.labels if utt not in kept]
        label_set.labels = kept
