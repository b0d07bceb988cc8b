"""The corpus: a compositional grammar of short movie reviews (positive, negative and
neutral in equal thirds) over `vocabulary`'s word lists, split into training and held-out
fillers."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from asset_build.vocabulary import (
    ADV_MILD_NEG,
    ADV_MILD_POS,
    ADV_NEUTRAL,
    ADV_STRONG,
    ASPECTS_PLURAL,
    ASPECTS_SINGULAR,
    AUDIENCES,
    CHARACTER_ADJS,
    CHARACTER_NOUNS,
    COMPANIONS,
    COMPARISONS,
    DAY_PARTS,
    DAYS,
    ERAS,
    EXPECTATIONS,
    FACT_SENTENCES,
    FEATURES,
    FILM_WORDS,
    FIRST_NAMES,
    GENRES,
    GROUP_CHARACTERS,
    HELD_GOING_INTO_GENRES,
    HELD_IN_THIS_GENRES,
    HELD_PICKED_RELATIVES,
    INTROS,
    LABELS,
    LAST_NAMES,
    LINK_PLURAL,
    LINK_SINGULAR,
    MAKER_MODS,
    MAKERS,
    MIX_SENTENCES,
    MIX_THAT,
    NEG_COMPARATIVES,
    NEG_FEELINGS,
    NEG_MILD,
    NEG_SENTENCES,
    NEG_STRONG,
    NEG_SUPERLATIVES,
    NEG_THAT,
    NEG_VERBS,
    NEUTRAL_ADJ,
    OPENERS,
    ORDINALS,
    PERFORMERS,
    PLACES,
    PLOT_ACTIONS,
    POS_COMPARATIVES,
    POS_FEELINGS,
    POS_IF,
    POS_MILD,
    POS_SENTENCES,
    POS_STRONG,
    POS_SUPERLATIVES,
    POS_THAT,
    POS_VERBS,
    RECOMMEND,
    RELATIVES,
    RUNTIMES,
    SKIP_IT,
    SOURCES,
    SPANS,
    TAILS,
    TOPIC_HEADS,
    TOPIC_NOUNS,
    VIEWING_PLACES,
    WASTES,
    WATCHERS,
)


def with_article(phrase: str) -> str:
    """Prefix ``a``/``an`` to ``phrase`` (the lexicon avoids the exceptions)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_adv(adverb: str, adjective: str) -> str:
    return f"{adverb} {adjective}" if adverb else adjective


def split_fillers(seed: int, heldout_frac: float = 0.2) -> tuple[dict, dict]:
    """Split the compositional filler pools into corpus and held-out (prompt) parts.

    Returns ``(train, held)``, both mapping a slot name to a sorted list.  The
    split depends only on ``seed``.
    """
    rng = random.Random(f"textgym-heldout-fillers-{seed}")
    genres = [g for g, _ in GENRES]
    pools = {
        "name": [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES],
        "char": [with_article(f"{a} {n}") for a in CHARACTER_ADJS for n in CHARACTER_NOUNS],
        "topic": [f"{head} {noun}" for head in TOPIC_HEADS for noun in TOPIC_NOUNS],
        "ctx": [f"on a {day} {part}" for day in DAYS for part in DAY_PARTS]
        + [f"with my {who}" for who in COMPANIONS]
        + VIEWING_PLACES,
        "makerpair": [f"{maker}'s {mod}" for maker in MAKERS for mod in MAKER_MODS],
    }
    train: dict[str, list[str]] = {}
    held: dict[str, list[str]] = {}
    for key, pool in pools.items():
        pool = sorted(set(pool))
        rng.shuffle(pool)
        k = round(len(pool) * heldout_frac)
        held[key], train[key] = sorted(pool[:k]), sorted(pool[k:])
    train["char"] += GROUP_CHARACTERS
    # Whole words that are held out of one opener frame only.
    for key, held_words, pool in [
        ("picked", HELD_PICKED_RELATIVES, RELATIVES),
        ("inthis", HELD_IN_THIS_GENRES, genres),
        ("goinginto", HELD_GOING_INTO_GENRES, genres),
    ]:
        held[key] = list(held_words)
        train[key] = [w for w in pool if w not in held_words]
    return train, held


