"""Decent Sampler: every pad as a `.dspreset` in one `.dsbundle` folder, played like the SFZ
export (the same keys, the same two controllers choosing the cell).

A `.dsbundle` is a folder holding presets, their samples and a `DSLibraryInfo.xml` (the layout
Decent Sampler's library browser reads). In a preset each cell is a `<group>`: it answers only
while the x controller's last value lies in its column's band and the y controller's in its
row's (`loCCN`/`hiCCN`, Decent Sampler's form of SFZ's `locc`/`hicc`: the same bands as the SFZ
export, `zones.cc_ranges`), and holds one sample per pitch with the SFZ export's key ranges
(`zones.key_ranges`). Two labelled knobs on the preset's page show the controllers: each follows
its CC (a `<midi><cc>` binding to the knob's value); turning a knob by hand chooses nothing (a
CC range reads the MIDI that comes in), and the page says so. Which cell plays before a
controller has moved is Decent Sampler's to decide (its guide does not say; a preset has no
`set_cc`): move both once.

The schema the suite validates every preset against (an unofficial one, now kept by Decent
Sampler's author) does not declare the XY pad the guide documents, so the page has the two knobs;
sample paths keep to the characters it allows (letters, digits, `_`, `-`, `.`, `/`).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..finished import Finished
from ..pads import place
from .zones import cells, xml_text

SAMPLES = "Samples"
LIBRARY_INFO = "DSLibraryInfo.xml"
UI_WIDTH, UI_HEIGHT = 812, 375  # the size the developers' guide recommends


def write(
    source: Finished,
    out: Path,
    bar,
    cc_x: int,
    cc_y: int,
    extend: int,
    attack: float,
    release: float,
    loop: tuple | None,
) -> list[str]:
    """Write `out/<name>.dsbundle/`: a `<pad>.dspreset` per pad, its samples under
    `Samples/<pad>/` and the library's info; returns the files written (relative to `out`).
    The options are the SFZ export's (`export.OPTIONS`)."""
    bundle = f"{source.name}.dsbundle"
    (out / bundle).mkdir()
    written = []
    for pad in source.pads:
        folder = f"{SAMPLES}/{pad.name}"
        corners = xml_text(
            ", ".join(
                f"{label}: {i.label}" for label, i in zip(source.labels, pad.corners, strict=True)
            )
        )
        groups = []
        for name, (lo_x, hi_x), y, zones in cells(source, pad, extend):
            condition = f'loCC{cc_x}="{lo_x}" hiCC{cc_x}="{hi_x}"'
            if y is not None:
                condition += f' loCC{cc_y}="{y[0]}" hiCC{cc_y}="{y[1]}"'
            samples = []
            for zone in zones:
                place(zone.cell.path, out / bundle / folder / zone.cell.file)
                written.append(f"{bundle}/{folder}/{zone.cell.file}")
                sample = (
                    f'<sample path="{folder}/{zone.cell.file}" rootNote="{zone.pitch}" '
                    f'loNote="{zone.low}" hiNote="{zone.high}"'
                )
                looped = zone.loop(loop) if loop is not None else None
                if looped is not None:
                    sample += f' loopEnabled="true" loopStart="{looped[0]}" loopEnd="{looped[1]}"'
                samples.append(f"      {sample}/>")
                bar.update()
            groups += [f'    <group name="{name}" {condition}>', *samples, "    </group>"]
        text = _preset(source, pad.name, corners, groups, cc_x, cc_y, attack, release)
        (out / bundle / f"{pad.name}.dspreset").write_text(text)
        written.append(f"{bundle}/{pad.name}.dspreset")
    info = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<DecentSamplerLibraryInfo name={quoteattr(source.name)}/>\n"
    )
    (out / bundle / LIBRARY_INFO).write_text(info)
    return written + [f"{bundle}/{LIBRARY_INFO}"]


def _preset(source, pad: str, corners: str, groups, cc_x, cc_y, attack, release) -> str:
    """A pad's preset: its page (the knobs that show the controllers), its groups, and the
    bindings that move the knobs with the controllers."""
    knob = (
        '      <labeled-knob x="{x}" y="150" width="120" height="120" label={label} '
        'type="float" minValue="0" maxValue="127" value="0" textColor="FFFFFFFF" '
        'trackForegroundColor="FFFF4F8B"/>'
    )
    knobs = [knob.format(x=300, label=quoteattr(f"x: CC {cc_x}"))]
    follow = [_follow(cc_x, 2)]  # UI positions count the two labels before the knobs
    if not source.line:
        knobs.append(knob.format(x=440, label=quoteattr(f"y: CC {cc_y}")))
        follow.append(_follow(cc_y, 3))
    title = xml_text(f"{source.name} {pad}" if source.kind == "library" else source.name)
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f"<!-- {title}: a soundspace {source.kind}, by soundspace export; "
            f"corners {corners}; model {source.model}, seed {source.seed} -->",
            '<DecentSampler minVersion="1.6.0">',
            f'  <ui width="{UI_WIDTH}" height="{UI_HEIGHT}" bgColor="FF111111">',
            '    <tab name="main">',
            f'      <label x="20" y="20" width="770" height="30" text={quoteattr(title)} '
            'textColor="FFFFFFFF" textSize="22"/>',
            f'      <label x="20" y="60" width="770" height="60" text={quoteattr(corners)} '
            'textColor="FFAAAAAA" textSize="14"/>',
            *knobs,  # positions 2 and 3: after the two labels above (bindings count them)
            '      <label x="20" y="300" width="770" height="40" '
            f"text={quoteattr(_how(source, cc_x, cc_y))} "
            'textColor="FFAAAAAA" textSize="14"/>',
            "    </tab>",
            "  </ui>",
            f'  <groups attack="{attack:g}" release="{release:g}">',
            *groups,
            "  </groups>",
            "  <midi>",
            *follow,
            "  </midi>",
            "</DecentSampler>",
            "",
        ]
    )


def _how(source, cc_x: int, cc_y: int) -> str:
    """What the page says of its knobs: they show the controllers, which choose the cell."""
    moved = f"CC {cc_x} (x)" if source.line else f"CC {cc_x} (x) and CC {cc_y} (y)"
    return f"Move {moved} on your controller to choose the cell: the knobs show where they are."


def _follow(cc: int, knob: int) -> str:
    """The binding that moves knob `knob` of the page with controller `cc`."""
    return (
        f'    <cc number="{cc}"><binding level="ui" type="control" position="{knob}" '
        'parameter="VALUE" translation="linear" translationOutputMin="0" '
        'translationOutputMax="127"/></cc>'
    )
