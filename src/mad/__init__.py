"""mad: Metrics Anomaly Detection for a bank's microservices."""

__version__ = "0.1.0"