class Grammar:
    """Seeded random generator for review sentences and documents."""

    def __init__(self, rng: random.Random, fillers: dict[str, list[str]]) -> None:
        self.rng = rng
        self.sentences: set[str] = set()
        r = rng.choice
        lex = fillers
        self._slots: dict[str, Callable[[], str]] = {
            "jpos": lambda: self.judgement("pos"),
            "jneg": lambda: self.judgement("neg"),
            "jneu": lambda: self.judgement("neu"),
            "jmixed": self.mixed_judgement,
            "jnever": self.never_judgement,
            "jnotpos": self.not_positive_judgement,
            "pos": lambda: r(POS_STRONG + POS_MILD),
            "neg": lambda: r(NEG_STRONG + NEG_MILD),
            "neu": lambda: self.adjective("neu"),
            "apos": lambda: self.adjective("pos"),
            "aneg": lambda: self.adjective("neg"),
            "a_pos": lambda: with_article(r(POS_STRONG + POS_MILD)),
            "a_neg": lambda: with_article(r(NEG_STRONG + NEG_MILD)),
            "a_apos": lambda: with_article(self.adjective("pos")),
            "a_aneg": lambda: with_article(self.adjective("neg")),
            "a_neu": lambda: with_article(self.adjective("neu")),
            "aspect": lambda: "the " + r(ASPECTS_SINGULAR + ASPECTS_PLURAL),
            "feature": lambda: r(FEATURES),
            "film": lambda: r(FILM_WORDS),
            "filmgenre": lambda: r(FILM_WORDS) if rng.random() < 0.5 else r(GENRES)[0],
            "genre": lambda: r(GENRES)[0],
            "genres": lambda: r(GENRES)[1],
            "a_genre": lambda: with_article(r(GENRES)[0]),
            "tail": self.tail,
            "performer": lambda: self.fill(r(PERFORMERS)),
            "name": lambda: r(lex["name"]),
            "char": lambda: r(lex["char"]),
            "action": lambda: r(PLOT_ACTIONS),
            "place": lambda: r(PLACES),
            "era": lambda: r(ERAS),
            "runtime": lambda: r(RUNTIMES),
            "source": lambda: self.fill(r(SOURCES)),
            "topic": lambda: r(lex["topic"]),
            "ctx": lambda: r(lex["ctx"]),
            "watcher": lambda: r(WATCHERS),
            "intro": lambda: r(INTROS),
            "makerpair": lambda: r(lex["makerpair"]),
            "picked": lambda: r(lex["picked"]),
            "inthis": lambda: r(lex["inthis"]),
            "goinginto": lambda: r(lex["goinginto"]),
            "ordinal": lambda: r(ORDINALS),
            "span": lambda: r(SPANS),
            "cmp": lambda: self.fill(r(COMPARISONS)),
            "aud": lambda: self.fill(r(AUDIENCES)),
            "expect": lambda: self.fill(r(EXPECTATIONS)),
            "posverb": lambda: r(POS_VERBS),
            "negverb": lambda: r(NEG_VERBS),
            "posfeel": lambda: r(POS_FEELINGS),
            "negfeel": lambda: r(NEG_FEELINGS),
            "supos": lambda: r(POS_SUPERLATIVES),
            "suneg": lambda: r(NEG_SUPERLATIVES),
            "compos": lambda: r(POS_COMPARATIVES),
            "comneg": lambda: r(NEG_COMPARATIVES),
            "recommend": lambda: r(RECOMMEND),
            "posthat": lambda: r(POS_THAT),
            "negthat": lambda: r(NEG_THAT),
            "mixthat": lambda: r(MIX_THAT),
            "posif": lambda: r(POS_IF),
            "letdown": lambda: r(["disappointed", "bored", "annoyed", "frustrated"]),
            "skipit": lambda: r(SKIP_IT),
            "waste": lambda: r(WASTES),
            "numpos": lambda: r(["eight", "nine", "ten"]),
            "numneg": lambda: r(["one", "two", "three"]),
            "numneu": lambda: r(["five", "six"]),
        }

    # -- slot helpers ------------------------------------------------------
    def fill(self, template: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.slot(m.group(1)), template)

    def slot(self, name: str) -> str:
        return self._slots[name]()

    def subject(self) -> tuple[str, str]:
        """A ``the <aspect>`` subject and a linking verb that agrees with it."""
        if self.rng.random() < 0.75:
            return "the " + self.rng.choice(ASPECTS_SINGULAR), self.rng.choice(LINK_SINGULAR)
        return "the " + self.rng.choice(ASPECTS_PLURAL), self.rng.choice(LINK_PLURAL)

    def adjective(self, polarity: str) -> str:
        """An adjective of the polarity with an intensity-matched adverb."""
        r = self.rng
        if polarity == "neu":
            return join_adv(r.choice(ADV_NEUTRAL), r.choice(NEUTRAL_ADJ))
        strong = r.random() < 0.45
        if polarity == "pos":
            if strong:
                return join_adv(r.choice(ADV_STRONG), r.choice(POS_STRONG))
            return join_adv(r.choice(ADV_MILD_POS), r.choice(POS_MILD))
        if strong:
            return join_adv(r.choice(ADV_STRONG), r.choice(NEG_STRONG))
        return join_adv(r.choice(ADV_MILD_NEG), r.choice(NEG_MILD))

    def judgement(self, polarity: str) -> str:
        subject, link = self.subject()
        return f"{subject} {link} {self.adjective(polarity)}"

    def mixed_judgement(self) -> str:
        subject, link = self.subject()
        pos, neg = self.rng.choice(POS_MILD), self.rng.choice(NEG_MILD)
        return self.rng.choice(
            [
                f"{subject} {link} {pos} at times and {neg} at others",
                f"{subject} {link} {neg} at times and {pos} at others",
                f"{subject} {link} {neg} in places but {pos} overall",
                f"{subject} {link} {pos} in places but {neg} overall",
            ]
        )

    def be(self, subject: str) -> str:
        plural = subject.removeprefix("the ") in ASPECTS_PLURAL
        return self.rng.choice(["are", "were"] if plural else ["is", "was"])

    def never_judgement(self) -> str:
        subject, link = self.subject()
        link = link if link in {"is", "was", "are", "were"} else self.be(subject)
        return f"{subject} {link} never {self.rng.choice(NEG_MILD)}"

    def not_positive_judgement(self) -> str:
        subject, link = self.subject()
        link = link if link in {"is", "was", "are", "were"} else self.be(subject)
        end = self.rng.choice(["", " at all", " in the slightest", " for a second"])
        return f"{subject} {link} not {self.rng.choice(POS_MILD)}{end}"

    def tail(self) -> str:
        return self.fill(self.rng.choice(TAILS)) if self.rng.random() < 0.3 else ""

    # -- sentences and documents ------------------------------------------
    def clause(self, label: str) -> str:
        """A clause (after ``and``) that carries the document's sentiment."""
        r = self.rng.random()
        if label == "positive":
            if r < 0.6:
                return self.judgement("pos")
            if r < 0.85:
                return self.fill("I {posverb} {aspect}")
            return self.fill(
                self.rng.choice(["I {posverb} every minute of it", "it was {a_apos} surprise"])
            )
        if label == "negative":
            if r < 0.6:
                return self.judgement("neg")
            if r < 0.85:
                return self.fill("I {negverb} {aspect}")
            return self.fill(
                self.rng.choice(["I regretted it within ten minutes", "it was {a_aneg} mess"])
            )
        if r < 0.75:
            return self.judgement_clause("neutral")
        return self.fill(
            self.rng.choice(
                ["I {posverb} {aspect}, but {jneg}", "I {negverb} {aspect}, but {jpos}"]
            )
        )

    def judgement_clause(self, label: str) -> str:
        """A clause that starts with ``the <aspect>`` (follows ``<intro>,``)."""
        if label == "positive":
            return self.judgement("pos")
        if label == "negative":
            return self.judgement("neg")
        r = self.rng.random()
        if r < 0.35:
            return f"{self.judgement('pos')}, but {self.judgement('neg')}"
        if r < 0.7:
            return f"{self.judgement('neg')}, but {self.judgement('pos')}"
        if r < 0.85:
            return self.mixed_judgement()
        return self.judgement("neu")

    def predicate(self, label: str) -> str:
        """A verb phrase for a singular subject (the film, the story, ...)."""
        link = self.rng.choice(["is", "is", "was", "felt", "seemed", "turned out to be"])
        if label == "positive":
            frames = [
                "{link} {apos}",
                "is {a_apos} {genre}",
                "{link} {apos} from start to finish",
                "is worth every minute",
                "{link} {apos}, and {jpos}",
            ]
        elif label == "negative":
            frames = [
                "{link} {aneg}",
                "is {a_aneg} {genre}",
                "{link} {aneg} from start to finish",
                "is a waste of time",
                "{link} {aneg}, and {jneg}",
            ]
        else:
            frames = [
                "{link} {pos} in places but {neg} overall",
                "{link} {neg} at first but {pos} by the end",
                "is {a_neu} {genre}",
                "{link} {neu} and {neu}",
                "{link} {pos}, but {jneg}",
                "{link} {neg}, but {jpos}",
            ]
        return self.fill(self.rng.choice(frames).replace("{link}", link))

    def opener(self, label: str) -> str:
        template = self.rng.choice(OPENERS)
        template = template.replace("{clause}", "\x00C").replace("{jclause}", "\x00J")
        template = template.replace("{pred}", "\x00P")
        text = self.fill(template)
        text = text.replace("\x00C", self.clause(label))
        text = text.replace("\x00J", self.judgement_clause(label))
        return text.replace("\x00P", self.predicate(label))

    def sentence(self, label: str) -> str:
        if label == "positive":
            frames = POS_SENTENCES
        elif label == "negative":
            frames = NEG_SENTENCES
        else:
            frames = MIX_SENTENCES if self.rng.random() < 0.6 else FACT_SENTENCES
        # The last frame of POS/NEG is a concession ("bad, but good"): keep it rare.
        if label != "neutral" and self.rng.random() < 0.9:
            frames = frames[:-1]
        if label != "neutral" and self.rng.random() < 0.12:
            frames = FACT_SENTENCES
        return self.fill(self.rng.choice(frames))

    def document(self, label: str, min_words: int = 15, max_words: int = 45) -> str:
        for _ in range(100):
            n_sentences = self.rng.choices([1, 2, 3], weights=[0.2, 0.5, 0.3])[0]
            sentences = []
            for i in range(n_sentences):
                if i == 0 and self.rng.random() < 0.55:
                    text = self.opener(label)
                else:
                    text = self.sentence(label)
                text = re.sub(r"\s+", " ", text).replace(" .", ".").replace(" ,", ",")
                sentences.append(capitalize(text.strip()))
            doc = " ".join(sentences)
            if min_words <= len(doc.split()) <= max_words:
                self.sentences.update(sentences)
                return doc
        raise RuntimeError("could not generate a document of the requested length")


def build_corpus(
    rng: random.Random, n_docs: int, fillers: dict[str, list[str]]
) -> tuple[list[str], list[str], int]:
    """Generate ``n_docs`` reviews in equal thirds; return docs, labels, #sentences."""
    grammar = Grammar(rng, fillers)
    labels = [LABELS[i % 3] for i in range(n_docs)]
    rng.shuffle(labels)
    docs = [grammar.document(label) for label in labels]
    return docs, labels, len(grammar.sentences)
