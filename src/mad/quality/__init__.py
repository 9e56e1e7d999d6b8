"""Stage 02 quality: checks as plans after every ETL run, their history, and the gate."""
