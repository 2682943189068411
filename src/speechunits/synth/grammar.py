"""Sentence grammars for languages without a hand-written list (written for this project).

Each language has subjects, predicates and adverbials that agree with one another in any
combination (third person singular subjects; predicates carry their own objects), so every
product ``subject + predicate + adverbial`` is a grammatical sentence. :func:`generate` picks
a fixed, seeded selection of distinct combinations, so the list is stable across releases
of the same code.
"""
from __future__ import annotations

import numpy as np

#: Sentences generated per language.
SENTENCES_PER_LANGUAGE = 300
_SELECTION_SEED = 20240611

GRAMMARS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "es": (
        ("Mi hermana", "El panadero", "La profesora", "Nuestro vecino", "Una niña curiosa", "El viejo pescador",
         "La médica", "Mi abuelo", "El cartero", "La pintora", "Un estudiante cansado", "La alcaldesa",
         "El jardinero", "Mi prima", "El conductor del autobús", "La cocinera"),
        ("compró pan fresco", "leyó un libro muy largo", "cerró todas las ventanas", "pintó la puerta de azul",
         "perdió las llaves del coche", "escribió una carta a su madre", "preparó una sopa de verduras",
         "encontró un gato debajo del puente", "bebió un café con leche", "limpió la cocina",
         "cantó una canción antigua", "plantó tres árboles", "arregló la bicicleta roja",
         "olvidó el paraguas", "vendió manzanas y peras", "dibujó un mapa del barrio",
         "esperó el tren de las ocho", "subió la montaña"),
        ("por la mañana", "en el mercado", "antes de la cena", "cerca del río", "durante la tormenta",
         "después del trabajo", "en la plaza mayor", "el domingo pasado", "sin decir nada", "con mucho cuidado",
         "junto a la estación", "a las cinco de la tarde"),
    ),
    "de": (
        ("Meine Schwester", "Der Bäcker", "Die Lehrerin", "Unser Nachbar", "Ein kleines Kind", "Der alte Fischer",
         "Die Ärztin", "Mein Großvater", "Der Briefträger", "Die Malerin", "Ein müder Student", "Die Bürgermeisterin",
         "Der Gärtner", "Meine Cousine", "Der Busfahrer", "Die Köchin"),
        ("kaufte frisches Brot", "las ein sehr langes Buch", "schloss alle Fenster", "strich die Tür blau an",
         "verlor den Autoschlüssel", "schrieb einen Brief an seine Mutter", "kochte eine Gemüsesuppe",
         "fand eine Katze unter der Brücke", "trank einen Kaffee mit Milch", "putzte die Küche",
         "sang ein altes Lied", "pflanzte drei Bäume", "reparierte das rote Fahrrad",
         "vergaß den Regenschirm", "verkaufte Äpfel und Birnen", "zeichnete eine Karte der Stadt",
         "wartete auf den Zug", "stieg auf den Berg"),
        ("am frühen Morgen", "auf dem Markt", "vor dem Abendessen", "neben dem Fluss", "während des Gewitters",
         "nach der Arbeit", "auf dem großen Platz", "am letzten Sonntag", "ohne ein Wort", "mit großer Sorgfalt",
         "in der Nähe des Bahnhofs", "um fünf Uhr nachmittags"),
    ),
    "fr": (
        ("Ma sœur", "Le boulanger", "La maîtresse", "Notre voisin", "Une petite fille", "Le vieux pêcheur",
         "La doctoresse", "Mon grand-père", "Le facteur", "La peintre", "Un étudiant fatigué", "La mairesse",
         "Le jardinier", "Ma cousine", "Le chauffeur du bus", "La cuisinière"),
        ("a acheté du pain frais", "a lu un très long livre", "a fermé toutes les fenêtres",
         "a peint la porte en bleu", "a perdu les clés de la voiture", "a écrit une lettre à sa mère",
         "a préparé une soupe de légumes", "a trouvé un chat sous le pont", "a bu un café au lait",
         "a nettoyé la cuisine", "a chanté une vieille chanson", "a planté trois arbres",
         "a réparé le vélo rouge", "a oublié son parapluie", "a vendu des pommes et des poires",
         "a dessiné une carte du quartier", "a attendu le train de huit heures", "a grimpé sur la colline"),
        ("ce matin", "au marché", "avant le dîner", "près de la rivière", "pendant l'orage", "après le travail",
         "sur la grande place", "dimanche dernier", "sans dire un mot", "avec beaucoup de soin",
         "à côté de la gare", "à cinq heures du soir"),
    ),
}


def generate(language: str, count: int = SENTENCES_PER_LANGUAGE) -> tuple[str, ...]:
    """``count`` distinct sentences of ``language`` (a fixed selection of the grammar's products)."""
    subjects, predicates, adverbials = GRAMMARS[language]
    total = len(subjects) * len(predicates) * len(adverbials)
    picks = np.random.default_rng(_SELECTION_SEED).permutation(total)[: min(count, total)]
    sentences = []
    for index in picks.tolist():
        s, rest = divmod(index, len(predicates) * len(adverbials))
        p, a = divmod(rest, len(adverbials))
        sentences.append(f"{subjects[s]} {predicates[p]} {adverbials[a]}.")
    return tuple(sentences)
