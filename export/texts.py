"""Texts that parity is measured on: the edge cases users hit, and a larger varied set."""

from __future__ import annotations

import random

_LONG = (
    "London is the capital and largest city of England and the United Kingdom, with a population "
    "of around 9 million. It stands on the River Thames in south-east England at the head of a "
    "50-mile estuary down to the North Sea, and has been a major settlement for nearly two "
    "millennia. The City of London, its ancient core and financial centre, was founded by the "
    "Romans as Londinium and has retained its medieval boundaries. "
)

# Fixed, ordered: the manifest's parity report is computed on exactly these.
EDGE_TEXTS: tuple[str, ...] = (
    "How many people live in London?",
    "Around 9 Million people live in London",
    "London is known for its financial district",
    "",
    "a",
    "?",
    "!!! ... ??? ;;; --- ***",
    "   leading and trailing spaces   ",
    "tab\tseparated\tand\nnew\nlines",
    "Crème brûlée, café au lait, naïve façade, Ångström, São Paulo, Zürich.",
    "ÉCOLE NORMALE SUPÉRIEURE",
    "北京是中华人民共和国的首都。",
    "東京は日本の首都です。",
    "서울은 대한민국의 수도이다.",
    "Москва — столица России.",
    "القاهرة هي عاصمة مصر.",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "नई दिल्ली भारत की राजधानी है।",
    "emoji 😀🚀🔥 and symbols ∑∫√ ≠ ≤ ©®™",
    "supercalifragilisticexpialidocious " * 3,
    "x" * 300,  # one word longer than WordPiece's 100-character limit: a single [UNK]
    "The quick brown fox jumps over the lazy dog. " * 2,
    "what is the boiling point of water at sea level",
    "Python 3.11 released on 2022-10-24 with speedups of 10-60%.",
    "https://example.com/path?query=1&other=two#fragment user@example.org",
    _LONG * 2,   # about 180 word pieces: past 128, inside 256
    _LONG * 4,   # past 256
    _LONG * 12,  # far past 512
    ("word " * 600).strip(),  # exactly-counted long run of a single token
)

_SUBJECTS = ["London", "the museum", "a solar panel", "the river", "my grandmother", "the court",
             "Python", "the vaccine", "the orchestra", "a glacier", "the startup", "Mars"]
_VERBS = ["is known for", "was built near", "depends on", "changed", "cannot explain",
          "is larger than", "was reported by", "attracts", "lies beneath", "was sold to"]
_OBJECTS = ["its financial district", "ancient ruins", "renewable energy", "the harbour",
            "quantum effects", "a thousand visitors", "the treaty of 1648", "fresh water",
            "machine learning", "the northern lights"]
_QUESTIONS = ["How many people live in {s}?", "Why is {s} important?", "When was {s} founded?",
              "what does {s} cost", "Where can I find {s}?"]
_FOREIGN = ["Der Bahnhof liegt am Rand der Stadt.", "La bibliothèque ouvre à neuf heures.",
            "El mercado está cerrado los domingos.", "Il treno per Roma è in ritardo.",
            "今天的天气很好。", "Погода сегодня хорошая.", "Ο καιρός είναι καλός σήμερα.",
            "Hava bugün çok güzel.", "Dziś jest piękna pogoda.", "オンラインで注文できます。"]


def varied_texts(n: int, *, seed: int = 0) -> list[str]:
    """`n` deterministic texts: short queries, sentences, passages, long documents, non-English."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        kind = len(out) % 6
        s, v, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        if kind == 0:
            out.append(rng.choice(_QUESTIONS).format(s=s))
        elif kind == 1:
            out.append(f"{s.capitalize()} {v} {o}.")
        elif kind == 2:
            out.append(" ".join(f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
                                f"{rng.choice(_OBJECTS)}." for _ in range(rng.randint(3, 8))))
        elif kind == 3:
            out.append(" ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
                                for _ in range(rng.randint(40, 90))))
        elif kind == 4:
            out.append(rng.choice(_FOREIGN) + " " + rng.choice(_FOREIGN))
        else:
            out.append(rng.choice(EDGE_TEXTS))
    return out
