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


def test_named_and_strftime_formats():
    assert parse_timestamp("1433878777000", fmt="epoch_ms") == 1_433_878_777.0
    assert parse_timestamp("5", fmt="epoch_s") == 5.0
    assert parse_timestamp("09.06.2015 19:39", fmt="%d.%m.%Y %H:%M") == 1_433_878_740.0
    with pytest.raises(InputError, match="pattern"):
        parse_timestamp("2015-06-09", fmt="%d.%m.%Y")
    with pytest.raises(InputError, match="not a number"):
        parse_timestamp("2015-06-09", fmt="epoch_s")


def test_unknown_format_name_is_refused():
    from features.timestamps import check_timestamp_format

    with pytest.raises(InputError, match="timestamp_format"):
        check_timestamp_format("unix")
    assert check_timestamp_format("%Y") == "%Y"
