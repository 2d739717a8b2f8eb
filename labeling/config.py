"""The labeling configs (Label Studio XML) for one building's timeline, and the volunteer instructions.

One task is one building. A ``Repeater`` over ``$timeline`` lays every date out in a grid: a header with the
date and the chip (the building outline and the date are burned into the PNG by the chip service). Two configs
ask about it (:data:`CONFIGS`):

- ``compact`` (the default) asks what the original crowdsourcing asked: the first date on which the building
  looks damaged (or "never damaged" / "cannot tell"), how bad it is, and optionally the dates hidden by cloud,
  haze or missing data. Each date, "never damaged", "cannot tell" and each grade has a key, so a typical building
  takes three keys (date, grade, Ctrl+Enter) or three clicks. The date choices come from the task data
  (``value="$first_damaged_options"``), so one config serves any timeline; the grade question hides itself after
  "never damaged" or "cannot tell". :mod:`labeling.convert` turns the answer into per-date states.
- ``per_date`` asks for one state per date (``state_{{idx}}``), about fifteen clicks per building.

Label Studio validates Repeater configs with the template names (``img_{{idx}}``), so controls outside the
Repeater point at the building-id text ``bid``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from labeling.errors import ConfigError

__all__ = [
    "CANNOT_TELL",
    "COMMENT_NAME",
    "CONFIGS",
    "DATE_KEYS",
    "FIRST_DAMAGED_NAME",
    "FIRST_DAMAGED_OPTIONS",
    "GRADES",
    "GRADE_NAME",
    "HIDDEN_NAME",
    "HIDDEN_OPTIONS",
    "IMAGE_PREFIX",
    "NEVER_DAMAGED",
    "STATES",
    "STATE_PREFIX",
    "TEXT_NAME",
    "InstructionExample",
    "compact_options",
    "config_kind",
    "instructions_html",
    "labeling_config",
]

STATES: tuple[str, ...] = ("intact", "damaged", "destroyed", "not_visible")
CONFIGS: tuple[str, ...] = ("compact", "per_date")
STATE_PREFIX = "state_"
IMAGE_PREFIX = "img_"
COMMENT_NAME = "comment"
TEXT_NAME = "bid"

FIRST_DAMAGED_NAME = "first_damaged"
GRADE_NAME = "grade"
HIDDEN_NAME = "hidden"
FIRST_DAMAGED_OPTIONS = "first_damaged_options"
HIDDEN_OPTIONS = "hidden_options"
NEVER_DAMAGED = "never_damaged"
CANNOT_TELL = "cannot_tell"
GRADES: tuple[str, ...] = ("damaged", "destroyed")
GRADE_KEYS = {"damaged": "d", "destroyed": "x"}
NEVER_KEY = "n"
CANNOT_TELL_KEY = "c"
# one key per date, in date order; skips the grade keys, n, c and Label Studio's own u (unselect)
DATE_KEYS = "1234567890qwertyiopasfghjkl"

_STATE_HELP = {
    "intact": "Roof complete, walls straight, shadow unchanged.",
    "damaged": "Holes in the roof, partial collapse, debris around, but the shape still stands.",
    "destroyed": "Collapsed: the outline is filled with rubble or empty ground.",
    "not_visible": "Cloud, haze, shadow or missing data hide the building. This carries no evidence.",
}
_EXAMPLE_TITLES = {
    "intact": "Intact",
    "damaged": "Damaged",
    "destroyed": "Destroyed",
    "not_visible": "Hidden (cloud, haze, no data)",
}


@dataclass(frozen=True)
class InstructionExample:
    """One worked example in the instruction panel: a real chip of one kind.

    Attributes:
        state: what it shows (one of :data:`STATES`; ``not_visible`` for a chip hidden by cloud).
        caption: what to look for.
        image_url: the example chip (served by the chip endpoint); empty for text only.
    """

    state: str
    caption: str
    image_url: str = ""

    @classmethod
    def chip(
        cls, state: str, building_id: str, date_index: int, *, public_base_url: str, caption: str = ""
    ) -> InstructionExample:
        """An example showing one chip of the project's chip cache (the chip service's URL for it).

        Args:
            state: what the chip shows (``intact``, ``damaged``, ``destroyed`` or ``not_visible``).
            building_id: the building.
            date_index: the date index within the building's timeline.
            public_base_url: where Label Studio's browser fetches chips.
            caption: what to look for; the state's standard explanation when empty.
        """
        if state not in STATES:
            raise ConfigError(f"instruction example has state {state!r}; use one of {list(STATES)}")
        url = f"{public_base_url.rstrip('/')}/chips/{quote(building_id, safe='')}/{int(date_index)}.png"
        return cls(state, caption or _STATE_HELP[state], url)


def config_kind(label_config: str) -> str:
    """Which of :data:`CONFIGS` a project's labeling config is (from its control names)."""
    return "compact" if f'name="{FIRST_DAMAGED_NAME}"' in label_config else "per_date"


