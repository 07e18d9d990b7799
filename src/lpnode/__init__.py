"""lpnode: a Python implementation of the Livepeer AI network node."""

__version__ = "0.1.0"
