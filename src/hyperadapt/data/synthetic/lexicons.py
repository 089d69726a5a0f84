"""Word lists and small tables: what the synthetic tasks draw their inputs from and look their answers up in.

Plain constants, nothing random. In the packed tables below, ``a:b`` is one entry and ``_`` stands for a
space inside it (``New_Delhi``). The order of every list and table is part of the data: the samplers draw
from them by position, so reordering one changes every instance of the tasks that use it.
"""

from __future__ import annotations


def _pairs(text: str) -> dict[str, str]:
    """``"a:b c:d"`` -> ``{"a": "b", "c": "d"}``; ``_`` stands for a space inside a name."""
    return {k.replace("_", " "): v.replace("_", " ") for k, v in (p.split(":") for p in text.split())}


def _groups(table: dict[str, str]) -> dict[str, str]:
    """``{"label": "item item"}`` -> ``{"item": "label"}``; ``_`` stands for a space inside an item."""
    return {item.replace("_", " "): label for label, items in table.items() for item in items.split()}


def _both_ways(pairs: dict[str, str]) -> dict[str, str]:
    """``{a: b}`` -> ``{a: b, b: a}`` (the forward pairs first)."""
    return {**pairs, **{v: k for k, v in pairs.items()}}


def _countries(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """``country:capital:continent`` rows -> (country -> capital, country -> continent)."""
    rows = [tuple(field.replace("_", " ") for field in row.split(":")) for row in text.split()]
    return ({country: capital for country, capital, _ in rows}, {country: continent for country, _, continent in rows})


# Words and phrases
ADJECTIVES: tuple[str, ...] = tuple(
    (
        "red blue green small big old new quiet happy bright dark soft warm cold fast slow tall heavy clean "
        "empty sweet round wild calm brave lucky gentle golden tiny huge funny rich sharp smooth loud young "
        "fresh busy"
    ).split()
)
NOUNS: tuple[str, ...] = tuple(
    (
        "apple table river house garden window bottle pencil chair cloud bread stone train flower mirror candle "
        "basket ladder pillow bridge forest island jacket kettle letter market needle paper rocket shadow spoon "
        "tower wagon blanket button carpet castle cookie engine feather guitar hammer lemon marble ocean planet "
        "puzzle ticket tunnel violin wallet anchor barrel cabin desk lamp book door ship clock shoe hat road cup "
        "ring key box coin drum flag moon sun star tree leaf boat bell rope"
    ).split()
)
LIST_ITEMS: tuple[str, ...] = tuple(noun for noun in NOUNS if len(noun) <= 6)
NUMBER_WORDS: tuple[str, ...] = tuple(
    (
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty"
    ).split()
)
MONTHS: tuple[str, ...] = tuple(
    "January February March April May June July August September October November December".split()
)

# Word lookups
ANTONYMS: dict[str, str] = _both_ways(
    _pairs(
        "hot:cold fast:slow happy:sad rich:poor wet:dry full:empty open:closed early:late "
        "clean:dirty strong:weak loud:quiet high:low wide:narrow deep:shallow true:false good:bad "
        "cheap:expensive safe:dangerous alive:dead awake:asleep smooth:rough polite:rude first:last "
        "above:below inside:outside before:after push:pull win:lose buy:sell"
    )
)
PLURALS: dict[str, str] = _pairs(
    "cat:cats dog:dogs box:boxes bus:buses city:cities baby:babies leaf:leaves knife:knives wolf:wolves "
    "mouse:mice goose:geese tooth:teeth foot:feet child:children man:men woman:women person:people ox:oxen "
    "sheep:sheep fish:fish potato:potatoes tomato:tomatoes hero:heroes church:churches "
    "dish:dishes glass:glasses fox:foxes party:parties story:stories day:days key:keys toy:toys book:books "
    "tree:trees star:stars wife:wives shelf:shelves half:halves loaf:loaves piano:pianos photo:photos "
    "zoo:zoos bench:benches watch:watches lady:ladies berry:berries puppy:puppies boy:boys"
)
SINGULARS: dict[str, str] = {plural: singular for singular, plural in PLURALS.items()}
PAST_TENSES: dict[str, str] = _pairs(
    "go:went eat:ate see:saw take:took run:ran swim:swam sing:sang write:wrote drive:drove buy:bought "
    "bring:brought think:thought teach:taught catch:caught fly:flew draw:drew grow:grew know:knew "
    "throw:threw speak:spoke break:broke choose:chose freeze:froze steal:stole give:gave sit:sat win:won "
    "begin:began drink:drank fall:fell feel:felt keep:kept sleep:slept leave:left meet:met make:made "
    "say:said pay:paid tell:told sell:sold find:found stand:stood walk:walked jump:jumped play:played "
    "cry:cried stop:stopped smile:smiled carry:carried laugh:laughed dance:danced"
)

# Animals: name -> class, and the words that describe one (``small spotted frog``)
ANIMAL_LABELS: tuple[str, ...] = ("mammal", "bird", "fish", "reptile", "insect", "amphibian")
ANIMAL_CLASSES: dict[str, str] = _groups(
    {
        "mammal": "dog cat horse cow goat pig rabbit mouse lion tiger bear wolf fox deer whale dolphin bat "
        "elephant monkey zebra",
        "bird": "eagle owl sparrow parrot penguin duck swan crow pigeon robin",
        "fish": "salmon trout shark tuna cod goldfish carp",
        "reptile": "snake lizard turtle crocodile tortoise iguana",
        "insect": "ant bee butterfly beetle mosquito wasp grasshopper ladybug",
        "amphibian": "frog toad salamander newt",
    }
)
ANIMAL_SIZES: tuple[str, ...] = ("small", "big", "young", "old", "tiny", "large")
ANIMAL_COLORS: tuple[str, ...] = ("brown", "black", "white", "grey", "red", "green", "spotted", "striped")

# Countries: capitals and continents, and the places in them (``a village in western Nigeria``)
CAPITALS, CONTINENTS = _countries(
    "France:Paris:Europe Germany:Berlin:Europe Italy:Rome:Europe Spain:Madrid:Europe "
    "Portugal:Lisbon:Europe Greece:Athens:Europe Norway:Oslo:Europe Sweden:Stockholm:Europe "
    "Poland:Warsaw:Europe Austria:Vienna:Europe Ireland:Dublin:Europe Egypt:Cairo:Africa "
    "Kenya:Nairobi:Africa Nigeria:Abuja:Africa Ghana:Accra:Africa Morocco:Rabat:Africa "
    "Ethiopia:Addis_Ababa:Africa Japan:Tokyo:Asia China:Beijing:Asia India:New_Delhi:Asia "
    "Thailand:Bangkok:Asia Vietnam:Hanoi:Asia South_Korea:Seoul:Asia Iran:Tehran:Asia "
    "Canada:Ottawa:North_America Mexico:Mexico_City:North_America Cuba:Havana:North_America "
    "Jamaica:Kingston:North_America Brazil:Brasilia:South_America Argentina:Buenos_Aires:South_America "
    "Peru:Lima:South_America Chile:Santiago:South_America Colombia:Bogota:South_America "
    "Australia:Canberra:Oceania New_Zealand:Wellington:Oceania Fiji:Suva:Oceania"
)
CONTINENT_LABELS: tuple[str, ...] = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
PLACES: tuple[str, ...] = ("a town", "a city", "a village", "a farm", "a port", "a school")
REGIONS: tuple[str, ...] = ("northern", "southern", "eastern", "western", "central")

# Topics: keyword -> topic, and the sentences that carry two keywords
TOPIC_LABELS: tuple[str, ...] = ("sports", "food", "weather", "music")
TOPICS: dict[str, str] = _groups(
    {
        "sports": "goal match team coach referee stadium league player trophy striker tournament goalkeeper",
        "food": "soup recipe cheese kitchen salad dessert chef oven pasta sauce flavor bakery",
        "weather": "rain storm cloud wind snow sunshine thunder fog forecast breeze frost hail",
        "music": "song guitar melody concert drum singer piano chorus album rhythm band violin",
    }
)
TOPIC_TEMPLATES: tuple[str, ...] = (
    "a story about the {} and the {}",
    "news on the {} and the {}",
    "a report on the {} and the {}",
)

# Review domains (one sentiment task per domain): shared polar words, and per domain its subjects and
# its own positive and negative words
POSITIVE: tuple[str, ...] = ("great", "wonderful", "excellent", "lovely", "superb", "brilliant", "fantastic", "amazing")
NEGATIVE: tuple[str, ...] = ("awful", "terrible", "dreadful", "poor", "horrible", "disappointing", "bad", "mediocre")
REVIEW_DOMAINS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "movie": (
        ("plot", "acting", "ending", "script", "soundtrack", "cast", "dialogue", "film"),
        ("gripping", "moving"),
        ("boring", "dull"),
    ),
    "restaurant": (
        ("food", "service", "soup", "waiter", "dessert", "pasta", "staff", "meal"),
        ("tasty", "delicious"),
        ("bland", "greasy"),
    ),
    "product": (
        ("battery", "screen", "charger", "case", "design", "price", "keyboard", "speaker"),
        ("reliable", "sturdy"),
        ("flimsy", "faulty"),
    ),
}
INTENSIFIERS: tuple[str, ...] = ("", "really ", "truly ", "quite ", "very ")

