"""The S3 object store (`s3://bucket/prefix`): AWS S3, MinIO, LocalStack or moto via boto3.

A put is one PutObject, or a multipart upload above `multipart_threshold`; S3 shows an
object only once either completes. Endpoint, region and credentials come from
`mad.config.AwsSettings` (unset credentials fall back to boto3's usual chain).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field

from mad.errors import ConfigError, TerminalError, TransientError
from mad.registry import Options
from mad.stores import STORES, ObjectNotFound

if TYPE_CHECKING:
    from mad.config import AwsSettings

MIB = 2**20


RULE_ID = "mad-retention:"  # the lifecycle rules retention writes are named so


class S3Store:
    """Objects under `s3://{bucket}/{prefix}`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        aws: AwsSettings | None = None,
        create_bucket: bool = False,
        page_size: int = 1000,
        multipart_threshold: int = 64 * MIB,
        part_size: int = 16 * MIB,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError("s3:// lakes need boto3: pip install boto3==1.43.117") from None
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.page_size, self.threshold, self.part_size = page_size, multipart_threshold, part_size
        style = {"addressing_style": "path"} if aws and aws.endpoint_url else {}
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=aws.endpoint_url if aws else None,
            region_name=aws.region if aws else None,
            aws_access_key_id=aws.access_key_id if aws else None,
            aws_secret_access_key=aws.secret_access_key if aws else None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3=style),
        )
        if create_bucket:
            self._create_bucket(aws.region if aws else "us-east-1")

    def set_expiry(self, rules: dict[str, int]) -> None:
        mine = [{"ID": f"{RULE_ID}{self.prefix}{prefix}"[:255],
                 "Filter": {"Prefix": self.prefix + prefix}, "Status": "Enabled",
                 "Expiration": {"Days": int(days)}}
                for prefix, days in sorted(rules.items())]
        others = [r for r in self._rules() if not str(r.get("ID", "")).startswith(
            f"{RULE_ID}{self.prefix}")]
        if not mine and not others:
            self._call("lifecycle", "", "delete_bucket_lifecycle")
            return
        self._call("lifecycle", "", "put_bucket_lifecycle_configuration",
                   LifecycleConfiguration={"Rules": others + mine})

    def expiry(self) -> dict[str, int]:
        mark = f"{RULE_ID}{self.prefix}"
        return {str(r["Filter"]["Prefix"]).removeprefix(self.prefix): int(
                r["Expiration"]["Days"]) for r in self._rules()
                if str(r.get("ID", "")).startswith(mark)}

    def _rules(self) -> list[dict[str, Any]]:
        try:
            got = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except Exception as err:  # no configuration yet is an error code, not an empty list
            if "NoSuchLifecycleConfiguration" in str(err):
                return []
            raise
        return list(got.get("Rules", []))

    def put(self, key: str, data: bytes) -> None:
        name = self.prefix + key
        if len(data) <= self.threshold:
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            self._call("put", key, "put_object", Key=name, Body=data, ContentMD5=md5)
            return
        upload = self._call("put", key, "create_multipart_upload", Key=name)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), self.part_size), 1):
                chunk = data[start : start + self.part_size]
                done = self._call("put", key, "upload_part", Key=name, UploadId=upload,
                                  PartNumber=number, Body=chunk)
                parts.append({"PartNumber": number, "ETag": done["ETag"]})
            self._call("put", key, "complete_multipart_upload", Key=name, UploadId=upload,
                       MultipartUpload={"Parts": parts})
        except BaseException:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            raise

    def get(self, key: str) -> bytes:
        body = self._call("get", key, "get_object", Key=self.prefix + key)["Body"]
        return bytes(body.read())

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.page_size},
        )
        found: dict[str, int] = {}
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    found[item["Key"][len(self.prefix):]] = int(item["Size"])
        except Exception as err:
            raise self._error("list", prefix, err) from err
        return found

    def delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self.prefix + key)

    def sweep_partial(self, prefix: str, older_than_s: float) -> int:
        """Abort the multipart uploads under `prefix` started over `older_than_s` ago (a
        process killed mid-upload leaves them, billed but invisible)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        swept = 0
        try:
            for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] < cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                        swept += 1
        except Exception as err:
            raise self._error("sweep uploads", prefix, err) from err
        return swept

    def root_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as err:
            found = self._error("head bucket", "", err)
            if isinstance(found, (ObjectNotFound, ConfigError)):
                return False
            raise found from err
        return True

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, "head_object", Key=self.prefix + key)
        except ObjectNotFound:
            return False
        return True

    def _create_bucket(self, region: str) -> None:
        where = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            self._client.create_bucket(Bucket=self.bucket, **where)
        except self._client.exceptions.BucketAlreadyOwnedByYou:
            return  # created earlier by us: nothing to do
        except Exception as err:
            raise self._error("create bucket", "", err) from err

    def _call(self, what: str, key: str, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(Bucket=self.bucket, **params)
        except Exception as err:
            raise self._error(what, key, err) from err

    def _error(self, what: str, key: str, err: Exception) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"{self.url}{key}"
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFound(f"no object {where}")
            if code == "NoSuchBucket":
                return ConfigError(f"S3 bucket {self.bucket!r} does not exist (lake {self.url})")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return TerminalError(f"S3 refused {what} {where}: {code}")
            return TransientError(f"S3 {what} {where} failed: {code or err}")
        if isinstance(err, BotoCoreError):
            return TransientError(f"S3 {what} {where} failed: {err}")
        return err


class S3Options(Options):
    """`lake.s3.*`: how objects are listed and uploaded."""

    page_size: int = Field(1000, ge=1, le=1000, description="keys per ListObjectsV2 page")
    multipart_threshold_bytes: int = Field(64 * MIB, ge=5 * MIB,
                                           description="multipart upload above this")
    part_size_bytes: int = Field(16 * MIB, ge=5 * MIB, le=5 * 1024 * MIB)


@STORES.register("s3", S3Options)
def open_s3(*, location: str, aws: AwsSettings | None = None, create: bool = False,
            page_size: int, multipart_threshold_bytes: int, part_size_bytes: int) -> S3Store:
    """An `S3Store` for `bucket/prefix` (the part of the URL after `s3://`)."""
    bucket, _, prefix = location.partition("/")
    if not bucket:
        raise ConfigError("an s3:// lake URL needs a bucket: s3://bucket[/prefix]")
    return S3Store(bucket, prefix, aws, create_bucket=create, page_size=page_size,
                   multipart_threshold=multipart_threshold_bytes, part_size=part_size_bytes)
