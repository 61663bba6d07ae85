"""MOV platform analytics worker."""

__version__ = "0.1.0"
