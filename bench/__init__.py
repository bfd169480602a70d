"""vae-bench: benchmark suite for video VAEs."""

__version__ = "0.1.0"
