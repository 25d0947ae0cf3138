import pytest

from features.errors import InputError
from features.timestamps import parse_timestamp


def test_epoch_seconds_and_milliseconds_give_the_same_instant():
    assert parse_timestamp(1_433_878_777) == parse_timestamp("1433878777000") == 1_433_878_777.0


def test_iso_8601_with_zone_and_naive_as_utc():
    assert parse_timestamp("2015-06-09T19:39:37Z") == 1_433_878_777.0
    assert parse_timestamp("2015-06-09T21:39:37+02:00") == 1_433_878_777.0
    assert parse_timestamp("2015-06-09T19:39:37") == 1_433_878_777.0


def test_ms_store_layout_is_understood():
    assert parse_timestamp("2015/06/09T19:39:37") == 1_433_878_777.0


@pytest.mark.parametrize("bad", ["yesterday", "", None, "-5", True])
def test_bad_timestamps_name_the_field_and_row(bad):
    with pytest.raises(InputError) as error:
        parse_timestamp(bad, row="usage.csv:7")
    assert error.value.field == "timestamp"
    assert "usage.csv:7" in str(error.value)
