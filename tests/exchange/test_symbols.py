from datetime import date
from decimal import Decimal

import pytest

from exchange.errors import CatalogError, CatalogErrorCode
from exchange.symbols import (
    ParsedSymbol,
    future_symbol,
    option_symbol,
    parse_symbol,
    resale_symbol,
    strike_text,
)


def test_future_symbol_names_sku_region_and_delivery_month():
    assert future_symbol("H100SXM", "USEAST", date(2027, 1, 1)) == "H100SXM-USEAST-202701"


def test_option_symbol_appends_type_letter_and_strike():
    future = "H100SXM-USEAST-202701"

    assert option_symbol(future, "call", Decimal("2.5")) == "H100SXM-USEAST-202701-C2.50"
    assert option_symbol(future, "put", Decimal("2.125")) == "H100SXM-USEAST-202701-P2.125"


def test_resale_symbol_names_the_reservation():
    assert resale_symbol("B200", "USWEST", 42) == "B200-USWEST-R42"


def test_a_running_blocks_listing_names_the_month_it_sells_from():
    symbol = resale_symbol("B200", "USWEST", 42, from_day=date(2027, 4, 1))

    parsed = parse_symbol(symbol)

    assert symbol == "B200-USWEST-R42-202704"
    assert (parsed.reservation, parsed.delivery_month, parsed.option_type) == (
        42,
        date(2027, 4, 1),
        None,
    )


@pytest.mark.parametrize(
    ("from_day", "symbol"),
    [
        (date(2027, 4, 9), "B200-USWEST-R42-20270409"),
        (date(2027, 1, 31), "B200-USWEST-R42-20270131"),
        (date(2028, 2, 29), "B200-USWEST-R42-20280229"),
    ],
)
def test_a_running_blocks_listing_from_another_day_names_the_day(from_day, symbol):
    """A listing of the rest of the month under way is named by its first day, one symbol per
    start; a month's start keeps the month's name."""
    assert resale_symbol("B200", "USWEST", 42, from_day=from_day) == symbol

    parsed = parse_symbol(symbol)

    assert parsed == ParsedSymbol(
        "B200", "USWEST", from_day.replace(day=1), 42, None, None, resale_day=from_day
    )
    assert resale_symbol("B200", "USWEST", 42, from_day=parsed.resale_day) == symbol


@pytest.mark.parametrize(
    ("strike", "text"),
    [
        (Decimal("2.5"), "2.50"),
        (Decimal("2.500000"), "2.50"),
        (Decimal("3"), "3.00"),
        (Decimal("10"), "10.00"),
        (Decimal("2.125"), "2.125"),
        (Decimal("0.000125"), "0.000125"),
    ],
)
def test_strike_text_has_at_least_two_decimals_and_no_extra_zeros(strike, text):
    assert strike_text(strike) == text


@pytest.mark.parametrize(
    ("symbol", "parsed"),
    [
        (
            "H100SXM-USEAST-202701",
            ParsedSymbol("H100SXM", "USEAST", date(2027, 1, 1), None, None, None),
        ),
        (
            "H100SXM-USEAST-202712-C2.50",
            ParsedSymbol("H100SXM", "USEAST", date(2027, 12, 1), None, "call", Decimal("2.50")),
        ),
        (
            "A100-EUWEST-202703-P1.125",
            ParsedSymbol("A100", "EUWEST", date(2027, 3, 1), None, "put", Decimal("1.125")),
        ),
        ("B200-USWEST-R7", ParsedSymbol("B200", "USWEST", None, 7, None, None)),
    ],
)
def test_parse_symbol_reads_every_kind(symbol, parsed):
    assert parse_symbol(symbol) == parsed


def test_symbols_round_trip_through_parse():
    future = future_symbol("MI300X", "USWEST", date(2028, 11, 1))
    option = option_symbol(future, "put", Decimal("2.25"))
    resale = resale_symbol("L40S", "EUWEST", 12)

    parsed_future = parse_symbol(future)
    parsed_option = parse_symbol(option)
    parsed_resale = parse_symbol(resale)

    assert (
        future_symbol(parsed_future.sku, parsed_future.region, parsed_future.delivery_month)
        == future
    )
    assert (
        option_symbol(
            future_symbol(parsed_option.sku, parsed_option.region, parsed_option.delivery_month),
            parsed_option.option_type,
            parsed_option.strike,
        )
        == option
    )
    assert (
        resale_symbol(parsed_resale.sku, parsed_resale.region, parsed_resale.reservation) == resale
    )


@pytest.mark.parametrize(
    "symbol",
    [
        "",
        "h100sxm-USEAST-202701",  # lower case
        "H100SXM-USEAST-202713",  # month 13
        "H100SXM-USEAST-202700",  # month 0
        "H100SXM-USEAST-20271",  # short month
        "H-USEAST-202701",  # code too short
        "H100SXM-USEAST",  # no term
        "H100SXM-USEAST-202701-C2.5",  # one decimal
        "H100SXM-USEAST-202701-X2.50",  # unknown option letter
        "H100SXM-USEAST-202701-C2.1234567",  # seven decimals
        "H100SXM-USEAST-R0",  # reservation 0
        "H100SXM-USEAST-R01",  # leading zero
        "H100SXM-USEAST-R5-C2.50",  # option on a resale block
        "H100SXM-USEAST-R5-202704-C2.50",  # option on a block's listing from a month
        "H100SXM-USEAST-R5-202713",  # month 13
        "H100SXM-USEAST-R5-2027",  # short month
        "H100SXM-USEAST-R5-20270401",  # a month's start is named by the month
        "H100SXM-USEAST-R5-20270400",  # day 0
        "H100SXM-USEAST-R5-20270432",  # day 32
        "H100SXM-USEAST-R5-20270431",  # 31 April
        "H100SXM-USEAST-R5-20270229",  # 29 February of a common year
        "H100SXM-USEAST-R5-2027041",  # short day
        "H100SXM-USEAST-R5-20270409-C2.50",  # option on a block's listing from a day
        "H100SXM-USEAST-20270409",  # a future's month with a day
        "H100SXM-USEAST-000001",  # year 0000
        "H100SXM-USEAST-R5-000001",  # year 0000
        "H100SXM-USEAST-R5-00000102",  # year 0000
        "H100SXM-USEAST-202701 ",  # trailing space
        "H100SXM_USEAST_202701",
    ],
)
def test_parse_symbol_refuses_what_is_not_a_symbol(symbol):
    with pytest.raises(CatalogError) as raised:
        parse_symbol(symbol)

    assert raised.value.code == CatalogErrorCode.INVALID_SYMBOL
    assert raised.value.code == "CATALOG_INVALID_SYMBOL"


@pytest.mark.parametrize("code", ["h100", "H", "H100-SXM", "A" * 17, ""])
def test_building_a_symbol_refuses_bad_codes(code):
    with pytest.raises(CatalogError) as raised:
        future_symbol(code, "USEAST", date(2027, 1, 1))
    assert raised.value.code == CatalogErrorCode.INVALID_SYMBOL

    with pytest.raises(CatalogError):
        resale_symbol("H100SXM", code, 1)
