"""Stage 01, ingest: HTTP ingest API -> stream -> raw lake writer."""
