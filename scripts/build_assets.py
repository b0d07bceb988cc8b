#!/usr/bin/env python
"""Build textgym's bundled default task assets, reproducibly, with one script.

The default task (continue a short movie-review opening, be rewarded by a
sentiment scorer) needs a small causal language model, its tokenizer and a set
of prompts.  Nothing can be downloaded at build or test time, so all of them are
built from scratch here:

1. a synthetic corpus of short English movie reviews (1-3 sentences, 15-45
   words) generated from a compositional grammar, with positive, negative and
   neutral/mixed reviews in equal thirds.  It lives in memory only (use
   ``--dump-corpus /tmp/...`` to inspect it) and is never written into the repo;
2. ``prompts.txt``: sentiment-neutral review openings that stop mid-sentence.
   They are built from *held-out* slot fillers: combinations of known words the
   corpus never uses (names, characters, topics, viewing contexts), genres and
   relatives in frames the corpus never puts them in, and opening phrases the
   corpus never uses at all.  Every prompt is checked to occur nowhere in the
   corpus (case-insensitive substring search) and to contain no word VADER
   scores, so the model has to generalise, not recite, and the continuation
   alone decides the sentiment;
3. a byte-level BPE tokenizer (``tokenizers``) with distinct ``<|bos|>``,
   ``<|endoftext|>`` (EOS) and ``<|pad|>`` tokens whose post-processor prepends
   ``<|bos|>`` to every encoded text, saved as a ``PreTrainedTokenizerFast``;
4. a tiny GPT-2 (about 2.3M parameters) trained on ``<|bos|> review
   <|endoftext|>`` documents packed into 128-token blocks, under a wall-clock
   budget on CPU;
5. ``REPORT.json``: corpus statistics, VADER class means, held-out perplexity
   and sampled continuations of the bundled prompts with their VADER scores.

Output layout (``--out``, default ``textgym/assets``)::

    model/      config.json, generation_config.json, model.safetensors,
                tokenizer.json, tokenizer_config.json (+ special_tokens_map.json)
    prompts.txt
    REPORT.json

The corpus, prompts and tokenizer depend only on ``--seed`` (and the sizes) and
are rebuilt byte for byte.  Training stops after ``--minutes`` of wall-clock
time, with the cosine learning-rate schedule driven by elapsed time, so the
number of steps (recorded in ``REPORT.json``) and hence the weights depend on
the machine's speed.  ``--steps N`` instead trains exactly N steps with a
step-driven schedule, which makes the weights bit-reproducible on CPU for the
same seed and thread count.

Usage::

    python scripts/build_assets.py                      # full build, ~15 min
    python scripts/build_assets.py --minutes 1 --out /tmp/assets   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
LABELS = ("positive", "negative", "neutral")

# ---------------------------------------------------------------------------
# Grammar lexicon used by the training corpus.
# ---------------------------------------------------------------------------
# The word lists are kept compact on purpose.
# fmt: off

FILM_WORDS = ["film", "movie", "picture"]

# (singular, plural)
GENRES = [
    ("thriller", "thrillers"),
    ("comedy", "comedies"),
    ("horror film", "horror films"),
    ("romantic comedy", "romantic comedies"),
    ("documentary", "documentaries"),
    ("animated film", "animated films"),
    ("war movie", "war movies"),
    ("science fiction film", "science fiction films"),
    ("mystery", "mysteries"),
    ("crime drama", "crime dramas"),
    ("period piece", "period pieces"),
    ("superhero movie", "superhero movies"),
    ("family film", "family films"),
    ("sequel", "sequels"),
    ("remake", "remakes"),
    ("biopic", "biopics"),
    ("drama", "dramas"),
    ("fantasy adventure", "fantasy adventures"),
    ("spy thriller", "spy thrillers"),
    ("coming-of-age story", "coming-of-age stories"),
    ("sports drama", "sports dramas"),
    ("ghost story", "ghost stories"),
    ("action movie", "action movies"),
    ("indie drama", "indie dramas"),
    ("satire", "satires"),
    ("martial arts film", "martial arts films"),
    ("detective story", "detective stories"),
    ("teen comedy", "teen comedies"),
    ("submarine movie", "submarine movies"),
    ("family saga", "family sagas"),
    ("western", "westerns"),
    ("musical", "musicals"),
    ("heist movie", "heist movies"),
    ("road movie", "road movies"),
    ("courtroom drama", "courtroom dramas"),
    ("space opera", "space operas"),
    ("political drama", "political dramas"),
    ("monster movie", "monster movies"),
]

ASPECTS_SINGULAR = [
    "acting", "plot", "soundtrack", "score", "cinematography", "dialogue",
    "script", "director's pacing", "second half", "first act", "ending",
    "opening scene", "lead performance", "supporting cast", "editing",
    "camera work", "set design", "story", "humor", "chemistry between the leads",
    "villain", "final twist", "climax", "lighting", "screenplay", "pacing",
    "third act", "theme song", "romance subplot", "voice acting", "animation",
    "sound design", "character development", "world building", "tone",
    "premise", "middle section", "final scene", "main character",
    "central mystery", "production design", "opening sequence", "car chase",
    "finale", "backstory", "narration", "young cast", "writing", "direction",
    "title sequence", "atmosphere", "hero's arc", "last twenty minutes",
    "big reveal", "love triangle", "mother's storyline",
]
ASPECTS_PLURAL = [
    "action scenes", "jokes", "special effects", "visual effects", "costumes",
    "fight scenes", "performances", "songs", "characters", "flashbacks",
    "landscapes", "dance numbers", "battle scenes", "side characters",
    "plot twists", "quiet moments", "set pieces", "dream sequences",
    "chase scenes", "villain's scenes", "family scenes", "courtroom scenes",
]
# Singular countable nouns that read well after "a <adjective>".
FEATURES = [
    "soundtrack", "score", "script", "ending", "opening scene", "premise",
    "villain", "twist", "climax", "cast", "story", "central mystery",
    "visual style", "sense of humor", "supporting cast", "final act", "message",
    "lead performance", "setting", "theme song", "hero",
]

LINK_SINGULAR = [
    "is", "is", "was", "was", "felt", "seemed", "turned out to be",
    "came across as", "remained", "proved",
]
LINK_PLURAL = [
    "are", "are", "were", "were", "felt", "seemed", "turned out to be",
    "came across as", "remained",
]

POS_STRONG = [
    "brilliant", "stunning", "superb", "outstanding", "wonderful", "magnificent",
    "excellent", "fantastic", "gorgeous", "masterful", "breathtaking",
    "terrific", "delightful", "amazing", "beautiful", "extraordinary",
    "marvelous", "spectacular", "exceptional", "perfect",
]
POS_MILD = [
    "good", "solid", "nice", "pleasant", "charming", "enjoyable", "decent",
    "likable", "fun", "engaging", "clever", "sweet", "lovely", "warm", "fresh",
    "funny", "heartfelt", "touching", "gripping", "witty", "entertaining",
    "satisfying", "elegant", "smart", "thoughtful", "impressive", "lively",
    "confident", "inventive", "moving",
]
NEG_STRONG = [
    "terrible", "awful", "horrible", "dreadful", "atrocious", "painful",
    "disastrous", "abysmal", "pathetic", "miserable", "ugly", "stupid",
    "embarrassing", "insulting", "hopeless", "unwatchable", "worthless",
    "horrendous", "dismal", "lousy", "idiotic", "infuriating",
]
NEG_MILD = [
    "bad", "weak", "dull", "boring", "bland", "flat", "clumsy", "tedious",
    "messy", "lazy", "forgettable", "disappointing", "annoying", "confusing",
    "pointless", "repetitive", "poor", "lame", "ridiculous", "tired", "dumb",
    "useless", "irritating", "frustrating", "unpleasant", "mindless", "forced",
    "dreary", "incompetent", "predictable",
]
NEUTRAL_ADJ = [
    "long", "quiet", "slow", "loud", "simple", "unusual", "familiar",
    "straightforward", "old-fashioned", "conventional", "modest", "understated",
    "low-key", "traditional", "minimal", "restrained", "dark", "talky",
    "stylized", "deliberate", "sparse", "classical", "steady", "measured",
    "muted", "brief", "short", "lengthy", "episodic", "plain", "small-scale",
    "slow-moving", "busy",
]

ADV_STRONG = [
    "", "", "", "really", "very", "truly", "incredibly", "absolutely",
    "genuinely", "remarkably", "simply", "completely", "thoroughly",
    "extremely", "utterly",
]
ADV_MILD_POS = [
    "", "", "", "quite", "rather", "fairly", "mostly", "surprisingly",
    "consistently", "pretty", "genuinely", "really", "very",
]
ADV_MILD_NEG = [
    "", "", "", "quite", "rather", "fairly", "mostly", "a bit", "a little",
    "somewhat", "consistently", "really", "very", "far too",
]
ADV_NEUTRAL = ["", "", "", "fairly", "rather", "very", "mostly", "a little", "quite"]

TAILS = [
    " from start to finish", " for most of the running time",
    ", especially in the second half", ", at least for me", " throughout",
    " in almost every scene", " for {a_genre}", ", if you ask me",
    " by the standards of {genres}", ", as far as I can tell",
    " in the first hour", " on the big screen", ", even on a second viewing",
    ", oddly enough", " in the final act",
]

# People, topics and viewing contexts are compositional: ``split_fillers`` holds
# out a seeded share of the combinations for the prompts, so a prompt is made of
# words the model knows, in a combination it has never seen.
FIRST_NAMES = [
    "Anna", "Marco", "Ruth", "David", "Sofia", "Tom", "Nina", "James", "Lena",
    "Omar", "Claire", "Kenji", "Paul", "Isabel", "Victor", "Greta", "Samuel",
    "Hannah", "Leo", "Ingrid", "Maya", "Tobias", "Elena", "Daniel",
]
LAST_NAMES = [
    "Keller", "Bellini", "Okafor", "Lindgren", "Marquez", "Hadley", "Petrova",
    "Whitaker", "Fischer", "Haddad", "Dubois", "Mori", "Brennan", "Costa",
    "Hale", "Olsen", "Reyes", "Marchetti", "Berg", "Wren", "Achebe", "Ferraro",
    "Dahl", "Novak",
]
CHARACTER_ADJS = [
    "retired", "young", "elderly", "aging", "former", "famous", "single",
    "rookie", "old", "teenage", "quiet", "married", "small-town", "local",
]
CHARACTER_NOUNS = [
    "detective", "teacher", "astronaut", "mayor", "chef", "pianist", "boxer",
    "soldier", "writer", "taxi driver", "magician", "librarian", "nurse",
    "fisherman", "coach", "bank clerk", "photographer", "police officer",
    "farmer", "dancer", "sailor", "accountant", "salesman", "doctor",
    "architect", "postman", "janitor", "lighthouse keeper", "museum guard",
    "night watchman",
]
GROUP_CHARACTERS = [
    "two brothers", "three old friends", "a married couple", "two sisters",
    "a group of students", "a family of five",
]
PLOT_ACTIONS = [
    "moves to a new city", "returns home after many years",
    "takes a job at a hotel", "travels across the country",
    "tries to finish one last job", "opens a small restaurant",
    "joins a local choir", "inherits an old house", "plans a wedding",
    "starts a new school year", "sails around the world",
    "enters a cooking contest", "meets a stranger on a train",
    "investigates a strange signal", "coaches a school football team",
    "goes back to college", "runs a family bakery",
    "prepares for a big concert", "spends a summer on a farm",
    "writes letters to an old friend", "learns to fly a plane",
    "buys a run-down cinema",
]
PLACES = [
    "a small coastal town", "Chicago", "rural Ireland",
    "a crowded apartment block", "a mining village", "Tokyo", "a space station",
    "the Scottish highlands", "suburban Ohio", "a boarding school",
    "a fishing village in Norway", "Paris", "a desert town", "a big hospital",
    "a New York diner", "a mountain village", "Berlin", "a farm in Iowa",
    "Mexico City", "an island off the coast of Maine",
]
ERAS = [
    "", "", "in the nineteen sixties", "in the near future", "in the early eighties",
    "at the turn of the century", "over a single weekend",
    "during one long summer", "in the present day", "in the nineteen twenties",
    "over the course of a year",
]
RUNTIMES = [
    "about ninety minutes", "just under two hours", "almost three hours",
    "a little over two hours", "barely eighty minutes",
    "about an hour and a half", "close to two and a half hours",
]
SOURCES = [
    "a novel by {name}", "a true story", "a stage play", "a comic book",
    "a short story", "an old radio drama", "a children's book",
    "a video game", "a magazine article",
]
TOPIC_HEADS = [
    "a small", "an old", "a family", "a local", "a school", "a traveling",
    "a tiny", "a struggling",
]
TOPIC_NOUNS = [
    "bakery", "theater company", "band", "circus", "museum", "hotel",
    "radio station", "farm", "bookshop", "choir", "restaurant", "chess club",
    "football team", "newspaper", "ferry", "garage",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAY_PARTS = ["morning", "afternoon", "evening", "night"]
COMPANIONS = [
    "sister", "brother", "wife", "husband", "best friend", "son", "daughter",
    "dad", "mom", "partner", "grandmother", "grandfather", "aunt", "uncle",
    "roommate", "cousins", "neighbours", "students", "kids", "parents",
    "book club", "coworkers",
]
VIEWING_PLACES = [
    "last night", "last weekend", "yesterday afternoon", "at the cinema",
    "on television", "at home", "on opening night", "at a late show",
    "for a second time", "on a streaming service", "after dinner",
    "at a small local cinema", "on my laptop", "on my phone", "on a plane",
    "on a train", "at a matinee", "at a drive-in", "in a hotel room",
    "at an outdoor screening", "during lunch", "after work", "before bed",
    "this afternoon", "in an old cinema downtown", "at a film festival",
]
WATCHERS = [
    "I watched", "I saw", "We watched", "We saw", "I caught",
    "My wife and I watched", "My husband and I saw", "I rented",
]
INTROS = [
    "From the first minute", "Right from the opening credits",
    "By the end of the first act", "Within the first ten minutes",
    "From beginning to end", "Throughout the whole film",
    "For most of the running time", "In the first half", "By the final scene",
    "Early on", "As the story goes on", "On the whole", "For the most part",
    "In the end",
]
MAKERS = ["director", "writer", "studio", "screenwriter", "filmmaker", "producer"]
MAKER_MODS = [
    "latest", "long-awaited", "second", "third", "first", "big-budget", "small",
    "new", "newest", "recent", "fourth", "fifth",
]
RELATIVES = [
    "sister", "brother", "wife", "husband", "best friend", "son", "daughter",
    "dad", "mom", "girlfriend", "boyfriend", "partner", "grandfather", "aunt",
    "uncle", "roommate", "neighbour", "cousin", "coworker", "nephew", "niece",
    "landlord",
]
PERFORMERS = [
    "the lead actress", "the lead actor", "the young star", "the veteran actor",
    "the child actor", "{name}", "the comedian in the lead",
    "the actress playing the mother", "the newcomer", "the whole cast",
]
ORDINALS = ["second", "third", "final"]
SPANS = [
    "this year", "in a long time", "in years", "in the last decade",
    "since I was a kid", "this summer", "in recent memory", "all year",
]
COMPARISONS = [
    "the first film", "the book", "the director's last film",
    "most recent blockbusters", "the first two films in the series",
    "anything else out right now", "the trailer suggested", "I expected",
    "the previous sequel", "the television series it is based on",
    "most {genres}",
]
AUDIENCES = [
    "fans of {genres}", "fans of the book",
    "families with older children", "my family", "film students",
    "anyone with two hours to spare", "fans of {name}",
    "people who grew up with the first film", "anyone looking for {a_genre}",
]
EXPECTATIONS = [
    "very little", "a lot", "a simple story", "something like the first film",
    "a light evening", "another sequel", "big things", "nothing in particular",
    "a typical {genre}",
]

POS_VERBS = [
    "loved", "adored", "really enjoyed", "admired", "was impressed by",
    "was charmed by", "was won over by", "could not get enough of",
    "fell in love with", "was delighted by", "appreciated", "liked",
    "enjoyed",
]
NEG_VERBS = [
    "hated", "could not stand", "was bored by", "was annoyed by",
    "was disappointed by", "got tired of", "disliked", "was irritated by",
    "was put off by", "struggled to sit through",
]
POS_FEELINGS = [
    "smiling", "completely charmed", "grinning from ear to ear",
    "in happy tears", "delighted", "cheering", "thrilled", "glad I went",
    "ready to watch it again",
]
NEG_FEELINGS = [
    "bored stiff", "checking my watch", "half asleep", "annoyed", "angry",
    "fed up", "desperate for it to end", "sorry I went", "tired and irritated",
]
POS_SUPERLATIVES = [
    "best", "finest", "most enjoyable", "most beautiful", "funniest",
    "smartest", "most charming", "most original",
]
NEG_SUPERLATIVES = [
    "worst", "most boring", "dullest", "most irritating", "most annoying",
    "most frustrating", "weakest", "most disappointing",
]
POS_COMPARATIVES = [
    "better", "smarter", "funnier", "more moving", "more beautiful",
    "far better", "much more charming", "more exciting",
]
NEG_COMPARATIVES = [
    "worse", "duller", "much worse", "more boring", "much duller",
    "more frustrating", "more annoying", "even worse",
]
RECOMMEND = [
    "recommend", "happily recommend", "gladly recommend", "strongly recommend",
    "definitely recommend",
]
POS_THAT = [
    "makes you smile", "stays with you for days",
    "reminds you why you love movies", "you want to watch again right away",
    "deserves a much bigger audience",
]
NEG_THAT = [
    "makes you check your watch", "you forget on the way home",
    "wastes its whole cast", "nobody asked for", "feels much longer than it is",
]
MIX_THAT = [
    "splits the audience right down the middle",
    "works in some places and not in others", "does what you would expect",
    "never quite decides what it wants to be", "has a few good ideas and a few bad ones",
]
POS_IF = ["you will love this one", "do not miss it", "this one is for you"]
SKIP_IT = [
    "skip this one", "stay home", "watch something else", "read the book instead",
]
WASTES = ["time", "talent", "a good cast", "two hours", "money"]

# Sentence frames.  ``{slot}`` is filled by ``Grammar.slot``.
POS_SENTENCES = [
    "{jpos}{tail}.",
    "{jpos}, and {jpos}.",
    "{jpos} and {jpos}{tail}.",
    "I {posverb} {aspect}{tail}.",
    "I {posverb} {aspect}, and {jpos}.",
    "{performer} gives {a_apos} performance as {char}.",
    "It is one of the {supos} {genres} I have seen {span}.",
    "It is {compos} than {cmp}.",
    "I would {recommend} it to {aud}.",
    "It is {a_apos} {genre} with {a_pos} {feature}.",
    "The story of {char} who {action} is {apos}.",
    "I give it {numpos} out of ten.",
    "By the end I was {posfeel}.",
    "{jnever}.",
    "The director has made {a_apos} {genre}{tail}.",
    "Everything about it was {pos}, from {aspect} to {aspect}.",
    "{jpos}, which is rare for {a_genre}.",
    "It is the kind of {genre} that {posthat}.",
    "If you like {genres}, {posif}.",
    "What {a_apos} {genre}!",
    "{jneg}, but {jpos}.",
]
NEG_SENTENCES = [
    "{jneg}{tail}.",
    "{jneg}, and {jneg}.",
    "{jneg} and {jneg}{tail}.",
    "I {negverb} {aspect}{tail}.",
    "I {negverb} {aspect}, and {jneg}.",
    "{performer} gives {a_aneg} performance as {char}.",
    "It is one of the {suneg} {genres} I have seen {span}.",
    "It is {comneg} than {cmp}.",
    "I would not recommend it to {aud}.",
    "Take my advice and {skipit}.",
    "It is {a_aneg} {genre} with {a_neg} {feature}.",
    "The story of {char} who {action} is {aneg}.",
    "I give it {numneg} out of ten.",
    "By the end I was {negfeel}.",
    "{jnotpos}.",
    "The director has made {a_aneg} {genre}{tail}.",
    "Everything about it was {neg}, from {aspect} to {aspect}.",
    "{jneg}, even for {a_genre}.",
    "It is the kind of {genre} that {negthat}.",
    "Even fans of {genres} will be {letdown}.",
    "What a waste of {waste}.",
    "{jpos}, but {jneg}.",
]
MIX_SENTENCES = [
    "{jpos}, but {jneg}.",
    "{jneg}, but {jpos}.",
    "Although {jpos}, {jneg}.",
    "Although {jneg}, {jpos}.",
    "{jpos}, while {jneg}.",
    "{jmixed}.",
    "It is neither {pos} nor {neg}.",
    "It is {a_neu} {genre} that {mixthat}.",
    "Fans of {genres} will know what to expect.",
    "I give it {numneu} out of ten.",
    "{jneu}{tail}.",
    "{jneu}, and {jneu}.",
    "Parts of it work and parts of it do not.",
    "I am still not sure what I think of it.",
    "It has {a_pos} {feature} and {a_neg} {feature}.",
    "Your opinion will depend on how you feel about {genres}.",
    "I {posverb} {aspect}, but {jneg}.",
    "I {negverb} {aspect}, but {jpos}.",
]
FACT_SENTENCES = [
    "The {film} runs {runtime}.",
    "It is set in {place} {era}.",
    "The story follows {char} who {action}.",
    "It is {a_genre} about {topic}.",
    "It was directed by {name} and stars {name}.",
    "I saw it {ctx}.",
    "It is the {ordinal} {film} in the series.",
    "It is based on {source}.",
    "The {film} was shot in {place}.",
    "{name} stars as {char} who {action}.",
    "Most of the story takes place in {place} {era}.",
]
# First sentences: the shapes the bundled prompts also take (with other fillers).
OPENERS = [
    "{watcher} this {film} {ctx} and {clause}.",
    "The {makerpair} {filmgenre} {pred}.",
    "{intro}, {jclause}.",
    "This {genre} about {topic} {pred}.",
    "In this {inthis}, {jclause}.",
    "Starring {name}, this {genre} {pred}.",
    "The story of {char} {pred}.",
    "Going into this {goinginto}, I expected {expect}, and {clause}.",
    "My {picked} picked this {film} and {clause}.",
    "{name}'s performance in this {film} {pred}.",
]

# ---------------------------------------------------------------------------
# Held-out fillers: used only by the bundled prompts, never by the corpus.
# ---------------------------------------------------------------------------

# Openings of the prompts that the corpus never uses at all.
HELD_INTROS = [
    "From the very first scene", "Right from the start", "By the halfway point",
    "Halfway through the film", "Once the story gets going",
    "In the opening minutes", "After the first scene", "From the first shot",
    "By the time the credits roll", "As soon as it starts", "Early in the film",
    "Twenty minutes in", "Before long", "By the second act", "Near the end",
    "Halfway through the movie", "From the opening shot", "After the opening titles",
]
HELD_WATCHERS = ["I watched this", "I saw this", "We watched this", "We saw this"]
# Fillers that the corpus uses, but never in the frame the prompt puts them in.
HELD_PICKED_RELATIVES = [
    "grandfather", "aunt", "uncle", "roommate", "neighbour", "cousin",
    "coworker", "nephew", "niece", "landlord",
]
HELD_IN_THIS_GENRES = [
    "western", "musical", "heist movie", "road movie", "documentary", "biopic",
    "mystery", "satire",
]
HELD_GOING_INTO_GENRES = [
    "courtroom drama", "space opera", "political drama", "monster movie",
    "sequel", "remake", "family film", "period piece",
]
PROMPT_FRAMES: list[tuple[str, int]] = [
    ("{hwatcher} {hfilm} {ctx} and", 70),
    ("The {makerpair} {hfilm}", 30),
    ("{hintro}, the", 18),
    ("This {genre} about {topic}", 45),
    ("My {picked} picked this {hfilm} and", 18),
    ("In this {inthis}, the", 8),
    ("Starring {name}, this {genre}", 45),
    ("The story of {char}", 25),
    ("Going into this {goinginto}, I", 8),
    ("{name}'s performance in this {hfilm}", 20),
]

# fmt: on


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


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------


def prompt_candidates(frame: str, held: dict[str, list[str]]) -> list[str]:
    """Every filling of a prompt frame with held-out fillers (and any genre)."""
    choices: dict[str, list[str]] = {
        **held,
        "hwatcher": HELD_WATCHERS,
        "hfilm": ["film", "movie"],
        "hintro": HELD_INTROS,
        "genre": [g for g, _ in GENRES],
    }
    out = [frame]
    for name in re.findall(r"\{(\w+)\}", frame):
        out = [t.replace("{" + name + "}", v, 1) for t in out for v in choices[name]]
    return out


def build_prompts(
    rng: random.Random,
    docs: Sequence[str],
    held: dict[str, list[str]],
    analyzer,
    min_count: int = 250,
) -> tuple[list[str], dict]:
    """Neutral, held-out review openings that occur nowhere in ``docs``.

    Each frame of ``PROMPT_FRAMES`` is filled with held-out fillers, and a filling
    is kept only if it has 3-8 words, VADER finds nothing but neutral words in it,
    and it is not a (case-insensitive) substring of any corpus document.
    """
    haystack = "\n".join(docs).lower()
    prompts: list[str] = []
    stats = {"candidates": 0, "dropped_in_corpus": 0, "dropped_vader": 0, "dropped_length": 0}
    for frame, quota in PROMPT_FRAMES:
        candidates = sorted(set(prompt_candidates(frame, held)))
        rng.shuffle(candidates)
        kept = 0
        for text in candidates:
            if kept >= quota:
                break
            stats["candidates"] += 1
            if not 3 <= len(text.split()) <= 8:
                stats["dropped_length"] += 1
                continue
            # Not just a zero compound (which can hide cancelling words): no word
            # in the opening may carry any VADER sentiment at all.
            if analyzer.polarity_scores(text)["neu"] != 1.0:
                stats["dropped_vader"] += 1
                continue
            if text.lower() in haystack:
                stats["dropped_in_corpus"] += 1
                continue
            prompts.append(text)
            kept += 1
    rng.shuffle(prompts)
    if len(prompts) < min_count:
        raise RuntimeError(f"only {len(prompts)} prompts survived the filters")
    stats["kept"] = len(prompts)
    return prompts, stats


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int):
    """Byte-level BPE with distinct BOS/EOS/PAD; encoding prepends BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
        # GPT-2 embeds token_type_ids with the word embeddings: never return them
        # (transformers 4.x would by default).
        model_input_names=["input_ids", "attention_mask"],
    )


