"""How many bytes a reconstruction folder will take, estimated before the network runs.

Used twice: to refuse an ``--out`` without enough free space in the first seconds (instead of
after minutes of compute), and to say how much was needed when the disk fills up anyway. The
estimate errs high (uncompressed sizes for the compressed formats, except masks, which are mostly
flat) so that a run that passes the check rarely fails later for lack of space.
"""

from __future__ import annotations

from page4d_cli.pipeline.types import ClipBatch

PLY_VERTEX_BYTES = 3 * 4 + 3  # float32 xyz + uchar RGB (export.write_point_clouds)
MAP_BYTES_PER_PIXEL = {"png": 2.0, "npy": 4.0, "exr": 4.0}  # 16-bit PNG (upper bound), float32
MASK_BYTES_PER_PIXEL = 0.25  # 8-bit PNG of a mostly flat binary mask (deflate)
COLMAP_POINT_BYTES = 80 + 27  # one points3D.txt line + its points3D.ply vertex
COLMAP_IMAGE_BYTES_PER_PIXEL = 3.0  # RGB PNG (upper bound)
RECORD_BYTES_PER_SAMPLE = 1_000  # cameras.json + run.json + trajectory line per (t, v)
MARGIN = 1.1


def estimate_output_bytes(batch: ClipBatch, options) -> int:
    """Bytes ``export_reconstruction(out, pred, batch, options)`` writes, plus a 10 % margin.

    ``options`` is a ``write_outputs.ExportOptions``. Points: every content pixel kept except the
    ``conf_percentile`` share (an absolute threshold or a voxel size may keep fewer, never more).
    """
    num_t, num_v, _, height, width = batch.images.shape
    original_pixels = sum(cam.size[0] * cam.size[1] for cam in batch.cameras)  # over cameras, one instant
    total = num_t * num_v * RECORD_BYTES_PER_SAMPLE
    if getattr(options, "write_points", True):
        kept = 1.0
        point_filter = options.point_filter
        if point_filter.conf_threshold is None and point_filter.conf_percentile:
            kept = 1.0 - point_filter.conf_percentile / 100.0
        total += num_t * num_v * height * width * kept * PLY_VERTEX_BYTES
    for fmt in (options.depth_format, options.confidence_format):
        if fmt is not None:
            total += num_t * original_pixels * MAP_BYTES_PER_PIXEL.get(fmt, 4.0)
    if options.mask_mode is not None:
        total += num_t * original_pixels * MASK_BYTES_PER_PIXEL
    if batch.ext_masks is not None:  # the auto masks written to masks/auto
        total += num_t * original_pixels * MASK_BYTES_PER_PIXEL
    if options.colmap_instant is not None:
        points = num_v * height * width
        if options.colmap_max_points:  # 0 = no cap
            points = min(points, options.colmap_max_points)
        total += points * COLMAP_POINT_BYTES + original_pixels * COLMAP_IMAGE_BYTES_PER_PIXEL
    return int(total * MARGIN) + 1_000_000  # + weights_provenance.json and file-system overhead
