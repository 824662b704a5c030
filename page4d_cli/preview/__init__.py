"""Pictures written with every reconstruction: overview grid, depth video, trajectory plot (``write.py``)."""

from page4d_cli.preview.write import PreviewOptions, write_previews

__all__ = ["PreviewOptions", "write_previews"]
