"""Stage 04: streaming anomaly detectors, the decision engine and NAB scoring."""