# Shop domains (one category task per domain): item -> category label, and the modifiers of an item
CATEGORY_DOMAINS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "grocery": (
        _groups(
            {
                "fruit": "apple banana cherry grape mango peach pear plum lemon",
                "vegetable": "carrot potato onion cabbage lettuce spinach broccoli celery cucumber",
                "dairy": "milk cheese butter yogurt cream",
                "bakery": "bread bagel croissant muffin baguette",
                "meat": "chicken beef pork lamb bacon sausage ham",
            }
        ),
        ("fresh", "organic", "local", "cheap", "large", "small"),
    ),
    "clothing": (
        _groups(
            {
                "head": "hat cap helmet beanie",
                "neck": "scarf necklace tie collar",
                "hand": "glove mitten ring bracelet",
                "foot": "shoe boot sock sandal slipper sneaker",
                "body": "shirt jacket coat sweater vest dress",
            }
        ),
        ("red", "blue", "black", "white", "green", "grey"),
    ),
    "tools": (
        _groups(
            {
                "cutting": "knife saw scissors axe chisel",
                "measuring": "ruler tape_measure scale thermometer protractor",
                "gardening": "shovel rake hoe spade trowel",
                "painting": "brush roller palette easel stencil",
            }
        ),
        ("new", "old", "steel", "small", "large", "cheap"),
    ),
}