# ---------------------------------------------------------------------------
# Model training
# ---------------------------------------------------------------------------


def encode_docs(tokenizer, docs: Sequence[str], max_length: int) -> list[list[int]]:
    """``<|bos|> doc <|endoftext|>`` token ids (the post-processor adds BOS)."""
    encodings = tokenizer.backend_tokenizer.encode_batch(list(docs))
    eos = tokenizer.eos_token_id
    return [[*enc.ids[: max_length - 1], eos] for enc in encodings]


def pack_blocks(seqs: Sequence[list[int]], block: int, pad_id: int, bos_id: int):
    """Greedily pack whole documents into ``block``-token rows (right padded).

    Returns ``(input_ids, labels)``; labels are -100 on padding and on BOS
    (which is never a prediction target: every text starts with it).
    """
    import torch

    rows: list[list[int]] = []
    current: list[int] = []
    for seq in seqs:
        if current and len(current) + len(seq) > block:
            rows.append(current)
            current = []
        current = current + seq
    if current:
        rows.append(current)
    input_ids = torch.full((len(rows), block), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    labels = input_ids.clone()
    labels[(input_ids == pad_id) | (input_ids == bos_id)] = -100
    return input_ids, labels


def lr_at(progress: float, step: int, peak: float, warmup: int, floor: float) -> float:
    """Linear warmup (in steps), then cosine decay to ``floor * peak`` (in progress)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return peak * (floor + (1.0 - floor) * cosine)


def train_model(model, input_ids, labels, args) -> dict:
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    generator = torch.Generator().manual_seed(args.seed)
    n_rows = input_ids.shape[0]
    order = torch.randperm(n_rows, generator=generator)
    cursor, epoch = 0, 0
    budget = args.minutes * 60.0
    start = time.time()
    step, tokens, ema = 0, 0, None
    model.train()
    while True:
        elapsed = time.time() - start
        progress = step / args.steps if args.steps else elapsed / budget
        if progress >= 1.0:
            break
        if cursor + args.batch_size > n_rows:
            order = torch.randperm(n_rows, generator=generator)
            cursor, epoch = 0, epoch + 1
        idx = order[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        lr = lr_at(progress, step, args.lr, args.warmup, args.lr_floor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # An all-ones mask is enough (and keeps the fast causal path): padding only
        # trails each row, so causal attention never lets a real token see it, and
        # its labels are -100.
        batch = input_ids[idx]
        loss = model(
            input_ids=batch, attention_mask=torch.ones_like(batch), labels=labels[idx]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens += int((labels[idx] != -100).sum())
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % args.log_every == 0:
            rate = tokens / (time.time() - start)
            print(
                f"step {step:5d}  loss {ema:.3f}  lr {lr:.2e}  epoch {epoch}  "
                f"{time.time() - start:6.0f}s  {rate:,.0f} tok/s",
                flush=True,
            )
    seconds = time.time() - start
    return {
        "steps": step,
        "target_tokens": tokens,
        "epochs": round(epoch + cursor / n_rows, 3),
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / max(seconds, 1e-9)),
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
    }


def heldout_perplexity(model, seqs: Sequence[list[int]], pad_id: int, batch_size: int = 64):
    """Per-token perplexity over held-out docs (each scored on its own)."""
    import torch

    model.eval()
    total_nll, total_tokens = 0.0, 0
    ordered = sorted(seqs, key=len)
    with torch.no_grad():
        for i in range(0, len(ordered), batch_size):
            batch = ordered[i : i + batch_size]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, s in enumerate(batch):
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += float(nll)
            total_tokens += int((targets != -100).sum())
    return math.exp(total_nll / total_tokens), total_tokens


# ---------------------------------------------------------------------------
# Evaluation of the saved assets
# ---------------------------------------------------------------------------


def sample_continuations(model, tokenizer, prompts, per_prompt, max_new_tokens, seed):
    """Pure ancestral samples (temperature 1, no top-k/top-p) of each prompt."""
    import torch

    torch.manual_seed(seed)
    model.eval()
    out: list[tuple[str, str]] = []
    with torch.no_grad():
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=per_prompt,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            n = enc["input_ids"].shape[1]
            for row in generated:
                out.append((prompt, tokenizer.decode(row[n:], skip_special_tokens=True)))
    return out


def vader_summary(scores: Sequence[float]) -> dict:
    n = max(len(scores), 1)
    return {
        "n": len(scores),
        "mean": round(sum(scores) / n, 4),
        "share_positive": round(sum(s > 0.05 for s in scores) / n, 4),
        "share_negative": round(sum(s < -0.05 for s in scores) / n, 4),
    }


def check_saved_assets(model_dir: Path) -> tuple[object, object, dict]:
    """Reload the saved model/tokenizer with the Auto classes and sanity-check them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer("The movie")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id, ids
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    text = "The acting was wonderful, but the plot felt thin."
    round_trip = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    assert round_trip == text, round_trip
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    return (
        model,
        tokenizer,
        {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "example_encoding_of_The_movie": ids,
        },
    )


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "textgym" / "assets",
        help="output folder (default: textgym/assets in this checkout)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--minutes",
        type=float,
        default=12.0,
        help="wall-clock training budget in minutes (default 12)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="train exactly this many steps instead of a time budget",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--n-docs", type=int, default=100_000)
    p.add_argument("--heldout-frac", type=float, default=0.02)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="resid/embd/attn dropout (default 0: training is under one epoch)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="rows of --block-size tokens")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-floor", type=float, default=0.1, help="final lr as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=60, help="warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--samples-per-prompt", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument(
        "--dump-corpus",
        type=Path,
        default=None,
        help="also write the corpus (label<TAB>text) here, e.g. under /tmp",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch
    import transformers
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    analyzer = SentimentIntensityAnalyzer()
    out = args.out.resolve()
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)

    # 1. corpus ---------------------------------------------------------------
    train_fillers, held_fillers = split_fillers(args.seed)
    docs, labels, n_sentences = build_corpus(rng, args.n_docs, train_fillers)
    if args.dump_corpus:
        args.dump_corpus.write_text(
            "".join(f"{lab}\t{d}\n" for lab, d in zip(labels, docs, strict=True))
        )
    words = [len(d.split()) for d in docs]
    class_vader = {}
    for label in LABELS:
        scores = [
            analyzer.polarity_scores(d)["compound"]
            for d, lab in zip(docs, labels, strict=True)
            if lab == label
        ]
        class_vader[label] = vader_summary(scores)
    corpus_info = {
        "documents": len(docs),
        "distinct_documents": len(set(docs)),
        "distinct_sentences": n_sentences,
        "label_counts": {lab: labels.count(lab) for lab in LABELS},
        "words_per_doc": {
            "min": min(words),
            "mean": round(sum(words) / len(words), 2),
            "max": max(words),
        },
        "vader_by_class": class_vader,
        "examples": {
            lab: next(d for d, lb in zip(docs, labels, strict=True) if lb == lab) for lab in LABELS
        },
    }
    print(json.dumps(corpus_info, indent=2), flush=True)

    # 2. prompts ---------------------------------------------------------------
    prompts, prompt_stats = build_prompts(rng, docs, held_fillers, analyzer)
    (out / "prompts.txt").write_text("\n".join(prompts) + "\n")
    print(f"prompts: {prompt_stats}", flush=True)

    # 3. tokenizer -------------------------------------------------------------
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_heldout = max(1, round(len(docs) * args.heldout_frac))
    heldout_docs = [docs[i] for i in order[:n_heldout]]
    train_docs = [docs[i] for i in order[n_heldout:]]
    tokenizer = train_tokenizer(train_docs, args.vocab_size, args.block_size)
    tokenizer.save_pretrained(model_dir)
    # transformers 5 records its own class name ("TokenizersBackend"); the generic
    # name loads with both transformers 4.x and 5.x.
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    print(f"tokenizer: vocab {len(tokenizer)}", flush=True)

    # 4. model -----------------------------------------------------------------
    train_seqs = encode_docs(tokenizer, train_docs, args.block_size)
    heldout_seqs = encode_docs(tokenizer, heldout_docs, args.block_size)
    input_ids, target_ids = pack_blocks(
        train_seqs, args.block_size, tokenizer.pad_token_id, tokenizer.bos_token_id
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.block_size,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params:,} parameters; {input_ids.shape[0]:,} packed rows of "
        f"{args.block_size}; {sum(map(len, train_seqs)):,} train tokens",
        flush=True,
    )
    training = train_model(model, input_ids, target_ids, args)
    ppl, heldout_tokens = heldout_perplexity(model, heldout_seqs, tokenizer.pad_token_id)
    print(f"held-out perplexity {ppl:.3f} over {heldout_tokens:,} tokens", flush=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
    )
    model.save_pretrained(model_dir, safe_serialization=True)
    for path in model_dir.iterdir():
        path.chmod(0o644)  # safetensors may be written owner-only

    # 5. evaluate the saved assets ----------------------------------------------
    model, tokenizer, token_ids = check_saved_assets(model_dir)
    eval_prompts = prompts[: args.eval_prompts]
    samples = sample_continuations(
        model, tokenizer, eval_prompts, args.samples_per_prompt, args.max_new_tokens, args.seed
    )
    scores = [analyzer.polarity_scores(cont)["compound"] for _, cont in samples]
    shown = [
        {"prompt": p, "continuation": c, "vader": analyzer.polarity_scores(c)["compound"]}
        for p, c in samples[:: args.samples_per_prompt][:5]
    ]
    files = {f.name: f.stat().st_size for f in sorted(model_dir.iterdir()) if f.is_file()}
    report = {
        "command": "python scripts/build_assets.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in sorted(vars(args).items())
            if k not in {"out", "dump_corpus"}
        ),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "corpus": corpus_info,
        "prompts": {
            **prompt_stats,
            "file": "prompts.txt",
            "vader_all_neutral": all(analyzer.polarity_scores(p)["neu"] == 1.0 for p in prompts),
        },
        "tokenizer": {
            "vocab_size": len(tokenizer),
            "type": "byte-level BPE",
            "model_max_length": tokenizer.model_max_length,
            **token_ids,
        },
        "model": {
            "parameters": n_params,
            "n_embd": args.n_embd,
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_positions": args.block_size,
            "dropout": args.dropout,
            "files_bytes": files,
            "size_on_disk_bytes": sum(files.values()),
        },
        "training": {
            **training,
            "threads": args.threads,
            "batch_rows": args.batch_size,
            "block_size": args.block_size,
            "lr": args.lr,
            "warmup": args.warmup,
            "train_docs": len(train_docs),
            "heldout_docs": len(heldout_docs),
        },
        "heldout": {"perplexity": round(ppl, 4), "tokens": heldout_tokens},
        "reference_continuations": {
            "prompts": len(eval_prompts),
            "samples_per_prompt": args.samples_per_prompt,
            "max_new_tokens": args.max_new_tokens,
            "sampling": "temperature 1.0, no top-k/top-p",
            "vader_compound_of_continuation": vader_summary(scores),
            "examples": shown,
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    (out / "REPORT.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {k: report[k] for k in ("heldout", "reference_continuations", "model")}, indent=2
        )
    )
    return report


if __name__ == "__main__":
    main()
