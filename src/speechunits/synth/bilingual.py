"""A template grammar with aligned lexicons in English, Spanish, German and French.

Written for this project. A sentence is ``SUBJECT VERB OBJECT ADVERBIAL``; every slot value is
a phrase with its translation in each language (third person singular subjects, past-tense
verbs, inanimate objects in the accusative, tense-neutral adverbials), so any combination is
grammatical in every language with the same word order (English simple past, Spanish
pretérito, German Präteritum keeping verb-second, French passé composé). Each verb lists the
objects it takes, so sentences stay sensible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

LANGUAGES = ("en", "es", "de", "fr")
SLOTS = ("subject", "verb", "object", "adverbial")

# Each entry: {language: phrase}; a verb also names the object keys it takes.
SUBJECTS: dict[str, dict[str, str]] = {
    "baker": {"en": "the baker", "es": "el panadero", "de": "der Bäcker", "fr": "le boulanger"},
    "teacher": {"en": "the teacher", "es": "la profesora", "de": "die Lehrerin", "fr": "la maîtresse"},
    "sister": {"en": "my sister", "es": "mi hermana", "de": "meine Schwester", "fr": "ma sœur"},
    "neighbour": {"en": "our neighbour", "es": "nuestro vecino", "de": "unser Nachbar", "fr": "notre voisin"},
    "fisherman": {"en": "the old fisherman", "es": "el viejo pescador", "de": "der alte Fischer",
                  "fr": "le vieux pêcheur"},
    "grandfather": {"en": "my grandfather", "es": "mi abuelo", "de": "mein Großvater", "fr": "mon grand-père"},
    "gardener": {"en": "the gardener", "es": "el jardinero", "de": "der Gärtner", "fr": "le jardinier"},
    "cook": {"en": "the cook", "es": "la cocinera", "de": "die Köchin", "fr": "la cuisinière"},
    "postman": {"en": "the postman", "es": "el cartero", "de": "der Briefträger", "fr": "le facteur"},
    "girl": {"en": "a little girl", "es": "una niña pequeña", "de": "ein kleines Mädchen",
             "fr": "une petite fille"},
}
OBJECTS: dict[str, dict[str, str]] = {
    "bread": {"en": "the bread", "es": "el pan", "de": "das Brot", "fr": "le pain"},
    "bicycle": {"en": "the red bicycle", "es": "la bicicleta roja", "de": "das rote Fahrrad", "fr": "le vélo rouge"},
    "book": {"en": "the old book", "es": "el libro viejo", "de": "das alte Buch", "fr": "le vieux livre"},
    "umbrella": {"en": "the umbrella", "es": "el paraguas", "de": "den Regenschirm", "fr": "le parapluie"},
    "door": {"en": "the blue door", "es": "la puerta azul", "de": "die blaue Tür", "fr": "la porte bleue"},
    "letter": {"en": "a letter", "es": "una carta", "de": "einen Brief", "fr": "une lettre"},
    "window": {"en": "the kitchen window", "es": "la ventana de la cocina", "de": "das Küchenfenster",
               "fr": "la fenêtre de la cuisine"},
    "box": {"en": "the small box", "es": "la caja pequeña", "de": "die kleine Kiste", "fr": "la petite boîte"},
    "hat": {"en": "a black hat", "es": "un sombrero negro", "de": "einen schwarzen Hut", "fr": "un chapeau noir"},
    "map": {"en": "the map of the city", "es": "el mapa de la ciudad", "de": "die Karte der Stadt",
            "fr": "la carte de la ville"},
    "chair": {"en": "the wooden chair", "es": "la silla de madera", "de": "den Holzstuhl", "fr": "la chaise en bois"},
    "cake": {"en": "a chocolate cake", "es": "un pastel de chocolate", "de": "einen Schokoladenkuchen",
             "fr": "un gâteau au chocolat"},
}
_THINGS = ("bicycle", "book", "umbrella", "letter", "box", "hat", "map", "chair")
VERBS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "bought": ({"en": "bought", "es": "compró", "de": "kaufte", "fr": "a acheté"},
               ("bread", "bicycle", "book", "umbrella", "box", "hat", "map", "chair", "cake")),
    "found": ({"en": "found", "es": "encontró", "de": "fand", "fr": "a trouvé"}, _THINGS),
    "lost": ({"en": "lost", "es": "perdió", "de": "verlor", "fr": "a perdu"}, _THINGS),
    "sold": ({"en": "sold", "es": "vendió", "de": "verkaufte", "fr": "a vendu"},
             ("bread", "bicycle", "book", "umbrella", "box", "hat", "map", "chair", "cake")),
    "carried": ({"en": "carried", "es": "llevó", "de": "trug", "fr": "a porté"},
                ("bread", "bicycle", "book", "umbrella", "letter", "box", "hat", "chair", "cake")),
    "repaired": ({"en": "repaired", "es": "arregló", "de": "reparierte", "fr": "a réparé"},
                 ("bicycle", "umbrella", "door", "window", "box", "chair")),
    "opened": ({"en": "opened", "es": "abrió", "de": "öffnete", "fr": "a ouvert"},
               ("book", "umbrella", "door", "letter", "window", "box")),
    "forgot": ({"en": "forgot", "es": "olvidó", "de": "vergaß", "fr": "a oublié"}, _THINGS),
    "saw": ({"en": "saw", "es": "vio", "de": "sah", "fr": "a vu"}, tuple(OBJECTS)),
    "cleaned": ({"en": "cleaned", "es": "limpió", "de": "putzte", "fr": "a nettoyé"},
                ("bicycle", "door", "window", "box", "chair")),
}
ADVERBIALS: dict[str, dict[str, str]] = {
    "morning": {"en": "in the morning", "es": "por la mañana", "de": "am Morgen", "fr": "le matin"},
    "market": {"en": "at the market", "es": "en el mercado", "de": "auf dem Markt", "fr": "au marché"},
    "dinner": {"en": "before dinner", "es": "antes de la cena", "de": "vor dem Abendessen", "fr": "avant le dîner"},
    "river": {"en": "near the river", "es": "cerca del río", "de": "neben dem Fluss", "fr": "près de la rivière"},
    "yesterday": {"en": "yesterday", "es": "ayer", "de": "gestern", "fr": "hier"},
    "work": {"en": "after work", "es": "después del trabajo", "de": "nach der Arbeit", "fr": "après le travail"},
    "sunday": {"en": "last Sunday", "es": "el domingo pasado", "de": "am letzten Sonntag", "fr": "dimanche dernier"},
    "garden": {"en": "in the garden", "es": "en el jardín", "de": "im Garten", "fr": "dans le jardin"},
    "night": {"en": "at night", "es": "por la noche", "de": "in der Nacht", "fr": "pendant la nuit"},
    "storm": {"en": "during the storm", "es": "durante la tormenta", "de": "während des Gewitters",
              "fr": "pendant l'orage"},
}


@dataclass(frozen=True, order=True)
class Combination:
    """One sentence as slot keys (language-independent)."""

    subject: str
    verb: str
    object: str
    adverbial: str

    def text(self, language: str) -> str:
        """The sentence in ``language``: capitalised, with a full stop."""
        phrase = " ".join((SUBJECTS[self.subject][language], VERBS[self.verb][0][language],
                           OBJECTS[self.object][language], ADVERBIALS[self.adverbial][language]))
        return phrase[:1].upper() + phrase[1:] + "."

    def values(self) -> tuple[tuple[str, str], ...]:
        """(slot, key) pairs: the "words" a held-out sentence must have seen in training."""
        return tuple(zip(SLOTS, (self.subject, self.verb, self.object, self.adverbial)))


def combinations() -> Iterator[Combination]:
    """Every sentence of the grammar, in a fixed order."""
    for subject in SUBJECTS:
        for verb, (_, objects) in VERBS.items():
            for obj in objects:
                for adverbial in ADVERBIALS:
                    yield Combination(subject, verb, obj, adverbial)
