"""The hedge's quantities: whole lots, as orders the instrument accepts."""

import pytest

from exchange.services.hedging import Orders, order_split, whole_lots


@pytest.mark.parametrize(
    ("gpus", "lot_size", "contracts"), [(8, 1, 8), (8, 5, 10), (10, 5, 10), (1, 25, 25)]
)
def test_the_gpus_are_rounded_up_to_whole_lots(gpus, lot_size, contracts):
    assert whole_lots(gpus, lot_size) == contracts


@pytest.mark.parametrize(
    ("contracts", "lot_size", "quantity_max", "orders"),
    [
        (8, 1, 100_000, (Orders(8, 1),)),
        (10, 5, 7, (Orders(5, 2),)),
        (9, 3, 6, (Orders(6, 1), Orders(3, 1))),
        # However many orders, two sizes say them: the need's bound is GPUS_MAX contracts.
        (100_000, 1, 7, (Orders(7, 14_285), Orders(5, 1))),
    ],
)
def test_contracts_are_the_fewest_orders_of_at_most_the_maximum_in_whole_lots(
    contracts, lot_size, quantity_max, orders
):
    assert order_split(contracts, lot_size, quantity_max) == orders
