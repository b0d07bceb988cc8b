"""The synthetic review grammar's word lists: the lexicon the training corpus draws from, and
the held-out fillers only the bundled prompts use (data, read by `grammar` and `prompts`; one
lexicon, kept whole, so a reader sees every list a slot draws from in one place)."""

from __future__ import annotations

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
