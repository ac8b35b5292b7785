"""Evaluation of DINO backbones on frozen features: weighted k-NN, a linear probe, and SPARO
slots chosen by k-NN accuracy. Each module is also a command (``python -m ...``)."""

from .features import FrozenFeatures, extract_features
from .knn import knn_accuracies, knn_scores
from .linear_probe import linear_probe_accuracies, train_linear_probe
from .select import select_knn_slots, select_on_memory

__all__ = [
    "FrozenFeatures",
    "extract_features",
    "knn_accuracies",
    "knn_scores",
    "linear_probe_accuracies",
    "select_knn_slots",
    "select_on_memory",
    "train_linear_probe",
]
