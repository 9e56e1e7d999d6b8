"""`mad doctor`'s check of the Spark engine: pyspark and Java present, a `spark://` master
accepting connections, and the S3A jars in `etl.engine.spark.jars` for an S3 lake."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mad.setup_checks import TIMEOUT_S, backend_check

if TYPE_CHECKING:
    from mad.config import Settings

S3A_JARS = ("hadoop-aws", "aws-java-sdk-bundle")


@backend_check("engine", "spark")
def check(settings: Settings) -> tuple[bool, str]:
    from mad.stores import split_url

    options: Any = settings.etl.engine.options()
    try:
        import pyspark
    except ImportError:
        return False, "pyspark is not installed: `make spark` (or pip install '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return False, "no Java on PATH (and JAVA_HOME unset): Spark needs Java 17"
    master = str(options.master)
    problems = []
    scheme, _, hosts = master.partition("://")
    if scheme == "spark":
        for host_port in hosts.split(","):
            host, _, port = host_port.rpartition(":")
            if not accepts(host, int(port) if port.isdigit() else 7077):
                problems.append(f"master {host_port} does not accept connections")
    if split_url(settings.lake_url)[0] == "s3":
        jars = [Path(j) for j in options.jars]
        for needed in S3A_JARS:
            found = [j for j in jars if j.name.startswith(needed) and j.name.endswith(".jar")]
            if not found:
                problems.append(f"no {needed} jar in etl.engine.spark.jars (`make spark-jars`)")
            elif not all(j.is_file() for j in found):
                problems.append(f"{needed} jar missing on disk: {found[0]}")
    head = f"pyspark {pyspark.__version__}, master {master}"
    return (False, f"{head}: {'; '.join(problems)}") if problems else (True, f"{head}: ready")


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=TIMEOUT_S):
            return True
    except OSError:
        return False
