"""Colours of the preview tiles: depth and confidence colour maps with one clip-wide range, the dynamic
mask overlay, and the colour bar that states the depth scale.

One range for the whole clip (not per frame) so that a colour means the same depth in every tile and
every video frame: flicker in the prediction shows as flicker in the picture, not hidden by
per-frame normalisation.

Arrays: images are RGB uint8 ``[H, W, 3]``; depth and confidence are float ``[H, W]`` where values
that are not finite or <= 0 are invalid (drawn in ``INVALID_RGB``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

# Turbo for depth (perceptually ordered, readable at small sizes: near = blue ... far = red),
# viridis for confidence (a different map, so the two columns are never confused).
DEPTH_COLORMAP = cv2.COLORMAP_TURBO
CONFIDENCE_COLORMAP = cv2.COLORMAP_VIRIDIS
INVALID_RGB = (0, 0, 0)
MASK_RGB = (255, 40, 40)
MASK_ALPHA = 0.55
# The range ignores the extreme 2 % at each end: a few wild pixels must not wash out the map.
RANGE_PERCENTILES = (2.0, 98.0)
_RANGE_SAMPLE = 1_000_000


@dataclass(frozen=True)
class ValueRange:
    """Values mapped to the two ends of a colour map (``low`` -> first colour, ``high`` -> last)."""

    low: float
    high: float
    constant: bool = False  # every valid value was the same (or none was valid): the range is made up

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"colour range needs finite low < high, got [{self.low}, {self.high}]")


def valid_values(values: np.ndarray) -> np.ndarray:
    """Bool mask of the usable entries (finite and > 0)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0)


def robust_range(samples: np.ndarray) -> ValueRange:
    """The clip-wide range from the valid entries of ``samples`` (any shape), percentiles ``RANGE_PERCENTILES``.

    Falls back to a unit interval around the value when everything is equal or nothing is valid.
    """
    values = samples[valid_values(samples)].astype(np.float64)
    if values.size > _RANGE_SAMPLE:
        values = values[:: values.size // _RANGE_SAMPLE]
    if values.size == 0:
        return ValueRange(0.0, 1.0, constant=True)
    low, high = np.percentile(values, RANGE_PERCENTILES)
    if not high > low:
        low, high = float(values.min()), float(values.max())
    if not high > low:
        centre = float(low)
        return ValueRange(centre - 0.5 * max(abs(centre), 1.0), centre + 0.5 * max(abs(centre), 1.0), constant=True)
    return ValueRange(float(low), float(high))


@functools.lru_cache(maxsize=None)
def colormap_lut(colormap: int) -> np.ndarray:
    """The 256 RGB colours ``[256, 3]`` uint8 of an OpenCV colour map, in order low -> high."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    lut = cv2.cvtColor(cv2.applyColorMap(ramp, colormap), cv2.COLOR_BGR2RGB).reshape(256, 3)
    lut.setflags(write=False)  # cached and shared
    return lut


def value_levels(values: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """Colour-map index 0..255 of every value (clipped to the range) ``[H, W]`` uint8."""
    scaled = (values.astype(np.float64) - value_range.low) / (value_range.high - value_range.low)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def colorize(values: np.ndarray, value_range: ValueRange, colormap: int = DEPTH_COLORMAP) -> np.ndarray:
    """``[H, W]`` values -> ``[H, W, 3]`` RGB uint8; invalid entries are ``INVALID_RGB``."""
    rgb = colormap_lut(colormap)[value_levels(values, value_range)]  # a copy (fancy indexing)
    rgb[~valid_values(values)] = INVALID_RGB
    return rgb


def log_confidence(confidence: np.ndarray) -> np.ndarray:
    """log(conf) for VGGT-style confidences (>= 1, heavy-tailed); invalid stays NaN; > 0 for conf > 1."""
    out = np.full(confidence.shape, np.nan)
    good = valid_values(confidence)
    out[good] = np.log(confidence[good].astype(np.float64)) + 1e-6  # conf = 1 is valid, keep it > 0
    return out


def mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image, darkened, with the dynamic part (``mask > 0.5``) tinted ``MASK_RGB``."""
    dim = (image.astype(np.float32) * 0.6).astype(np.float32)
    dynamic = mask > 0.5
    dim[dynamic] = (1 - MASK_ALPHA) * image[dynamic].astype(np.float32) + MASK_ALPHA * np.asarray(MASK_RGB, np.float32)
    return np.clip(np.rint(dim), 0, 255).astype(np.uint8)


def colour_bar(width: int, height: int, colormap: int = DEPTH_COLORMAP) -> np.ndarray:
    """A horizontal colour bar ``[height, width, 3]`` RGB uint8, low at the left, high at the right."""
    levels = np.rint(np.linspace(0, 255, max(width, 1))).astype(np.uint8)
    return np.repeat(colormap_lut(colormap)[levels][None], height, axis=0)


def format_range(value_range: ValueRange) -> tuple[str, str]:
    """Labels of a range's two ends, with enough decimals to tell them apart (1.0707 / 1.0803, 1.1 / 4.0)."""
    span = value_range.high - value_range.low
    decimals = int(min(8, max(0, 1 - np.floor(np.log10(span)))))
    return f"{value_range.low:.{decimals}f}", f"{value_range.high:.{decimals}f}"
