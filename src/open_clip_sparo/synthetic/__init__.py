"""The synthetic world (coloured shapes and their captions) and the data sets made from it."""

from .datasets import generate

__all__ = ["generate"]
