"""Stage 00: the banking-services simulator (backfill and live), with ground-truth labels."""
