"""The synthetic task specs: what each task asks, how its inputs are drawn and how it is answered.

One function per family returns its tasks; :func:`build_task_specs` puts them together, by name, in suite
order: the plain tasks (string, number, list, lexicon, lookup, format, classification), then the domain
tasks, then the style and persona tasks, which are built from seen base tasks. Nothing is built at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hyperadapt.data.synthetic import samplers as draw
from hyperadapt.data.synthetic import solvers as answer
from hyperadapt.data.synthetic.lexicons import (
    ANIMAL_CLASSES,
    ANIMAL_LABELS,
    ANTONYMS,
    CAPITALS,
    CATEGORY_DOMAINS,
    CONTINENT_LABELS,
    LIST_ITEMS,
    NUMBER_WORDS,
    PAST_TENSES,
    PLURALS,
    SINGULARS,
    TOPIC_LABELS,
    TOPICS,
)
from hyperadapt.data.synthetic.samplers import Sampler
from hyperadapt.data.synthetic.solvers import Solver

MIN_INSTRUCTIONS = 4
"""Every task has at least this many paraphrased instructions (seen tasks hold the last one out)."""


@dataclass(frozen=True)
class TaskSpec:
    """A synthetic task: how to draw an input, the function that answers it, and its metadata.

    ``split`` is ``"seen"`` (trained on; its last instruction is the held-out paraphrase) or ``"unseen"``
    (never trained on). Tasks of a held-out condition type (``suite.HELD_OUT_TYPES``) are always unseen.
    ``options`` lists the allowed answers of a task with a fixed label set. ``related`` names the seen
    tasks an unseen task transfers from.
    """

    name: str
    family: str
    description: str
    instructions: tuple[str, ...]
    sample: Sampler
    solve: Solver
    condition_type: str = "task"
    split: str = "seen"
    options: tuple[str, ...] | None = None
    related: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.instructions) < MIN_INSTRUCTIONS:
            raise ValueError(f"synthetic task {self.name!r} needs at least {MIN_INSTRUCTIONS} instructions")

    def answers(self, text: str) -> tuple[str, ...]:
        """The reference outputs of an input (the first is the one trained on)."""
        return (self.solve(text),)


STYLES: dict[str, tuple[str, Callable[[str], str]]] = {  # name -> (description, rewrite of the answer)
    "upper": ("in upper case", str.upper),
    "brackets": ("in square brackets", lambda s: f"[{s}]"),
    "parentheses": ("in parentheses", lambda s: f"({s})"),
    "period": ("with a trailing period", lambda s: f"{s}."),
    "quotes": ("in double quotes", lambda s: f'"{s}"'),
    "capitalized": ("with a capital first letter", lambda s: s[:1].upper() + s[1:]),
}


def _labels(labels: Sequence[str]) -> str:
    """``("a", "b", "c")`` -> ``"a, b or c"``, as the instructions name a label set."""
    return ", ".join(labels[:-1]) + " or " + labels[-1]


# ---------------------------------------------------------------------------------------------------------
# Plain tasks (condition type ``task``), one function per family


def _string_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            "upper_case",
            "string",
            "convert a phrase to upper case",
            (
                "Convert the text to upper case.",
                "Rewrite the input using only capital letters.",
                "Write the given words in all caps.",
                "Change every letter of the input to uppercase.",
            ),
            draw.phrase(2, 3),
            str.upper,
        ),
        TaskSpec(
            "lower_case",
            "string",
            "convert an upper-case phrase to lower case",
            (
                "Convert the text to lower case.",
                "Rewrite the input using only small letters.",
                "Write the given words without any capital letters.",
                "Change every letter of the input to lowercase.",
            ),
            draw.phrase(2, 3, str.upper),
            str.lower,
        ),
        TaskSpec(
            "title_case",
            "string",
            "capitalise the first letter of each word",
            (
                "Capitalize the first letter of each word.",
                "Convert the text to title case.",
                "Write each word with a capital first letter and the rest in lower case.",
                "Make the first letter of every word uppercase.",
            ),
            draw.phrase(2, 3),
            str.title,
            split="unseen",
            related=("upper_case", "lower_case"),
        ),
        TaskSpec(
            "initials",
            "string",
            "upper-case initials of the words",
            (
                "Write the first letter of each word in upper case, with no spaces.",
                "Give the initials of the words as capital letters joined together.",
                "Form an acronym from the first letters of the words, in capitals.",
                "Take the first letter of every word, capitalize it, and join them without spaces.",
            ),
            draw.phrase(2, 4),
            lambda s: "".join(word[0] for word in s.split()).upper(),
        ),
    ]


def _number_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            "add",
            "number",
            "sum of two numbers below 50",
            (
                "Add the two numbers.",
                "Give the sum of the two numbers.",
                "Compute the total of the two given numbers.",
                "What do the two numbers add up to?",
            ),
            draw.numbers(2, 2, 49, distinct=False),
            answer.on_list(lambda xs: sum(map(int, xs))),
        ),
        TaskSpec(
            "subtract",
            "number",
            "first number minus the second",
            (
                "Subtract the second number from the first.",
                "Give the first number minus the second number.",
                "Compute the difference: the first number take away the second.",
                "What is left when the second number is taken from the first?",
            ),
            draw.subtraction,
            answer.on_list(lambda xs: int(xs[0]) - int(xs[1])),
        ),
        TaskSpec(
            "max_number",
            "number",
            "largest of 3-5 numbers",
            (
                "Return the largest number in the list.",
                "Which number in the list is the biggest?",
                "Give the maximum of the numbers.",
                "Find the highest value among the numbers.",
            ),
            draw.numbers(3, 5, 99),
            answer.on_list(lambda xs: max(map(int, xs))),
        ),
        TaskSpec(
            "min_number",
            "number",
            "smallest of 3-5 numbers",
            (
                "Return the smallest number in the list.",
                "Which number in the list is the lowest?",
                "Give the minimum of the numbers.",
                "Find the least value among the numbers.",
            ),
            draw.numbers(3, 5, 99),
            answer.on_list(lambda xs: min(map(int, xs))),
            split="unseen",
            related=("max_number",),
        ),
        TaskSpec(
            "next_number",
            "number",
            "the number plus one",
            (
                "Give the number that comes right after the input number.",
                "Add one to the number.",
                "What is the next integer after this number?",
                "Write the successor of the given number.",
            ),
            draw.number(999),
            lambda s: str(int(s) + 1),
        ),
        TaskSpec(
            "even_odd",
            "number",
            "whether a number is even or odd",
            (
                "Is the number even or odd? Answer even or odd.",
                "Say whether the number is even or odd.",
                "Classify the number as even or odd.",
                "Answer 'even' if the number is divisible by two, otherwise 'odd'.",
            ),
            draw.number(999),
            lambda s: "odd" if int(s) % 2 else "even",
            options=("even", "odd"),
        ),
        TaskSpec(
            "numbers_to_words",
            "number",
            "spell out 1-3 numbers from 0 to 20",
            (
                "Write each number in words, separated by commas.",
                "Spell out the numbers in English words.",
                "Replace each number with its name in words, keeping the commas.",
                "Convert every number written in digits into its English word.",
            ),
            draw.numbers(1, 3, 20, distinct=False),
            answer.each(lambda x: NUMBER_WORDS[int(x)]),
        ),
    ]


def _list_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            "reverse_list",
            "list",
            "reverse a list of 3-4 items",
            (
                "Reverse the order of the items in the list.",
                "Write the list backwards, from last item to first.",
                "Give the same items in the opposite order.",
                "List the items starting from the end.",
            ),
            draw.items(LIST_ITEMS, 3, 4),
            answer.on_list(lambda xs: xs[::-1]),
        ),
        TaskSpec(
            "first_item",
            "list",
            "first item of a list",
            (
                "Return the first item of the list.",
                "Which item comes first in the list?",
                "Give the item at the start of the list.",
                "Write only the first element of the list.",
            ),
            draw.items(LIST_ITEMS, 3, 5),
            answer.on_list(lambda xs: xs[0]),
        ),
        TaskSpec(
            "last_item",
            "list",
            "last item of a list",
            (
                "Return the last item of the list.",
                "Which item comes last in the list?",
                "Give the item at the end of the list.",
                "Write only the final element of the list.",
            ),
            draw.items(LIST_ITEMS, 3, 5),
            answer.on_list(lambda xs: xs[-1]),
        ),
        TaskSpec(
            "count_items",
            "list",
            "number of items in a list of 2-7",
            (
                "Count the items in the list.",
                "How many items does the list contain? Answer with a number.",
                "Give the number of elements in the list.",
                "Say how many things are listed.",
            ),
            draw.items(LIST_ITEMS, 2, 7),
            answer.on_list(len),
        ),
        TaskSpec(
            "sort_digits",
            "list",
            "sort 3-5 digits ascending",
            (
                "Sort the digits from smallest to largest.",
                "Arrange the numbers in ascending order.",
                "Put the digits in increasing order, separated by spaces.",
                "Order the numbers from lowest to highest.",
            ),
            draw.numbers(3, 5, 9, distinct=False, sep=" "),
            answer.on_list(sorted, sep=" "),
        ),
        TaskSpec(
            "sort_digits_desc",
            "list",
            "sort 3-5 digits descending",
            (
                "Sort the digits from largest to smallest.",
                "Arrange the numbers in descending order.",
                "Put the digits in decreasing order, separated by spaces.",
                "Order the numbers from highest to lowest.",
            ),
            draw.numbers(3, 5, 9, distinct=False, sep=" "),
            answer.on_list(lambda xs: sorted(xs, reverse=True), sep=" "),
            split="unseen",
            related=("sort_digits",),
        ),
    ]


def _lexicon_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            "antonym",
            "lexicon",
            "opposite of 1-2 words",
            (
                "Give the opposite of each word.",
                "Write the antonym of every word, separated by commas.",
                "Replace each word with the word that means the opposite.",
                "What are the opposites of these words?",
            ),
            draw.items(sorted(ANTONYMS), 1, 2),
            answer.each(ANTONYMS.__getitem__),
        ),
        TaskSpec(
            "plural",
            "lexicon",
            "plural of 1-2 nouns",
            (
                "Write the plural form of each noun.",
                "Give the plural of every word, separated by commas.",
                "Turn each noun into its plural.",
                "What is the plural of each of these words?",
            ),
            draw.items(sorted(PLURALS), 1, 2),
            answer.each(PLURALS.__getitem__),
        ),
        TaskSpec(
            "singular",
            "lexicon",
            "singular of 1-2 plural nouns",
            (
                "Write the singular form of each noun.",
                "Give the singular of every word, separated by commas.",
                "Turn each plural noun into its singular.",
                "What is the singular of each of these words?",
            ),
            draw.items(sorted(SINGULARS), 1, 2),
            answer.each(SINGULARS.__getitem__),
            split="unseen",
            related=("plural",),
        ),
        TaskSpec(
            "past_tense",
            "lexicon",
            "past tense of 1-2 verbs",
            (
                "Write the past tense of each verb.",
                "Give the simple past form of every verb, separated by commas.",
                "Change each verb to the past tense.",
                "What is the past tense of these verbs?",
            ),
            draw.items(sorted(PAST_TENSES), 1, 2),
            answer.each(PAST_TENSES.__getitem__),
        ),
    ]


def _lookup_tasks() -> list[TaskSpec]:
    animals, continents = _labels(ANIMAL_LABELS), _labels(CONTINENT_LABELS)
    return [
        TaskSpec(
            "animal_class",
            "lookup",
            "class of a described animal",
            (
                f"Which class does the animal belong to? Answer {animals}.",
                f"Classify the animal as {animals}.",
                f"Name the animal's class: {animals}.",
                f"Tell what kind of animal this is ({animals}).",
            ),
            draw.animal,
            answer.lookup_word(ANIMAL_CLASSES),
            options=ANIMAL_LABELS,
        ),
        TaskSpec(
            "capital",
            "lookup",
            "capital city of 1-2 countries",
            (
                "Give the capital city of each country.",
                "Name the capital of every country, separated by commas.",
                "Replace each country with its capital city.",
                "What is the capital of each of these countries?",
            ),
            draw.items(sorted(CAPITALS), 1, 2),
            answer.each(CAPITALS.__getitem__),
        ),
        TaskSpec(
            "continent",
            "lookup",
            "continent of a place in a country",
            (
                f"On which continent is the place? Answer {continents}.",
                f"Name the continent where the place is: {continents}.",
                f"Classify the location by continent as {continents}.",
                f"Which continent ({continents}) is this place on?",
            ),
            draw.place,
            answer.continent_of_place,
            options=CONTINENT_LABELS,
        ),
    ]


def _format_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            "date_dmy",
            "format",
            "YYYY-MM-DD to DD/MM/YYYY",
            (
                "Convert the date from YYYY-MM-DD to DD/MM/YYYY.",
                "Rewrite the date as day/month/year with slashes.",
                "Reformat the ISO date into the European DD/MM/YYYY format.",
                "Write the date with the day first, then the month, then the year, separated by slashes.",
            ),
            draw.date,
            answer.date_as("{d}/{m}/{y}"),
        ),
        TaskSpec(
            "date_mdy",
            "format",
            "YYYY-MM-DD to MM/DD/YYYY",
            (
                "Convert the date from YYYY-MM-DD to MM/DD/YYYY.",
                "Rewrite the date as month/day/year with slashes.",
                "Reformat the ISO date into the American MM/DD/YYYY format.",
                "Write the date with the month first, then the day, then the year, separated by slashes.",
            ),
            draw.date,
            answer.date_as("{m}/{d}/{y}"),
            split="unseen",
            related=("date_dmy",),
        ),
        TaskSpec(
            "date_month",
            "format",
            "month name of a YYYY-MM-DD date",
            (
                "Name the month of the date.",
                "Which month is this date in? Answer with the month's name.",
                "Give the English name of the month in the date.",
                "Write the month of the given date as a word.",
            ),
            draw.date,
            answer.date_as("{month}"),
        ),
        TaskSpec(
            "time_12h",
            "format",
            "24-hour time to 12-hour time with AM/PM",
            (
                "Convert the 24-hour time to 12-hour time with AM or PM.",
                "Rewrite the time in the 12-hour clock, adding AM or PM.",
                "Express this 24-hour clock time as a 12-hour time with AM/PM.",
                "Change the time to the AM/PM format.",
            ),
            draw.clock_time,
            answer.twelve_hour,
        ),
        TaskSpec(
            "snake_case",
            "format",
            "join words with underscores",
            (
                "Convert the words to snake_case.",
                "Join the words with underscores.",
                "Write the phrase in snake case: lower-case words joined by underscores.",
                "Replace the spaces between the words with underscores.",
            ),
            draw.phrase(2, 3),
            lambda s: s.replace(" ", "_"),
        ),
        TaskSpec(
            "kebab_case",
            "format",
            "join words with hyphens",
            (
                "Convert the words to kebab-case.",
                "Join the words with hyphens.",
                "Write the phrase in kebab case: lower-case words joined by hyphens.",
                "Replace the spaces between the words with hyphens.",
            ),
            draw.phrase(2, 3),
            lambda s: s.replace(" ", "-"),
            split="unseen",
            related=("snake_case",),
        ),
    ]


def _classification_tasks() -> list[TaskSpec]:
    topics = _labels(TOPIC_LABELS)
    return [
        TaskSpec(
            "topic",
            "classification",
            "topic of a short text",
            (
                f"What is the text about? Answer {topics}.",
                f"Classify the topic of the text as {topics}.",
                f"Pick the topic of the sentence: {topics}.",
                f"Which subject does this text discuss: {topics}?",
            ),
            draw.topic_text,
            answer.lookup_word(TOPICS),
            options=TOPIC_LABELS,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Domain tasks: one task over several vocabularies (review sentiment, item category)


def _sentiment_task(domain: str, thing: str, split: str = "seen", related: tuple[str, ...] = ()) -> TaskSpec:
    """Sentiment of a review in ``domain`` (``thing`` is what the reviewer bought or saw)."""
    return TaskSpec(
        f"sentiment_{domain}",
        "classification",
        f"sentiment of a {domain} review",
        (
            f"This is a {domain} review. Is it positive or negative?",
            f"Classify the sentiment of the {domain} review as positive or negative.",
            f"Read the {domain} review and answer positive or negative.",
            f"Did the reviewer like the {thing}? Answer positive or negative.",
        ),
        draw.review(domain),
        answer.sentiment,
        condition_type="domain",
        split=split,
        options=("positive", "negative"),
        related=related,
    )


def _category_task(
    domain: str, item: str, questions: tuple[str, str, str, str], split: str = "seen", related: tuple[str, ...] = ()
) -> TaskSpec:
    """Category of an ``item`` of ``domain``'s shop; each question stem is followed by the label set."""
    labels = tuple(dict.fromkeys(CATEGORY_DOMAINS[domain][0].values()))
    named = _labels(labels)
    first, second, third, fourth = questions
    return TaskSpec(
        f"category_{domain}",
        "classification",
        f"category of a {item}",
        (
            f"{first} Answer {named}.",
            f"{second} {named}.",
            f"{third} {named}.",
            f"{fourth} ({named})?",
        ),
        draw.shop_item(domain),
        answer.category(domain),
        condition_type="domain",
        split=split,
        options=labels,
        related=related,
    )


