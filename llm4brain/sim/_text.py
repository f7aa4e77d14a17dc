"""Ground-truth descriptions of the simulated clips and the lexicon the attribute parser reads.
"""
from __future__ import annotations


import numpy as np

from ._catalogue import COLOURS, ClipSpec, DIRECTIONS, SCENES, SPEEDS, _check_spec
from ._render import _MOVES

__all__ = ["AGENT_SYNONYMS", "ACTION_SYNONYMS", "describe_clip", "SCENE_KEYWORDS", "description_lexicon"]


#: Nouns used for each agent in descriptions (the first is the canonical one).
AGENT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("person", "figure", "man"), "ball": ("ball", "rubber ball", "beach ball"),
    "car": ("car", "vehicle", "automobile"), "bird": ("bird", "songbird", "feathered bird"),
    "dog": ("dog", "puppy", "hound"), "fish": ("fish", "tropical fish", "pond fish"),
}

# (3rd person verbs, gerunds); {pos} is the possessive pronoun
_ACTION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "waving": (("waves {pos} hand", "waves hello", "waves an arm in the air"),
               ("waving {pos} hand", "waving hello", "waving an arm in the air")),
    "bouncing": (("bounces", "bounds along", "bounces up and down"),
                 ("bouncing", "bounding along", "bouncing up and down")),
    "driving": (("drives", "drives along", "cruises along"), ("driving", "driving along", "cruising along")),
    "flying": (("flies", "flaps {pos} wings and flies", "soars through the air"),
               ("flying", "flapping {pos} wings", "soaring through the air")),
    "jumping": (("jumps", "leaps", "jumps up high"), ("jumping", "leaping", "jumping up high")),
    "swimming": (("swims", "glides through the water", "swims along"),
                 ("swimming", "gliding through the water", "swimming along")),
    "running": (("runs", "sprints", "dashes"), ("running", "sprinting", "dashing")),
    "rolling": (("rolls", "rolls along the ground", "rolls along"),
                ("rolling", "rolling along the ground", "rolling along")),
    "turning": (("turns", "makes a turn", "turns around"), ("turning", "making a turn", "turning around")),
    "landing": (("lands", "comes down to land", "touches down"),
                ("landing", "coming down to land", "touching down")),
    "pecking": (("pecks at the ground", "pecks for food", "pecks at seeds"),
                ("pecking at the ground", "pecking for food", "pecking at seeds")),
    "wagging": (("wags {pos} tail", "wags {pos} tail happily", "wags {pos} tail back and forth"),
                ("wagging {pos} tail", "happily wagging {pos} tail", "wagging {pos} tail back and forth")),
    "reversing": (("reverses", "backs up", "reverses backwards"),
                  ("reversing", "backing up", "reversing backwards")),
    "spinning": (("spins", "spins around", "spins in place"), ("spinning", "spinning around", "spinning in place")),
    "walking": (("walks", "strolls", "walks along"), ("walking", "strolling", "walking along")),
    "clapping": (("claps {pos} hands", "claps", "claps along"), ("clapping {pos} hands", "clapping", "clapping along")),
    "hopping": (("hops", "hops along", "hops forward"), ("hopping", "hopping along", "hopping forward")),
    "sitting": (("sits down", "sits down on {pos} haunches", "settles down to sit"),
                ("sitting down", "sitting down on {pos} haunches", "settling down to sit")),
    "squatting": (("squats", "does squats", "squats down and stands up"),
                  ("squatting", "doing squats", "squatting down and standing up")),
    "falling": (("falls", "drops down", "falls to the ground"), ("falling", "dropping down", "falling to the ground")),
    "dancing": (("dances", "dances around", "dances energetically"),
                ("dancing", "dancing around", "dancing energetically")),
    "cartwheeling": (("does cartwheels", "turns cartwheels", "cartwheels"),
                     ("doing cartwheels", "turning cartwheels", "cartwheeling")),
}

#: Words (stems) of which at least one appears in every description of an action.
ACTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "waving": ("wav",), "bouncing": ("bounc", "bound"), "driving": ("driv", "cruis"),
    "flying": ("fl", "soar"), "jumping": ("jump", "leap"), "swimming": ("swim", "glid"),
    "running": ("run", "sprint", "dash"), "rolling": ("roll",), "turning": ("turn",),
    "landing": ("land", "touch"), "pecking": ("peck",), "wagging": ("wag",),
    "reversing": ("revers", "back"), "spinning": ("spin",), "walking": ("walk", "stroll"),
    "clapping": ("clap",), "hopping": ("hop",), "sitting": ("sit",), "squatting": ("squat",),
    "falling": ("fall", "drop"), "dancing": ("danc",), "cartwheeling": ("cartwheel",),
}

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("", "medium-sized", "mid-sized"),
               "large": ("large", "big", "huge")}
