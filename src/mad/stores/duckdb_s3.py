"""How a DuckDB connection reaches an S3 lake: the httpfs extension, loaded offline from the
`duckdb-extension-httpfs` package, and one secret with the endpoint and credentials of
`aws.*` (path-style URLs and plain HTTP for an `http://` endpoint such as MinIO or moto).
Shared by the ETL's DuckDB engine and `mad query`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from mad.config import AwsSettings


def load_s3(con: duckdb.DuckDBPyConnection, aws: AwsSettings, name: str = "mad_s3") -> None:
    """Load httpfs into `con` and create (or replace) the secret `name` for `aws`."""
    from duckdb_extensions import import_extension

    import_extension("httpfs", con=con)
    con.execute("LOAD httpfs")
    opts: dict[str, Any] = {"TYPE": "S3", "REGION": aws.region}
    if aws.access_key_id:
        opts.update(KEY_ID=aws.access_key_id, SECRET=aws.secret_access_key or "")
    if aws.endpoint_url:
        scheme, _, host = str(aws.endpoint_url).partition("://")
        opts.update(ENDPOINT=host.rstrip("/") or scheme, URL_STYLE="path",
                    USE_SSL="true" if scheme == "https" else "false")
    body = ", ".join(f"{k} '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in opts.items())
    con.execute(f'CREATE OR REPLACE SECRET "{name}" ({body})')
