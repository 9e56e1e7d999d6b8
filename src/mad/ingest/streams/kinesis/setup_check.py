"""`mad doctor`'s check of the Kinesis stream: it exists (or will be created), is ACTIVE,
and how many open shards it has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mad.setup_checks import NOTE, backend_check, one_line

if TYPE_CHECKING:
    from mad.config import Settings


@backend_check("stream", "kinesis")
def check(settings: Settings) -> tuple[bool, str]:
    from mad.ingest.streams.kinesis.client import make_client

    options: Any = settings.ingest.stream.options()
    aws = settings.aws
    client = make_client(aws.endpoint_url, aws.region, aws.access_key_id,
                         aws.secret_access_key, None, client_attempts=1)
    name = options.stream_name
    where = f"stream {name} at {aws.endpoint_url or 'AWS ' + aws.region}"
    try:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            if options.create:
                return True, (f"{where}: {NOTE}the first `mad ingest serve` creates it with "
                              f"{options.shards} shards")
            return False, (f"{where}: does not exist; create it, or set "
                           "ingest.stream.kinesis.create: true")
        return False, f"{where}: cannot reach Kinesis: {one_line(str(err))}"
    status, shards = summary["StreamStatus"], summary.get("OpenShardCount")
    note = "" if shards == options.shards else \
        f" (ingest.stream.kinesis.shards says {options.shards}; the stream keeps its own)"
    return status == "ACTIVE", f"{where}: {status}, {shards} open shard(s){note}"