_PERSON_SIZE = {"small": ("short", "small", "little"), "medium": ("", "medium-height", "average-sized"),
                "large": ("tall", "big", "large")}
_SPEED_WORDS = {"slow": ("slowly", "gently", "at a leisurely pace", "unhurriedly"),
                "fast": ("quickly", "rapidly", "fast", "briskly")}
_SPEED_ADJ = {"slow": ("slow", "gentle", "leisurely"), "fast": ("fast", "quick", "rapid")}
_DIR_MOVE = {"right": ("to the right", "towards the right", "from left to right"),
             "left": ("to the left", "towards the left", "from right to left")}
_DIR_STILL = {"right": ("facing right", "turned towards the right", "facing to the right"),
              "left": ("facing left", "turned towards the left", "facing to the left")}
_SCENE_WORDS = {
    "beach": ("on a sunny beach", "at the seaside", "on the sand by the sea"),
    "street": ("on a city street", "along a busy street", "in a street in town"),
    "room": ("in a living room", "inside a cosy room", "indoors in a room"),
    "field": ("in a green field", "on a grassy meadow", "in an open field"),
    "forest": ("in a forest", "among the trees in the woods", "in a leafy forest"),
    "snow": ("in the snow", "in a snowy landscape", "on a snowy winter day"),
    "desert": ("in the desert", "among desert sand dunes", "in a dry, sandy desert"),
    "night": ("at night", "under a starry night sky", "in the dark of night"),
}
_FISH_WATER = {"beach": "in the sea", "room": "in an aquarium"}

_TEMPLATES = (
    "{A_np} {verb} {speed} {dirp} {scene}.",
    "In this video, {a_np} is {gerund} {dirp} {scene}, moving {speed}.",
    "{Scene}, {a_np} {verb} {speed} {dirp}.",
    "The clip shows {a_np} {gerund} {speed} {dirp} {scene}.",
    "{Scene}, there is {a_np} {gerund} {speed} {dirp}.",
    "{A_np} can be seen {gerund} {speed} {dirp} {scene}.",
    "A video of {a_np} {gerund} {dirp} {scene}; the motion is {speed_adj}.",
    "{A_np} is {gerund} {scene}. {tail}",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _agent_np(spec: ClipSpec, i_noun: int, i_size: int, i_form: int) -> str:
    noun = AGENT_SYNONYMS[spec.agent][i_noun]
    if spec.agent == "person":
        size = _PERSON_SIZE[spec.size][i_size]
        form = ("{n} in a {c} shirt", "{n} wearing {c}", "{n} dressed in {c}")[i_form]
        return " ".join(w for w in (size, form.format(n=noun, c=spec.colour)) if w)
    size = _SIZE_WORDS[spec.size][i_size]
    return " ".join(w for w in (size, spec.colour, noun) if w)


def _render_text(spec: ClipSpec, template: str, ch: dict) -> str:
    pos = "their" if spec.agent == "person" else "its"
    verbs, gerunds = _ACTION_WORDS[spec.action]
    moves = (spec.agent, spec.action) in _MOVES
    scene = _SCENE_WORDS[spec.scene][ch["scene"]]
    if spec.agent == "fish":
        scene = f"{_FISH_WATER.get(spec.scene, 'in a pond')} {scene}"
    np_ = _agent_np(spec, ch["noun"], ch["size"], ch["form"])
    fields = dict(
        A_np=_article(np_).capitalize(), a_np=_article(np_),
        verb=verbs[ch["verb"]].format(pos=pos), gerund=gerunds[ch["verb"]].format(pos=pos),
        speed=_SPEED_WORDS[spec.speed][ch["speed"]], speed_adj=_SPEED_ADJ[spec.speed][ch["speed"] % 3],
        dirp=(_DIR_MOVE if moves else _DIR_STILL)[spec.direction][ch["dir"]],
        scene=scene, Scene=scene[0].upper() + scene[1:])
    pron, be, move = ("They", "are", "move") if spec.agent == "person" else ("It", "is", "moves")
    fields["tail"] = (f"{pron} {move} {fields['speed']} {fields['dirp']}." if moves else
                      f"{pron} {be} {fields['dirp']} and {move} {fields['speed']}.")
    return " ".join(template.format(**fields).split())


def describe_clip(spec: ClipSpec, rng: np.random.Generator, n_paraphrases: int = 4
                  ) -> tuple[str, list[str]]:
    """Ground-truth description of a clip and paraphrases with varied wording.

    Parameters
    ----------
    spec : ClipSpec
    rng : numpy.random.Generator
        Chooses the paraphrase templates and synonyms (the description itself is canonical:
        it depends on ``spec`` only).
    n_paraphrases : int, default 4
        Number of paraphrases (>= 3 recommended; at most 7), all different from each other
        and from the description.

    Returns
    -------
    description : str
        e.g. "A small red ball bounces slowly to the right on a sunny beach."
    paraphrases : list of str
    """
    _check_spec(spec)
    n_paraphrases = int(n_paraphrases)
    if not 0 <= n_paraphrases <= len(_TEMPLATES) - 1:
        raise ValueError(f"describe_clip: n_paraphrases must be in [0, {len(_TEMPLATES) - 1}]")
    canon = dict(noun=0, size=0, form=0, verb=0, speed=0, dir=0, scene=0)
    desc = _render_text(spec, _TEMPLATES[0], canon)
    out: list[str] = []
    templates = 1 + rng.permutation(len(_TEMPLATES) - 1)
    for ti in templates[:n_paraphrases]:
        for _ in range(20):
            ch = dict(noun=int(rng.integers(3)), size=int(rng.integers(3)), form=int(rng.integers(3)),
                      verb=int(rng.integers(3)), speed=int(rng.integers(4)), dir=int(rng.integers(3)),
                      scene=int(rng.integers(3)))
            text = _render_text(spec, _TEMPLATES[ti], ch)
            if text != desc and text not in out:
                break
        out.append(text)
    return desc, out


#: Scene keywords: words or phrases of which one names the scene in any description (the
#: phrases of ``_SCENE_WORDS`` and ``_FISH_WATER`` all contain one of them).
SCENE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "seaside", "sea", "by the sea", "shore", "coast"),
    "street": ("street", "city", "town", "road"),
    "room": ("room", "indoors", "aquarium", "living room", "inside"),
    "field": ("field", "meadow", "green field", "grassy meadow", "grass"),
    "forest": ("forest", "woods", "trees", "leafy forest"),
    "snow": ("snow", "snowy", "winter", "snowy landscape"),
    "desert": ("desert", "dunes", "sand dunes", "sandy desert"),
    "night": ("night", "dark", "starry night", "night sky"),
}


