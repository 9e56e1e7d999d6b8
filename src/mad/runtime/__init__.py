"""The runtime: what keeps stages running. The supervisor behind `mad up` and
`mad ingest serve` (`supervisor`), the servers and child processes it runs (`servers`,
`writer`), the ETL -> detection loop (`lake_loop`), signal handling (`signals`) and the one
watch loop every `--watch` uses (`watch`). Stages never import it."""