def compact_options(dates: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The task data the compact config loads its choices from: one option per date, with its key.

    Args:
        dates: the timeline's ISO dates, in order (distinct: the answer names a date by its value).

    Returns:
        ``{FIRST_DAMAGED_OPTIONS: [...], HIDDEN_OPTIONS: [...]}``: the first-damaged choices (each date, then
        "never damaged" and "cannot tell") and the hidden-date choices (each date; Shift + the date's key).
    """
    first: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    for t, date in enumerate(dates):
        key = DATE_KEYS[t] if t < len(DATE_KEYS) else None
        first.append({"value": date, **({"hotkey": key} if key else {})})
        hidden.append({"value": date, **({"hotkey": f"shift+{key}"} if key else {})})
    first.append({"value": NEVER_DAMAGED, "html": "never damaged", "hotkey": NEVER_KEY})
    first.append({"value": CANNOT_TELL, "html": "cannot tell", "hotkey": CANNOT_TELL_KEY})
    return {FIRST_DAMAGED_OPTIONS: first, HIDDEN_OPTIONS: hidden}


def _grid(chip_width_px: int, per_date_choices: str) -> str:
    cell = chip_width_px + 24
    return f"""  <Repeater on="$timeline" indexFlag="{{{{idx}}}}"
            style="display:grid; grid-template-columns: repeat(auto-fill, minmax({cell}px, 1fr)); gap: 8px">
    <View className="st-chip">
      <Header value="$timeline[{{{{idx}}}}].date" size="6"/>
      <Image name="{IMAGE_PREFIX}{{{{idx}}}}" value="$timeline[{{{{idx}}}}].url" maxWidth="{chip_width_px}px" zoom="false" zoomControl="false" selectionControl="false"/>
{per_date_choices}    </View>
  </Repeater>
"""


def labeling_config(*, chip_width_px: int = 192, kind: str = "compact") -> str:
    """The Label Studio labeling config for per-building timelines.

    Args:
        chip_width_px: display width of each chip in the grid.
        kind: ``compact`` (first damaged date, grade, hidden dates) or ``per_date`` (a state per date).

    Returns:
        The XML string (validated against the server when the project is created).

    Raises:
        ConfigError: an unknown ``kind``.
    """
    if kind not in CONFIGS:
        raise ConfigError(f"labeling config kind {kind!r}; use one of {list(CONFIGS)}")
    style = """  <Style>
    .st-chip { border: 1px solid #ccc; border-radius: 6px; padding: 4px; background: #fafafa; }
    .st-help { font-size: 13px; color: #444; margin-bottom: 8px; }
    .st-answer { border: 2px solid #2b6cb0; border-radius: 8px; padding: 8px 12px; margin: 8px 0;
                 background: #f5f9ff; position: sticky; top: 0; z-index: 10; }
  </Style>"""
    head = f"""<View>
{style}
  <Header value="Building $building_id" size="4"/>
  <Text name="{TEXT_NAME}" value="$building_id"/>
"""
    comment = (
        f'  <TextArea name="{COMMENT_NAME}" toName="{TEXT_NAME}" placeholder="Optional comment (what made this '
        'hard?)" maxSubmissions="1" editable="true" rows="2"/>\n</View>\n'
    )
    if kind == "per_date":
        choices = "\n".join(f'          <Choice value="{s}"/>' for s in STATES)
        per_date = (
            f'      <Choices name="{STATE_PREFIX}{{{{idx}}}}" toName="{IMAGE_PREFIX}{{{{idx}}}}" '
            'choice="single-radio" required="true" showInline="true">\n'
            f"{choices}\n      </Choices>\n"
        )
        helper = """  <View className="st-help">
    <Header value="Mark the state of the outlined building on EVERY date: intact, damaged, destroyed, or not_visible (cloud, haze, no data). Destruction does not undo itself: once destroyed, later dates stay destroyed unless rebuilt." size="6"/>
  </View>
"""
        return head + helper + _grid(chip_width_px, per_date) + comment
    grades = "\n".join(
        f'      <Choice value="{g}" hotkey="{GRADE_KEYS[g]}" hint="{html.escape(_STATE_HELP[g], quote=True)}"/>'
        for g in GRADES
    )
    answer = f"""  <View className="st-answer">
    <Header value="1. First image where the outlined building looks damaged (key in brackets)" size="6"/>
    <Choices name="{FIRST_DAMAGED_NAME}" toName="{TEXT_NAME}" value="${FIRST_DAMAGED_OPTIONS}" choice="single-radio" layout="inline" required="true" requiredMessage="Pick the first date on which the building looks damaged, or never damaged, or cannot tell."/>
    <View visibleWhen="choice-unselected" whenTagName="{FIRST_DAMAGED_NAME}" whenChoiceValue="{NEVER_DAMAGED},{CANNOT_TELL}">
      <Header value="2. How bad is it there and after?" size="6"/>
    </View>
    <Choices name="{GRADE_NAME}" toName="{TEXT_NAME}" choice="single-radio" layout="inline" required="true" requiredMessage="Say how bad the damage is: damaged (still standing) or destroyed (collapsed)." visibleWhen="choice-unselected" whenTagName="{FIRST_DAMAGED_NAME}" whenChoiceValue="{NEVER_DAMAGED},{CANNOT_TELL}">
{grades}
    </Choices>
    <Header value="3. Optional: dates where cloud, haze or missing data hide the building (Shift + key)" size="6"/>
    <Choices name="{HIDDEN_NAME}" toName="{TEXT_NAME}" value="${HIDDEN_OPTIONS}" choice="multiple" layout="inline"/>
  </View>
"""
    return head + answer + _grid(chip_width_px, "") + comment


def instructions_html(examples: tuple[InstructionExample, ...] = (), *, kind: str = "compact") -> str:
    """The instruction panel shown to volunteers (project ``expert_instruction``).

    Args:
        examples: real chips of each kind (intact, damaged, destroyed, hidden by cloud), chosen by the caller
            from the project's chip cache (:meth:`InstructionExample.chip`); shown side by side.
        kind: which config the instructions explain (:data:`CONFIGS`).

    Returns:
        An HTML fragment.

    Raises:
        ConfigError: an example of an unknown state, or an unknown ``kind``.
    """
    if kind not in CONFIGS:
        raise ConfigError(f"labeling config kind {kind!r}; use one of {list(CONFIGS)}")
    rows = "".join(f"<p><b>{html.escape(s)}</b>: {html.escape(_STATE_HELP[s])}</p>" for s in STATES)
    cells = []
    for ex in examples:
        if ex.state not in STATES:
            raise ConfigError(f"instruction example has state {ex.state!r}; use one of {list(STATES)}")
        img = (
            f'<img src="{html.escape(ex.image_url, quote=True)}" width="150" height="150" '
            f'alt="{html.escape(_EXAMPLE_TITLES[ex.state], quote=True)}" style="display:block"/>'
            if ex.image_url
            else ""
        )
        cells.append(
            '<td valign="top" style="vertical-align:top;width:160px;padding:0 8px 8px 0">'
            f"{img}<b>{html.escape(_EXAMPLE_TITLES[ex.state])}</b>: {html.escape(ex.caption)}</td>"
        )
    # a table keeps the examples side by side whatever Label Studio's stylesheet does to figures and lists
    examples_html = (
        f"<h4>What the states look like</h4><table><tr>{''.join(cells)}</tr></table>" if cells else ""
    )
    intro = (
        "<h3>Date the destruction of one building</h3>"
        "<p>Each card is one satellite image of the same place, oldest first. The building to judge is "
        "outlined in yellow; its date is written on the image and above it.</p>"
    )
    if kind == "per_date":
        how = (
            f"{rows}"
            "<p>Judge each date on its own image. If you cannot see the building, choose <b>not_visible</b> "
            "rather than guessing. Use the comment for anything unusual (rebuilt, partial damage, wrong "
            "outline).</p>"
        )
        return intro + how + examples_html
    how = (
        "<p><b>1. First damaged date.</b> Find the first image where the building looks damaged and pick that "
        "date (or press its key: 1, 2, 3 ... as shown in brackets). Every image before it counts as intact. If "
        "it is intact on every image, pick <b>never damaged</b> (key n); if you cannot judge it at all, "
        "<b>cannot tell</b> (key c).</p>"
        "<p><b>2. How bad.</b> <b>damaged</b> (key d): holes, partial collapse, the shape still stands; "
        "<b>destroyed</b> (key x): collapsed, rubble or empty ground. Pick how it looks at its worst.</p>"
        "<p><b>3. Optional: hidden dates.</b> Tick the dates where cloud, haze or missing data hide the "
        "building (Shift + the date's key). They count as no evidence. You do not need to mark clear "
        "images.</p>"
        "<p><b>4. Submit</b> with Ctrl+Enter (or the Submit button).</p>"
        "<p>Do not guess: if the building is hidden right where it changes, mark those dates hidden or choose "
        "cannot tell. Use the comment for anything unusual (rebuilt, partial damage, wrong outline).</p>"
    )
    return intro + how + examples_html