def description_lexicon() -> dict:
    """Every word or phrase the descriptions use for each attribute value (JSON-ready).

    Written by the simulator to ``stimuli/lexicon.json`` and read by
    :class:`llm4brain.evaluation.attributes.AttributeParser`, so a text can be mapped back
    onto the clip's agent, action, colour, size, direction, speed and scene whatever
    paraphrase it uses ("automobile", "puppy", "among the trees in the woods", "from right
    to left").

    Returns
    -------
    dict
        ``{"attributes": {attribute: {value: [phrase, ...]}}, "unmarked": {attribute: value}}``.
        ``unmarked`` names the value a description leaves unsaid (a medium-sized agent has no
        size word in the canonical description).
    """
    def words(phrases):
        out = []
        for ph in phrases:
            ph = ph.replace("{pos}", "").strip()
            ph = " ".join(ph.split())
            if ph and ph not in out:
                out.append(ph)
        return out

    agent = {a: words(list(n) + [n[0] + "s"]) for a, n in AGENT_SYNONYMS.items()}
    agent["person"] += ["woman", "boy", "girl", "child", "people", "persons"]
    action: dict[str, list[str]] = {}
    for a, (verbs, gerunds) in _ACTION_WORDS.items():
        # the whole phrase, and its first word (a verb on its own names the action too,
        # except where the first word is too generic: "makes a turn", "does squats")
        phrases = list(verbs) + list(gerunds)
        firsts = [p.split()[0] for p in phrases if p.split()[0] not in _GENERIC_VERBS]
        action[a] = words(phrases + firsts)
    size = {"small": words(_SIZE_WORDS["small"] + _PERSON_SIZE["small"]),
            "medium": words(_SIZE_WORDS["medium"] + _PERSON_SIZE["medium"] + ("medium",)),
            "large": words(_SIZE_WORDS["large"] + _PERSON_SIZE["large"])}
    speed = {k: words(_SPEED_WORDS[k] + _SPEED_ADJ[k]) for k in SPEEDS}
    direction = {k: words(_DIR_MOVE[k] + _DIR_STILL[k] + (k,)) for k in DIRECTIONS}
    scene = {k: words(_SCENE_WORDS[k] + SCENE_KEYWORDS[k]) for k in SCENES}
    colour = {c: [c] for c in COLOURS}
    colour["grey"] = ["grey", "gray"]
    return {"attributes": dict(agent=agent, action=action, colour=colour, size=size,
                               direction=direction, speed=speed, scene=scene),
            "unmarked": {"size": "medium"}}


_GENERIC_VERBS = frozenset({"makes", "making", "does", "doing", "comes", "coming", "settles",
                            "settling", "happily", "turns", "turning"})
