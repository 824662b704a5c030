"""The preview grid: cameras (rows) x [input | depth | dynamic mask | confidence] (columns), one section
per instant, under one header that names the columns and carries the colour bars.

    +-------+---------+-----------------+--------------+----------------+
    |       | input   | depth  [bar]    | dynamic mask | confidence     |   header
    +-------+---------+-----------------+--------------+----------------+
    | instant 0 · 0.000 s                                                |   section title
    | cam00 | tile    | tile            | tile         | tile           |   one row per camera
    | cam01 | ...                                                        |
    +--------------------------------------------------------------------+

``overview.png`` stacks a few sections; every frame of ``depth.mp4`` is the header plus one section.
``GridLayout.tile_box`` is the one place that says where a tile is (the drawing and the tests use it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from page4d_cli.preview.colors import (
    CONFIDENCE_COLORMAP,
    DEPTH_COLORMAP,
    MASK_RGB,
    ValueRange,
    colorize,
    colour_bar,
    format_range,
    log_confidence,
    mask_overlay,
)
from page4d_cli.preview.source import PreviewClip

COLUMNS = ("input", "depth", "dynamic mask", "confidence")
DEPTH_COLUMN = COLUMNS.index("depth")
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
DEFAULT_TILE_WIDTH = 200


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a grid with ``num_sections`` instants (all sizes in output pixels)."""

    tile_width: int
    row_heights: tuple[int, ...]  # one per camera
    num_sections: int
    label_width: int = 78
    header_height: int = 52
    title_height: int = 22
    gap: int = 3

    @classmethod
    def for_clip(cls, clip: PreviewClip, num_sections: int, tile_width: int = DEFAULT_TILE_WIDTH) -> "GridLayout":
        """Tiles ``tile_width`` wide; each camera's row keeps its content's aspect ratio."""
        heights = []
        for v in range(clip.num_cameras):
            width, height = clip.content_size(v)
            heights.append(max(8, round(tile_width * height / max(width, 1))))
        return cls(tile_width=tile_width, row_heights=tuple(heights), num_sections=num_sections)

    @property
    def section_height(self) -> int:
        return self.title_height + sum(h + self.gap for h in self.row_heights)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole picture."""
        width = self.label_width + len(COLUMNS) * (self.tile_width + self.gap)
        return width, self.header_height + self.num_sections * self.section_height

    def column_x(self, column: int) -> int:
        return self.label_width + column * (self.tile_width + self.gap)

    def tile_box(self, section: int, camera: int, column: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of one tile, x1/y1 exclusive."""
        y0 = self.header_height + section * self.section_height + self.title_height
        y0 += sum(h + self.gap for h in self.row_heights[:camera])
        x0 = self.column_x(column)
        return x0, y0, x0 + self.tile_width, y0 + self.row_heights[camera]


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = FONT_SCALE) -> None:
    cv2.putText(canvas, text, (int(x), int(y)), FONT, scale, TEXT, 1, cv2.LINE_AA)


def _text_width(text: str, scale: float = FONT_SCALE) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def _bar_with_labels(canvas: np.ndarray, x: int, y: int, width: int, colormap: int, value_range: ValueRange,
                     caption: str) -> None:
    """A colour bar with its low and high values under it and a caption."""
    bar_height = 10
    canvas[y:y + bar_height, x:x + width] = colour_bar(width, bar_height, colormap)
    low, high = format_range(value_range)
    if value_range.constant:  # e.g. ground truth without confidence: say so instead of a made-up scale
        canvas[y:y + bar_height, x:x + width] = BACKGROUND
        low = high = ""
        caption = f"{caption}: constant"
    _text(canvas, low, x, y + bar_height + 12)
    _text(canvas, high, x + width - _text_width(high), y + bar_height + 12)
    _text(canvas, caption, x + (width - _text_width(caption)) // 2, y + bar_height + 12)


def draw_header(canvas: np.ndarray, layout: GridLayout, depth_range: ValueRange, confidence_range: ValueRange,
                has_mask: bool) -> None:
    """Column titles; colour bars (with values) under depth and confidence; a swatch under the mask."""
    for column, title in enumerate(COLUMNS):
        _text(canvas, title, layout.column_x(column) + 2, 14, 0.45)
    bar_y = 22
    _bar_with_labels(canvas, layout.column_x(DEPTH_COLUMN), bar_y, layout.tile_width, DEPTH_COLORMAP,
                     depth_range, "z-depth")
    _bar_with_labels(canvas, layout.column_x(3), bar_y, layout.tile_width, CONFIDENCE_COLORMAP,
                     confidence_range, "log conf")
    x = layout.column_x(2)
    if has_mask:
        canvas[bar_y:bar_y + 10, x:x + 14] = MASK_RGB
        _text(canvas, "dynamic (M > 0.5)", x + 18, bar_y + 9)
    else:
        _text(canvas, "no mask predicted", x, bar_y + 9)


def tile_images(clip: PreviewClip, t: int, v: int, width: int, height: int, depth_range: ValueRange,
                confidence_range: ValueRange) -> list[np.ndarray]:
    """The four tiles of camera v at instant t, each ``[height, width, 3]`` RGB uint8.

    Maps are sampled (nearest) BEFORE colouring, so every tile pixel shows the colour of one predicted
    value (never a blend of two depths).
    """
    tiles = clip.tiles(t, v, width, height)
    image = tiles["image"]
    if tiles["mask"] is None:
        overlay = (image.astype(np.float32) * 0.6).astype(np.uint8)
    else:
        overlay = mask_overlay(image, tiles["mask"])
    return [image, colorize(tiles["depth"], depth_range, DEPTH_COLORMAP), overlay,
            colorize(log_confidence(tiles["confidence"]), confidence_range, CONFIDENCE_COLORMAP)]


def draw_section(canvas: np.ndarray, layout: GridLayout, section: int, clip: PreviewClip, t: int,
                 depth_range: ValueRange, confidence_range: ValueRange) -> None:
    """Title line and one row of four tiles per camera for instant t."""
    y_title = layout.header_height + section * layout.section_height
    _text(canvas, f"instant {t} / {clip.num_instants - 1}   {clip.timestamp(t):.3f} s", 4, y_title + 15, 0.45)
    for v in range(clip.num_cameras):
        x0, y0, x1, y1 = layout.tile_box(section, v, 0)
        for column, tile in enumerate(tile_images(clip, t, v, x1 - x0, y1 - y0, depth_range, confidence_range)):
            bx0, by0, bx1, by1 = layout.tile_box(section, v, column)
            canvas[by0:by1, bx0:bx1] = tile
        for k, part in enumerate(clip.camera_label(v).split(" ", 1)):
            _text(canvas, part[:12], 4, y0 + 14 + 14 * k)


def render_grid(clip: PreviewClip, instants: Sequence[int], layout: GridLayout, depth_range: ValueRange,
                confidence_range: ValueRange) -> np.ndarray:
    """The whole picture ``[H, W, 3]`` RGB uint8: header + one section per instant in ``instants``."""
    if len(instants) != layout.num_sections:
        raise ValueError(f"layout has {layout.num_sections} sections, {len(instants)} instants given")
    width, height = layout.size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    draw_header(canvas, layout, depth_range, confidence_range, clip.has_mask)
    for section, t in enumerate(instants):
        draw_section(canvas, layout, section, clip, t, depth_range, confidence_range)
    return canvas


def overview_instants(num_instants: int, count: int = 3) -> list[int]:
    """``count`` instants spread over the clip (first, middle, last), without repeats."""
    return sorted({int(round(x)) for x in np.linspace(0, num_instants - 1, min(count, num_instants))})
