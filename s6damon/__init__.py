"""s6damon: data- and model-side compression of self-supervised speech models for real-time ASR.

The core package holds the algorithms only; it imports neither Prefect nor DVC.
"""

__version__ = "0.1.0"
