"""MBMT-Net: multi-backbone, multi-task dense prediction on NYUv2, as a reproducible workflow."""

__version__ = "0.1.0"
