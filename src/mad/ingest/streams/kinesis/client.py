"""The boto3 client of the Kinesis backend, and what its errors mean for a caller.

Every call goes through `call`, which turns botocore's exceptions into the house's two kinds:
TerminalError when retrying cannot help (no such stream or shard, a request Kinesis calls
invalid) and TransientError for the rest (throttling, network, the service failing). boto3
is imported inside the functions, so registering the backend costs nothing.
"""

from __future__ import annotations

from typing import Any

from mad.errors import TerminalError, TransientError


def make_client(endpoint_url: str | None, region: str, access_key_id: str | None,
                secret_access_key: str | None, session_token: str | None,
                client_attempts: int) -> Any:
    """A Kinesis client; None credentials mean boto3's usual chain. `client_attempts` bounds
    botocore's own retries of a whole call."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region,
    )
    config = Config(
        retries={"mode": "standard", "max_attempts": client_attempts},
        connect_timeout=5,
        read_timeout=30,
    )
    return session.client("kinesis", endpoint_url=endpoint_url, config=config)


def call(client: Any, stream_name: str, operation: str, **params: Any) -> dict[str, Any]:
    """`client.<operation>(**params)`, with errors translated."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response: dict[str, Any] = getattr(client, operation)(**params)
    except (BotoCoreError, ClientError) as err:
        raise translate(err, operation, stream_name) from err
    return response


def translate(err: Exception, operation: str, stream_name: str) -> Exception:
    """A MadError saying what failed and whether retrying can help."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"Kinesis {operation} on stream {stream_name}"
    if isinstance(err, ClientError):
        code = error_code(err)
        message = err.response.get("Error", {}).get("Message", "")
        if code == "ResourceNotFoundException":
            return TerminalError(f"{where}: stream or shard not found ({message})")
        if code in ("ValidationException", "InvalidArgumentException"):
            return TerminalError(f"{where}: {code}: {message}")
        return TransientError(f"{where}: {code}: {message}")
    if isinstance(err, BotoCoreError):
        return TransientError(f"{where}: {err}")
    return err


def error_code(err: Any) -> str:
    """The AWS error code of a botocore ClientError (`""` when it has none)."""
    return str(err.response.get("Error", {}).get("Code", ""))
