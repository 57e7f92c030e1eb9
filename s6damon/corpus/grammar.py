"""A voice-assistant command grammar: thousands of distinct utterances from a seed.

The grammar covers timers, alarms, reminders, weather, messages and calls, music, smart
home devices, navigation and arithmetic, over a vocabulary of a few hundred words
(numbers are spelled out, as the model's transcripts require). Every slot draws from a
word list with a ``random.Random(seed)`` generator, so the same seed gives the same
utterances in the same order on every machine and Python version.
"""

from __future__ import annotations

import random

from s6damon.text import normalise

_ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

NAMES = ["anna", "ben", "carla", "david", "emma", "frank", "grace", "henry", "julia", "kevin",
         "laura", "martin", "nina", "oliver", "paula", "robert", "sarah", "thomas", "victor",
         "william", "mom", "dad", "grandma", "peter", "lucy", "james", "maria", "daniel"]
PLACES = ["london", "paris", "berlin", "boston", "chicago", "denver", "madrid", "rome", "tokyo",
          "seattle", "dallas", "miami", "toronto", "sydney", "dublin", "vienna", "the office",
          "the airport", "the station", "the beach", "the park", "the library", "school",
          "the gym", "the hospital", "the mall", "home", "work"]
ROOMS = ["kitchen", "bedroom", "living room", "bathroom", "garage", "hallway", "office",
         "basement", "garden", "dining room"]
DEVICES = ["lights", "lamp", "heater", "fan", "television", "radio", "oven", "coffee machine",
           "air conditioner", "dishwasher", "washing machine", "speaker", "camera", "door lock"]
ARTISTS = ["the beatles", "mozart", "bach", "queen", "miles davis", "elvis", "abba",
           "johnny cash", "bob marley", "the rolling stones", "adele", "madonna"]
GENRES = ["jazz", "rock", "classical music", "pop music", "country music", "the blues", "folk music",
          "reggae", "hip hop", "relaxing music", "something happy", "the news"]
TASKS = ["call the dentist", "buy milk", "water the plants", "feed the cat", "pay the rent",
         "take my medicine", "pick up the kids", "send the report", "book a table",
         "walk the dog", "check the mail", "clean the kitchen", "renew my passport",
         "charge my phone", "lock the back door", "bring an umbrella", "buy some bread"]
DAYS = ["today", "tomorrow", "tonight", "this evening", "this afternoon", "on monday",
        "on tuesday", "on wednesday", "on thursday", "on friday", "on saturday", "on sunday",
        "next week", "this weekend", "in the morning"]
UNITS = ["seconds", "minutes", "hours"]
MESSAGES = ["i am running late", "see you soon", "call me back", "dinner is ready",
            "happy birthday", "i am on my way", "thank you", "where are you",
            "the meeting is cancelled", "good night", "i will be home at six"]
WEATHER = ["the weather", "the forecast", "the temperature", "the chance of rain",
           "the wind speed", "the humidity"]
OPS = ["plus", "minus", "times", "divided by"]
POLITE = ["", "please", "could you", "can you", "hey computer", "okay computer"]


def number_words(n: int) -> str:
    """Spell out 0 <= n < 1000 (``"one hundred and twenty five"`` style, US spelling)."""
    if n == 0:
        return "zero"
    parts = []
    if n >= 100:
        parts.append(f"{_ONES[n // 100 - 1]} hundred")
        n %= 100
        if n:
            parts.append("and")
    if n >= 20:
        parts.append(_TENS[n // 10 - 2] + (f" {_ONES[n % 10 - 1]}" if n % 10 else ""))
    elif n >= 10:
        parts.append(_TEENS[n - 10])
    elif n > 0:
        parts.append(_ONES[n - 1])
    return " ".join(parts)


def clock_time(rng: random.Random) -> str:
    """A spoken clock time: ``seven thirty``, ``ten o'clock`` is avoided (apostrophes)."""
    h = rng.randint(1, 12)
    m = rng.choice([0, 5, 10, 15, 20, 30, 40, 45, 50, rng.randint(1, 59)])
    ampm = rng.choice(["", " a m", " p m", " in the morning", " in the evening"])
    if m == 0:
        return f"{number_words(h)}{rng.choice([' sharp', ''])}{ampm}"
    if m < 10:
        return f"{number_words(h)} oh {number_words(m)}{ampm}"
    return f"{number_words(h)} {number_words(m)}{ampm}"


def _templates(rng: random.Random) -> str:
    c = rng.choice
    n = lambda lo, hi: number_words(rng.randint(lo, hi))  # noqa: E731
    kind = rng.randrange(14)
    if kind == 0:
        return f"set a timer for {n(1, 90)} {c(UNITS)}"
    if kind == 1:
        return f"{c(['wake me up', 'set an alarm', 'set my alarm'])} {c(['at', 'for'])} {clock_time(rng)} {c(DAYS)}"
    if kind == 2:
        return f"remind me to {c(TASKS)} {c(DAYS)}"
    if kind == 3:
        return f"remind me {c(['at', 'around'])} {clock_time(rng)} to {c(TASKS)}"
    if kind == 4:
        return f"what is {c(WEATHER)} in {c(PLACES)} {c(DAYS)}"
    if kind == 5:
        return f"will it {c(['rain', 'snow', 'be sunny', 'be windy', 'be cold'])} in {c(PLACES)} {c(DAYS)}"
    if kind == 6:
        return f"send a message to {c(NAMES)} saying {c(MESSAGES)}"
    if kind == 7:
        return f"call {c(NAMES)} {c(['', 'on speaker', 'at home', 'at work', 'on video'])}"
    if kind == 8:
        return f"play {c(GENRES + ARTISTS)} {c(['', 'in the ' + c(ROOMS), 'at volume ' + n(1, 10)])}"
    if kind == 9:
        return f"turn {c(['on', 'off'])} the {c(DEVICES)} in the {c(ROOMS)}"
    if kind == 10:
        return f"set the {c(['thermostat', 'heating', 'temperature'])} to {n(15, 30)} degrees {c(['', 'in the ' + c(ROOMS)])}"
    if kind == 11:
        return f"how long does it take to get to {c(PLACES)} {c(['by car', 'by train', 'on foot', 'by bike', ''])}"
    if kind == 12:
        return f"what is {n(1, 999)} {c(OPS)} {n(1, 99)}"
    return f"{c(['add', 'put'])} {n(1, 12)} {c(['eggs', 'apples', 'bananas', 'bottles of water', 'lemons', 'onions'])} to my shopping list"


def generate_commands(n: int, seed: int) -> list[str]:
    """``n`` distinct normalised command utterances, deterministic from ``seed``.

    Raises:
        ValueError: the grammar cannot produce ``n`` distinct utterances.
    """
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"grammar: only {len(seen)} distinct utterances after {tries} tries, wanted {n}")
        body = _templates(rng)
        pre = rng.choice(POLITE) if rng.random() < 0.3 else ""
        seen.setdefault(normalise(f"{pre} {body}"), None)
    return list(seen)


def vocabulary() -> set[str]:
    """Every word the grammar can emit (for checks and dictionaries)."""
    words: set[str] = set()
    for lst in (NAMES, PLACES, ROOMS, DEVICES, ARTISTS, GENRES, TASKS, DAYS, UNITS, MESSAGES,
                WEATHER, OPS, POLITE):
        for item in lst:
            words.update(item.split())
    for text in generate_commands(3000, 0):
        words.update(text.split())
    for i in range(1000):
        words.update(number_words(i).split())
    return words
