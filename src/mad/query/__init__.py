"""The read functions every consumer shares: the dashboard reads only through them, and the
CLI status commands print what they return. One module per subject:

- `overview`: the pipeline at a glance (`overview`, `rates`);
- `services`: per-service rates, errors and latency over time, anomalies (`services`,
  `service_metrics`, `anomalies`);
- `datasets`: the lake's datasets, partitions, files and a paged preview of any file;
- `jobs`: ETL runs and detection passes (`jobs`, `job_rates`);
- `incidents`: incidents with feedback, silences and alerts sent, and one incident's series;
- `quality`: the quality report, scores with their parts, a metric's history, the gate and
  its decisions, counters, and `accept` (a held partition let through);
- `gate`: what the quality gate holds back from the reads above (`Shown` rows with `held`);
- `ingest`, `etl`, `detection`: the data of `mad ingest|etl|detect status`.

Each function takes the settings first, opens what it needs and closes it, creates nothing,
and returns plain data (dicts, lists, dataclasses; times as aware UTC datetimes). See
docs/query.md. Nothing is imported here, so importing one module does not load the others.
"""
