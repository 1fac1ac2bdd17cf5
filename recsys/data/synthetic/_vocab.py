"""Per-topic vocabularies, so that TF-IDF on item texts recovers the latent topics.

The first topics use hand-written themes; any further topic gets pronounceable pseudo-words made
from syllables (unique to that topic). Review sentences use words a sentiment lexicon knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# category: (topic words, tags)
_THEMES: dict[str, tuple[str, str]] = {
    "jazz": (
        "saxophone trumpet swing bebop improvisation combo trio bassline groove melody standards "
        "ballad rhythm pianist drummer horn blues solo jam club",
        "smooth bebop live-recording vinyl instrumental",
    ),
    "cooking": (
        "recipe pasta garlic oven kitchen flavor sauce simmer spices baking dough chef vegetables "
        "roast skillet herbs dinner noodles broth dessert",
        "vegetarian quick-meals baking family-dinner spicy",
    ),
    "science-fiction": (
        "spaceship galaxy alien robot planet starship android wormhole colony cyborg orbit "
        "interstellar dystopia laser asteroid warp telepathy mutant cosmos nebula",
        "space-opera cyberpunk dystopian time-travel aliens",
    ),
    "gardening": (
        "garden seeds soil compost tomatoes roses pruning greenhouse mulch orchard blossom "
        "shrubs perennials watering seedlings harvest trellis lawn bulbs weeding",
        "organic houseplants vegetables flowers landscaping",
    ),
    "football": (
        "goal striker midfielder league stadium penalty keeper tackle derby transfer coach "
        "championship defender dribble offside referee kickoff supporters tactics cup",
        "premier-league world-cup highlights tactics transfers",
    ),
    "history": (
        "empire medieval dynasty revolution ancient pharaoh castle monarchy crusade treaty "
        "archaeology chronicle legion renaissance colonial kingdom siege emperor manuscript republic",
        "ancient-rome world-war biography medieval archaeology",
    ),
    "fitness": (
        "workout cardio strength squats muscles stretching endurance treadmill dumbbells "
        "interval protein yoga pilates sprint calories posture trainer kettlebell mobility core",
        "hiit weightlifting running yoga nutrition",
    ),
    "travel": (
        "passport airport beach itinerary backpacking hostel island journey luggage resort "
        "sightseeing hiking cruise museum village coastline train adventure souvenir mountains",
        "budget-travel europe asia road-trip city-break",
    ),
    "photography": (
        "camera lens aperture shutter exposure tripod portrait landscape lighting focus "
        "mirrorless telephoto composition darkroom negatives flash zoom sensor bokeh framing",
        "street-photography portraits gear editing film",
    ),
    "programming": (
        "python compiler algorithm database function debugging syntax framework variable "
        "recursion interface server deployment testing refactoring library memory thread kernel api",
        "open-source tutorial backend devops beginners",
    ),
    "finance": (
        "investing stocks dividends portfolio budget savings mortgage inflation bonds pension "
        "retirement taxes interest equity index crypto banking loans credit wealth",
        "personal-finance investing retirement markets budgeting",
    ),
    "horror": (
        "haunted ghost vampire zombie curse nightmare creepy graveyard monster demon witch "
        "slasher possession asylum mansion fog scream ritual cellar werewolf",
        "supernatural slasher gothic psychological creepy",
    ),
    "parenting": (
        "toddler newborn nursery diapers bedtime preschool tantrums siblings stroller lullaby "
        "homework playground daycare teething cuddles routines pediatrician crayons bath naps",
        "babies toddlers education family tips",
    ),
    "cars": (
        "engine horsepower sedan convertible torque gearbox mileage tyres turbo coupe dashboard "
        "suspension hybrid electric roadster garage brakes chassis motorsport pickup",
        "electric-cars reviews classic-cars motorsport maintenance",
    ),
    "classical-music": (
        "symphony orchestra violin concerto sonata opera conductor cello chamber baroque "
        "composer overture quartet soprano harpsichord requiem choir aria fugue philharmonic",
        "baroque romantic opera piano-solo orchestral",
    ),
    "wildlife": (
        "elephants safari savanna predators lions migration rainforest birds whales wolves "
        "habitat conservation reptiles jungle coral penguins tigers owls insects wetlands",
        "nature documentary conservation animals oceans",
    ),
    "fashion": (
        "dress runway denim sneakers jacket designer fabric couture handbag accessories "
        "tailoring silk boots catwalk wardrobe knitwear lookbook outfit style trends",
        "streetwear sustainable luxury vintage menswear",
    ),
    "board-games": (
        "dice cards strategy tokens boardgame cooperative deckbuilding tiles meeples expansion "
        "tabletop chess puzzle worker-placement dungeon campaign miniatures bluffing rules trivia",
        "strategy party-games family-games solo cooperative",
    ),
    "comedy": (
        "sitcom jokes standup sketch laughter parody satire comedian punchline improv wit "
        "slapstick spoof prank hilarious banter blooper gags mockumentary skits",
        "stand-up sitcom satire romantic-comedy dark-comedy",
    ),
    "astronomy": (
        "telescope stargazing eclipse comet constellation supernova observatory meteor lunar "
        "exoplanets redshift blackhole pulsar quasar solstice equinox spectrum parallax astronaut",
        "night-sky space-exploration astrophysics telescopes cosmology",
    ),
}


def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split())


GENERIC_WORDS: tuple[str, ...] = _split(
    "the a with and of for new classic best complete edition guide series story essential "
    "collection volume ultimate little great modern deluxe special original part"
)
GENERIC_TAGS: tuple[str, ...] = ("bestseller", "new-release", "staff-pick", "award-winner", "trending")

POSITIVE_WORDS: tuple[str, ...] = _split(
    "great excellent amazing wonderful fantastic perfect brilliant superb awesome delightful"
)
NEGATIVE_WORDS: tuple[str, ...] = _split(
    "terrible awful boring disappointing bad horrible useless annoying dull dreadful"
)
NEUTRAL_WORDS: tuple[str, ...] = ("okay", "average", "decent", "ordinary", "fine")
OPENERS: tuple[str, ...] = ("really", "truly", "honestly", "simply", "quite")

_SYLLABLES: tuple[str, ...] = _split(
    "ka ri to ma ne lu vo sa mi tek dor vin pal zu ber gon fi la shi ro ta ve quo nix "
    "bra cle dra fro gle pri sto tri zen mor kal rin"
)


@dataclass(frozen=True)
class Topic:
    """The words of one latent topic."""

    category: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


def build_topics(n_topics: int, seed: int) -> list[Topic]:
    """``n_topics`` topics with disjoint vocabularies (hand-written themes first)."""
    topics = [
        Topic(category, tuple(words.split()), tuple(tags.split()))
        for category, (words, tags) in list(_THEMES.items())[:n_topics]
    ]
    rng = np.random.default_rng([seed, 0x70C])
    taken = {word for topic in topics for word in (*topic.words, *topic.tags, topic.category)}
    taken.update(GENERIC_WORDS)
    syllables = np.array(_SYLLABLES)

    def pseudo_word() -> str:
        # 3-4 syllables: over a million words, so 500 topics of 20 never run short.
        while True:
            word = "".join(syllables[rng.integers(0, len(syllables), size=int(rng.integers(3, 5)))])
            if word not in taken:
                taken.add(word)
                return word

    while len(topics) < n_topics:
        category = pseudo_word()
        words = tuple(pseudo_word() for _ in range(20))
        tags = tuple(f"{category}-{word}" for word in rng.choice(words, size=5, replace=False))
        topics.append(Topic(category, words, tags))
    return topics
