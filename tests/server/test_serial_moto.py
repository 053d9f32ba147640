"""The S3 emulator behind the S3 store's tests answers conditional copies as S3 does
(devenv/serial_moto.py fills moto's gap), so a race the store handles is not lost to the fake."""

from __future__ import annotations

import botocore.exceptions
import pytest
from tfstate_harness import Moto


def test_a_copy_whose_source_changed_is_refused_as_on_s3(moto: Moto) -> None:
    bucket = moto.new_bucket()
    s3 = moto.client()
    first = s3.put_object(Bucket=bucket, Key="state", Body=b"one")["ETag"]
    s3.put_object(Bucket=bucket, Key="state", Body=b"two")
    source = {"Bucket": bucket, "Key": "state"}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.copy_object(Bucket=bucket, Key="v1", CopySource=source, CopySourceIfMatch=first)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="v1")
    current = s3.head_object(Bucket=bucket, Key="state")["ETag"]
    s3.copy_object(Bucket=bucket, Key="v2", CopySource=source, CopySourceIfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"two"
