"""What feature column names say about the data's shape, checked against ``data.shape`` and ``data.layout``.

Names such as ``t00_x, t00_y, t00_z, t01_x ...`` (sequences) or ``p0_0, p0_1, ... p0_7, p1_0 ...`` (images)
number the axes. The part that changes from the first column to the second is the axis read fastest; it
runs through its values, then starts again. ``data.shape`` read row-major puts its last dimension fastest
(channels of ``[steps, channels]``, width of ``[channels, height, width]``; steps with ``data.layout:
channel_major``), so the two must agree. When they did not, the run trained on scrambled rows and still
exited 0 (accuracy 0.78 for 0.84 on the activity demo). Names without such a part (``f0 ... f95``, free
names) say nothing and pass.
"""

from __future__ import annotations

import re

from ..errors import BadInput
from ..yaml_reader import counted


def name_cycle(names: list[str]) -> list[str] | None:
    """The fastest name part of every column, when it runs through the same few values again and again
    (``x, y, z, x, y, z ...``); None when the names show no such part."""
    tokens = [re.findall(r"\d+|[A-Za-z]+", name) for name in names]
    if len(tokens) < 4 or len({len(t) for t in tokens}) != 1:
        return None
    changed = [i for i, (a, b) in enumerate(zip(tokens[0], tokens[1], strict=True)) if a != b]
    if len(changed) != 1:
        return None
    parts = [t[changed[0]] for t in tokens]
    period = len(set(parts))
    if period >= len(parts) or len(parts) % period or any(p != parts[i % period] for i, p in enumerate(parts)):
        return None
    return parts


def _shown(names: list[str]) -> str:
    return ", ".join(names[:2]) + ", ..."


def check_sequence_names(features: list[str], shape: tuple[int, ...], layout: str) -> None:
    """BadInput when the names of sequence columns contradict ``data.shape`` ([steps, channels]) or
    ``data.layout``; nothing when they agree or say nothing."""
    parts = name_cycle(features)
    if parts is None:
        return
    steps, channels = shape
    period = len(set(parts))
    fastest = steps if layout == "channel_major" else channels
    if layout == "channel_major" and all(part.isalpha() for part in parts):
        # Named channels (x, y, z) cycle fastest: time-major columns, whatever data.shape says (given as
        # [3, 32] too, the check below passed and the run trained on x, y, z as steps).
        raise BadInput(f"data.layout: channel_major reads every step of one channel first, but the columns "
                       f"({_shown(features)}) go through the channels ({', '.join(sorted(set(parts))[:3])}"
                       f"{', ...' if period > 3 else ''}) at each step: they are time-major; leave data.layout "
                       f"out and give data.shape: [{len(features) // period}, {period}] ([steps, channels])")
    if period == fastest:
        return
    if layout == "channel_major" and period == channels:
        raise BadInput(f"data.layout: channel_major reads every step of one channel first, but the columns "
                       f"({_shown(features)}) go through the {channels} channels at each step: they are "
                       "time-major; leave data.layout out (time_major is the default)")
    if layout != "channel_major" and period == steps:
        if all(part.isalpha() for part in parts):  # x, y, z at each step: the shape is given transposed
            named = ", ".join(sorted(set(parts))[:3]) + (", ..." if period > 3 else "")
            raise BadInput(f"data.shape: {list(shape)} reads the columns as {steps} steps of {channels} channels, "
                           f"but their names ({_shown(features)}) go through {steps} channels ({named}) at each "
                           f"step: give data.shape: [{channels}, {steps}] ([steps, channels])")
        raise BadInput(f"data.layout: the sequence columns ({_shown(features)}) look channel-major (every step "
                       f"of one channel, then the next); scribbles reads [steps, channels] = {list(shape)} "
                       "time-major (every channel of step 0, then step 1). Set `data.layout: channel_major` to "
                       "have them reordered")
    n = len(features)
    suggested = [period, n // period] if layout == "channel_major" else [n // period, period]
    raise BadInput(f"data.shape: {list(shape)} reads {fastest} {'steps' if layout == 'channel_major' else 'channels'} "
                   f"before the next {'channel' if layout == 'channel_major' else 'step'}, but the column names "
                   f"({_shown(features)}) go through {period} values: give data.shape: {suggested}")


def check_image_names(features: list[str], shape: tuple[int, ...]) -> None:
    """BadInput when image column names (``p{row}_{col}``, ``c{channel}_{row}_{col}``) go through a row of
    another width than ``data.shape``'s last dimension ([channels, height, width])."""
    parts = name_cycle(features)
    if parts is None:
        return
    width, n = len(set(parts)), len(features)
    if width == shape[-1]:
        return
    # The given channels when they fit (a few: grey, RGB, RGBA), else one: only the suggestion depends on it.
    channels = shape[0] if len(shape) == 3 and n % (shape[0] * width) == 0 and shape[0] <= 4 else 1
    raise BadInput(f"data.shape: {list(shape)} reads rows of {counted(shape[-1], 'pixel')} ([channels, height, "
                   f"width]), but the column names ({_shown(features)}) go through rows of {width}: give data.shape: "
                   f"[{channels}, {n // (channels * width)}, {width}]")
