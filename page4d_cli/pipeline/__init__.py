"""The reconstruction pipeline: read cameras, run the network, export results (library API)."""
