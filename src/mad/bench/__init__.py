"""Scorers and benchmarks that drive several stages: NAB (`nab`, `nab_io`, `nab_run`) and
the simulator's labelled incidents through ETL and detection (`incidents`)."""
