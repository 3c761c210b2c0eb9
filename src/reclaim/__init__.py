"""reclaim: published efficient-ML claims as build targets with computed verdicts."""

__version__ = "0.1.0"
