"""page4d: synchronized multi-camera video in, 4D reconstruction out.

The command line (``page4d ...``) is a thin shell over this package and ``models``:
``page4d_cli.pipeline`` holds the reconstruction pipeline, ``page4d_cli.weights`` the weights registry.
"""

__version__ = "0.1.0"
