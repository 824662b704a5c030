"""``preview/trajectory.png``: every camera's path seen from above and from the side, world axes and
camera 0 marked, equal axis scales (a metre across is as long as a metre deep).

The world frame is page4d's (OpenCV axes: x right, y DOWN, z forward, camera 0 at t = 0), so "up" is
-y. ``PLOT_VIEWS`` says which world axis goes where on each panel; ``project`` is the one function
that maps world points to panel coordinates (the drawing and the tests use it).

Drawn with matplotlib's object API (``Figure`` + Agg canvas; no pyplot, no global state, no display):
ticks in world units, equal aspect and a legend come for free, which OpenCV drawing would have to
re-implement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from page4d_cli.pipeline import geometry

# panel -> ((world axis, sign) horizontal, (world axis, sign) vertical, title, horizontal label, vertical label)
PLOT_VIEWS = {
    "top": ((0, 1.0), (2, 1.0), "top-down (looking down, up = -y)", "x (right)", "z (forward)"),
    "side": ((2, 1.0), (1, -1.0), "side (looking along -x)", "z (forward)", "-y (up)"),
}
AXIS_COLOURS = ("0.25", "0.25", "0.25")  # dark grey, labelled: the cameras use the colour cycle
AXIS_NAMES = ("x", "y", "z")


def project(points: np.ndarray, view: str) -> np.ndarray:
    """World points ``[..., 3]`` -> panel coordinates ``[..., 2]`` of ``view`` ("top" or "side")."""
    if view not in PLOT_VIEWS:
        raise ValueError(f"unknown view {view!r}; use one of {', '.join(PLOT_VIEWS)}")
    (ax_h, sign_h), (ax_v, sign_v) = PLOT_VIEWS[view][:2]
    points = np.asarray(points, dtype=np.float64)
    return np.stack([sign_h * points[..., ax_h], sign_v * points[..., ax_v]], axis=-1)


def camera_paths(camera_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``[T, V, 3]`` and viewing directions (optical axis in the world) ``[T, V, 3]``."""
    extrinsic = np.asarray(camera_from_world, dtype=np.float64)
    return geometry.camera_centers(extrinsic), extrinsic[..., 2, :3]


def _scene_size(centres: np.ndarray) -> float:
    """A length for arrows: the rig's extent (1 when every centre coincides, units are arbitrary)."""
    extent = float(np.ptp(centres.reshape(-1, 3), axis=0).max()) if centres.size else 0.0
    return extent if extent > 1e-9 else 1.0


def trajectory_figure(camera_from_world: np.ndarray, labels: Sequence[str]):
    """The two-panel matplotlib ``Figure``; one line per camera labelled ``labels[v]``.

    camera_from_world: ``[T, V, 4, 4]`` (cameras.json's matrices, or ``Prediction.extrinsic``).
    Each camera's line (``Line2D`` with ``label = labels[v]``) holds ``project(centres[:, v], view)``.
    """
    from matplotlib.figure import Figure

    centres, directions = camera_paths(camera_from_world)
    num_cameras = centres.shape[1]
    size = _scene_size(centres)
    figure = Figure(figsize=(11, 5.2), dpi=100)
    # fixed margins: matplotlib's "constrained" layout doubles the time of savefig
    figure.subplots_adjust(left=0.07, right=0.985, bottom=0.1, top=0.87, wspace=0.22)
    colours = [f"C{v % 10}" for v in range(num_cameras)]
    for k, (view, spec) in enumerate(PLOT_VIEWS.items()):
        axes = figure.add_subplot(1, len(PLOT_VIEWS), k + 1)
        axes.set_title(spec[2], fontsize=10)
        axes.set_xlabel(spec[3])
        axes.set_ylabel(spec[4])
        origin = np.zeros(3)
        for axis in range(3):  # world axes at the origin (an axis pointing at the viewer is a dot)
            tip = project(np.eye(3)[axis] * 0.25 * size, view)
            if np.linalg.norm(tip) < 1e-12:
                axes.plot(0, 0, "o", color=AXIS_COLOURS[axis], markersize=4)
                continue
            axes.update_datalim([tip * 1.2, project(origin, view)])  # annotations do not widen the limits
            axes.annotate("", xy=tip, xytext=project(origin, view),
                          arrowprops={"arrowstyle": "->", "color": AXIS_COLOURS[axis], "lw": 1.5})
            axes.text(*(tip * 1.12), AXIS_NAMES[axis], color=AXIS_COLOURS[axis], fontsize=9,
                      ha="center", va="center")
        for v in range(num_cameras):
            path = project(centres[:, v], view)
            is_reference = v == 0
            axes.plot(path[:, 0], path[:, 1], "-", marker=".", color=colours[v], label=labels[v],
                      linewidth=2.2 if is_reference else 1.2, markersize=5)
            start = path[0]
            look = project(directions[0, v], view) * 0.12 * size
            axes.update_datalim([start + look])
            axes.annotate("", xy=start + look, xytext=start,
                          arrowprops={"arrowstyle": "-|>", "color": colours[v], "lw": 1.0})
            axes.plot(*start, marker="*" if is_reference else "o", color=colours[v],
                      markersize=14 if is_reference else 6, markeredgecolor="black", markeredgewidth=0.6)
        axes.set_aspect("equal", adjustable="datalim")
        axes.grid(True, linewidth=0.4, alpha=0.6)
    figure.axes[0].legend(fontsize=8, loc="best", title="start: o (camera 0: *), arrow: view direction",
                          title_fontsize=7)
    figure.suptitle(f"camera trajectories, {centres.shape[0]} instants (world = camera 0 at t = 0; units: the "
                    "network's)", fontsize=10)
    return figure


def write_trajectory_plot(path: Path, camera_from_world: np.ndarray, labels: Sequence[str]) -> Path:
    """Save ``trajectory_figure`` as a PNG at ``path``; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = trajectory_figure(camera_from_world, labels)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return Path(path)
