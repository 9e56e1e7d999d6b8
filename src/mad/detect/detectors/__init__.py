"""Streaming detectors: each learns and scores one point at a time, scores in [0, 1]."""

from mad.detect.detectors.base import Detector, score_series
from mad.detect.detectors.registry import DETECTORS, create, known, register

__all__ = ["DETECTORS", "Detector", "create", "known", "register", "score_series"]
