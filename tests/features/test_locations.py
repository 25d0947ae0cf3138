import pytest

from features.errors import InputError
from features.locations import SUPPORTED_SCHEMES, check_warehouse, warehouse_scheme


@pytest.mark.parametrize(
    "uri",
    ["./warehouse", "/srv/recqa/warehouse", "warehouse", "C:\\data\\warehouse", "file:///srv/wh", "s3://bucket/prefix",
     "S3://bucket", "gs://bucket/wh", "az://container/wh", "memory://wh"],
)
def test_local_paths_and_lance_schemes_pass_unchanged(uri):
    assert check_warehouse(uri) == uri


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [("http://host/warehouse", "http"), ("s4://bucket", "s4"), ("hdfs://nn/wh", "hdfs"), ("ftp://x/y", "ftp"), ("db://remote", "db")],
)
def test_other_schemes_are_refused_naming_the_flag_and_the_supported_ones(uri, scheme):
    with pytest.raises(InputError) as caught:
        check_warehouse(uri)
    message = str(caught.value)
    assert caught.value.field == "--warehouse" and "--warehouse" in message
    assert f"'{scheme}://'" in message
    assert all(f"{s}://" in message for s in SUPPORTED_SCHEMES) and "local path" in message


@pytest.mark.parametrize("uri", ["", "   ", "s3://", "gs:///"])
def test_empty_locations_are_refused(uri):
    with pytest.raises(InputError, match="--warehouse"):
        check_warehouse(uri)


def test_the_flag_named_is_the_callers():
    with pytest.raises(InputError, match="RECQA_WAREHOUSE"):
        check_warehouse("http://x/y", "RECQA_WAREHOUSE")


def test_scheme_is_none_for_local_paths():
    assert warehouse_scheme("./a://b") is None and warehouse_scheme("Memory://x") == "memory"