def _domain_tasks() -> list[TaskSpec]:
    return [
        _sentiment_task("movie", "film"),
        _sentiment_task("restaurant", "meal"),
        _sentiment_task("product", "purchase", split="unseen", related=("sentiment_movie", "sentiment_restaurant")),
        _category_task(
            "grocery",
            "grocery item",
            (
                "Which grocery section does the item belong to?",
                "Sort the shopping item into",
                "Name the supermarket aisle for the item:",
                "In which section of a grocery store is the item",
            ),
        ),
        _category_task(
            "clothing",
            "clothing item",
            (
                "Where on the body is the clothing item worn?",
                "Sort the clothing item by where it is worn:",
                "Name the body part that wears the item:",
                "On which part of the body is the item worn",
            ),
        ),
        _category_task(
            "tools",
            "hardware tool",
            (
                "What is the hardware tool used for?",
                "Sort the tool by its use:",
                "Name the job the hardware tool is for:",
                "For which kind of work is the tool used",
            ),
            split="unseen",
            related=("category_grocery", "category_clothing"),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Style and persona tasks: a seen base task with its answer rewritten


def _styled(
    base: TaskSpec,
    name: str,
    style: str,
    instructions: tuple[str, ...],
    split: str = "seen",
    related: tuple[str, ...] = (),
) -> TaskSpec:
    """``base``'s task with its answer rewritten by ``STYLES[style]``."""
    note, rewrite = STYLES[style]
    return TaskSpec(
        name,
        base.family,
        f"{base.description}, {note}",
        instructions,
        base.sample,
        lambda s: rewrite(base.solve(s)),
        condition_type="style",
        split=split,
        options=tuple(rewrite(o) for o in base.options) if base.options else None,
        related=related,
    )


def _persona(base: TaskSpec, name: str, prefix: str, instructions: tuple[str, ...]) -> TaskSpec:
    """``base``'s task answered by a persona that starts every answer with ``prefix`` (always unseen)."""
    return TaskSpec(
        name,
        base.family,
        f"{base.description}, prefixed with {prefix.strip()!r}",
        instructions,
        base.sample,
        lambda s: prefix + base.solve(s),
        condition_type="persona",
        split="unseen",
        options=tuple(prefix + o for o in base.options) if base.options else None,
        related=(base.name,),
    )


def _style_tasks(base: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    animals = _labels(ANIMAL_LABELS)
    return [
        _styled(
            base["capital"],
            "capital_upper",
            "upper",
            (
                "Give the capital city of each country, in upper case.",
                "Name the capital of every country using only capital letters.",
                "What is the capital of each country? Answer in all caps.",
                "Replace each country with its capital city, written in uppercase.",
            ),
        ),
        _styled(
            base["antonym"],
            "antonym_brackets",
            "brackets",
            (
                "Give the opposite of each word and wrap your answer in square brackets.",
                "Write the antonyms, with the whole answer inside [ and ].",
                "Answer with the opposite words enclosed in square brackets.",
                "Put the opposites of the words between square brackets.",
            ),
        ),
        _styled(
            base["add"],
            "add_period",
            "period",
            (
                "Add the two numbers and end your answer with a period.",
                "Give the sum of the two numbers followed by a full stop.",
                "Compute the total of the numbers and put a period after it.",
                "What do the two numbers add up to? Finish the answer with a period.",
            ),
        ),
        _styled(
            base["plural"],
            "plural_quotes",
            "quotes",
            (
                "Write the plural of each noun and put your whole answer in double quotes.",
                "Give the plurals, wrapped in double quotation marks.",
                "Answer with the plural forms enclosed in double quotes.",
                "Turn each noun into its plural and quote the answer with double quotes.",
            ),
        ),
        _styled(
            base["animal_class"],
            "animal_class_capitalized",
            "capitalized",
            (
                f"Classify the animal as {animals}, starting your answer with a capital letter.",
                f"Which class does the animal belong to ({animals})? Capitalize the first letter of the answer.",
                f"Name the animal's class ({animals}) with an initial capital letter.",
                f"Tell what kind of animal this is ({animals}), written with a capital first letter.",
            ),
        ),
        _styled(
            base["antonym"],
            "antonym_parentheses",
            "parentheses",
            (
                "Give the opposite of each word and wrap your answer in round brackets.",
                "Write the antonyms, with the whole answer inside ( and ).",
                "Answer with the opposite words enclosed in parentheses.",
                "Put the opposites of the words between parentheses.",
            ),
            split="unseen",
            related=("antonym", "antonym_brackets"),
        ),
        _styled(
            base["past_tense"],
            "past_tense_upper",
            "upper",
            (
                "Write the past tense of each verb, in upper case.",
                "Give the simple past of every verb using only capital letters.",
                "Change each verb to the past tense and answer in all caps.",
                "What is the past tense of these verbs? Write it in uppercase.",
            ),
            split="unseen",
            related=("past_tense", "capital_upper"),
        ),
    ]


def _persona_tasks(base: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    animals = _labels(ANIMAL_LABELS)
    return [
        _persona(
            base["add"],
            "robot_add",
            "BEEP: ",
            (
                "You are a robot: start with 'BEEP:' and then give the sum of the two numbers.",
                "Answer like a robot that says 'BEEP:' before the total of the two numbers.",
                "As a robot, reply 'BEEP:' followed by the two numbers added together.",
                "Be a robot: begin with 'BEEP:', then the sum of the numbers.",
            ),
        ),
        _persona(
            base["capital"],
            "pirate_capital",
            "Arr, ",
            (
                "Talk like a pirate: start with 'Arr,' and then name the capital of each country.",
                "Answer as a pirate who says 'Arr,' before giving the capital cities of the countries.",
                "You are a pirate: reply 'Arr,' followed by the capital of every country.",
                "Be a pirate: begin with 'Arr,', then the capitals of the countries.",
            ),
        ),
        _persona(
            base["animal_class"],
            "cowboy_animal_class",
            "Howdy! ",
            (
                f"Speak like a cowboy: say 'Howdy!' and then the animal's class ({animals}).",
                f"Answer as a cowboy who greets with 'Howdy!' before classifying the animal as {animals}.",
                f"You are a cowboy: reply 'Howdy!' followed by the class of the animal ({animals}).",
                f"Be a cowboy: begin with 'Howdy!', then tell the animal's class: {animals}.",
            ),
        ),
        _persona(
            base["antonym"],
            "wizard_antonym",
            "Behold: ",
            (
                "You are a wizard: begin with 'Behold:' and then give the opposite of each word.",
                "Answer as a wizard who says 'Behold:' before the antonyms of the words.",
                "Speak like a wizard: reply 'Behold:' followed by the opposite words.",
                "Be a wizard: start with 'Behold:', then the opposites of the words.",
            ),
        ),
        _persona(
            base["next_number"],
            "teacher_next_number",
            "The answer is ",
            (
                "Answer as a teacher: say 'The answer is' followed by the number that comes after the input.",
                "You are a teacher: reply 'The answer is' and then the input number plus one.",
                "Speak like a teacher who says 'The answer is' before the next integer after the number.",
                "Be a teacher: begin with 'The answer is', then the successor of the number.",
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------


def _add_all(specs: dict[str, TaskSpec], new: Iterable[TaskSpec]) -> None:
    for spec in new:
        if spec.name in specs:
            raise ValueError(f"duplicate synthetic task {spec.name!r}")
        specs[spec.name] = spec


def build_task_specs() -> dict[str, TaskSpec]:
    """Every synthetic task spec, by name, in suite order (a new dict on each call)."""
    specs: dict[str, TaskSpec] = {}
    for family in (
        _string_tasks,
        _number_tasks,
        _list_tasks,
        _lexicon_tasks,
        _lookup_tasks,
        _format_tasks,
        _classification_tasks,
        _domain_tasks,
    ):
        _add_all(specs, family())
    _add_all(specs, _style_tasks(specs))  # built from the seen base tasks above
    _add_all(specs, _persona_tasks(specs))
    return specs
