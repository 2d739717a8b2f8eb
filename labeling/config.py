"""The labeling config (Label Studio XML) for one building's timeline, and the volunteer instructions.

One task is one building. A ``Repeater`` over ``$timeline`` lays every date out in a grid: a header with the
date, the chip (the building outline and the date are burned into the PNG by the chip service) and one
single-choice state per date. A free-text comment hangs off the building-id text. Label Studio validates the
config with the template names (``state_{{idx}}``), so controls outside the Repeater point at ``bid``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from labeling.errors import ConfigError

__all__ = [
    "COMMENT_NAME",
    "IMAGE_PREFIX",
    "STATES",
    "STATE_PREFIX",
    "TEXT_NAME",
    "InstructionExample",
    "instructions_html",
    "labeling_config",
]

STATES: tuple[str, ...] = ("intact", "damaged", "destroyed", "not_visible")
STATE_PREFIX = "state_"
IMAGE_PREFIX = "img_"
COMMENT_NAME = "comment"
TEXT_NAME = "bid"

_STATE_HELP = {
    "intact": "Roof complete, walls straight, shadow unchanged.",
    "damaged": "Holes in the roof, partial collapse, debris around, but the shape still stands.",
    "destroyed": "Collapsed: the outline is filled with rubble or empty ground.",
    "not_visible": "Cloud, haze, shadow or missing data hide the building. This carries no evidence.",
}


@dataclass(frozen=True)
class InstructionExample:
    """One worked example in the instruction panel.

    Attributes:
        state: which state it illustrates (one of :data:`STATES`).
        caption: what to look for.
        image_url: optional example chip (served by the chip endpoint).
    """

    state: str
    caption: str
    image_url: str = ""


def labeling_config(*, chip_width_px: int = 192) -> str:
    """The Label Studio labeling config for per-building timelines.

    Args:
        chip_width_px: display width of each chip in the grid.

    Returns:
        The XML string (validated against the server when the project is created).
    """
    choices = "\n".join(f'          <Choice value="{s}"/>' for s in STATES)
    cell = chip_width_px + 24
    return f"""<View>
  <Style>
    .st-chip {{ border: 1px solid #ccc; border-radius: 6px; padding: 4px; background: #fafafa; }}
    .st-help {{ font-size: 13px; color: #444; margin-bottom: 8px; }}
  </Style>
  <Header value="Building $building_id" size="4"/>
  <Text name="{TEXT_NAME}" value="$building_id"/>
  <View className="st-help">
    <Header value="Mark the state of the outlined building on EVERY date: intact, damaged, destroyed, or not_visible (cloud, haze, no data). Destruction does not undo itself: once destroyed, later dates stay destroyed unless rebuilt." size="6"/>
  </View>
  <Repeater on="$timeline" indexFlag="{{{{idx}}}}"
            style="display:grid; grid-template-columns: repeat(auto-fill, minmax({cell}px, 1fr)); gap: 8px">
    <View className="st-chip">
      <Header value="$timeline[{{{{idx}}}}].date" size="6"/>
      <Image name="{IMAGE_PREFIX}{{{{idx}}}}" value="$timeline[{{{{idx}}}}].url" maxWidth="{chip_width_px}px" zoom="false"/>
      <Choices name="{STATE_PREFIX}{{{{idx}}}}" toName="{IMAGE_PREFIX}{{{{idx}}}}" choice="single-radio" required="true" showInline="true">
{choices}
      </Choices>
    </View>
  </Repeater>
  <TextArea name="{COMMENT_NAME}" toName="{TEXT_NAME}" placeholder="Optional comment (what made this hard?)" maxSubmissions="1" editable="true" rows="2"/>
</View>
"""


def instructions_html(examples: tuple[InstructionExample, ...] = ()) -> str:
    """The instruction panel shown to volunteers (project ``expert_instruction``).

    Args:
        examples: worked examples; each state's default explanation is always included.

    Returns:
        An HTML fragment.
    """
    rows = "".join(f"<li><b>{html.escape(s)}</b>: {html.escape(_STATE_HELP[s])}</li>" for s in STATES)
    shown = []
    for ex in examples:
        if ex.state not in STATES:
            raise ConfigError(f"instruction example has state {ex.state!r}; use one of {list(STATES)}")
        img = (
            f'<br/><img src="{html.escape(ex.image_url, quote=True)}" width="192" alt="{html.escape(ex.state)}"/>'
            if ex.image_url
            else ""
        )
        shown.append(f"<li><b>{html.escape(ex.state)}</b>: {html.escape(ex.caption)}{img}</li>")
    examples_html = f"<h4>Examples</h4><ul>{''.join(shown)}</ul>" if shown else ""
    return (
        "<h3>Date the destruction of one building</h3>"
        "<p>Each card is one satellite image of the same place, oldest first. The building to judge is "
        "outlined in yellow; its date is written on the image and above it.</p>"
        f"<ul>{rows}</ul>"
        "<p>Judge each date on its own image. If you cannot see the building, choose <b>not_visible</b> "
        "rather than guessing. Use the comment for anything unusual (rebuilt, partial damage, wrong outline).</p>"
        f"{examples_html}"
    )
