"""brfjax: Balanced Resonate-and-Fire spiking neural networks in JAX/Flax."""

__version__ = "0.1.0"
