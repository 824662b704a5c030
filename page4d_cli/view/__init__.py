"""``page4d view``: a reconstruction folder in Rerun (``session.view``), read by ``folder.ReconstructionFolder``."""

from page4d_cli.view.folder import ReconstructionFolder, ViewError
from page4d_cli.view.session import ViewOptions, view

__all__ = ["ReconstructionFolder", "ViewError", "ViewOptions", "view"]
