"""Ground-truth clips: the format (read/write), ``page4d data check`` and ``page4d data synth``.

    from page4d_cli.data import read_gt_clip, list_clips, write_gt, write_gt_clip
"""

from page4d_cli.data.cameras_file import CamerasFile, CameraTrack, read_cameras_file
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.gt_clip import GTClip, is_gt_clip, list_clips, read_gt_clip
from page4d_cli.data.gt_write import write_gt, write_gt_clip

__all__ = ["CameraTrack", "CamerasFile", "DataFormatError", "GTClip", "is_gt_clip", "list_clips",
           "read_cameras_file", "read_gt_clip", "write_gt", "write_gt_clip"]
