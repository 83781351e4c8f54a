"""The typed client against the API's OpenAPI document: every operation a trader, a provider,
a startup or a sponsor uses has its method, and every field the API answers for an object is
a field of the client's type for it (``of`` reads it: the other test_client_* files)."""

import dataclasses

import pytest
from django.test import Client

import exchange_client
from exchange_client import ExchangeClient

pytestmark = pytest.mark.django_db

# (method, path) of each operation: the client's method for it.
OPERATIONS = {
    ("GET", "/api/v1/time/"): "server_time",
    ("GET", "/api/v1/instruments/"): "instruments",
    ("GET", "/api/v1/instruments/{symbol}/"): "instrument",
    ("GET", "/api/v1/instruments/{symbol}/book/"): "book",
    ("GET", "/api/v1/instruments/{symbol}/trades/"): "trades",
    ("GET", "/api/v1/instruments/{symbol}/candles/"): "candles",
    ("GET", "/api/v1/instruments/{symbol}/settlements/"): "settlements",
    ("GET", "/api/v1/instruments/{symbol}/chain/"): "chain",
    ("GET", "/api/v1/curves/{sku}/{region}/"): "curve",
    ("POST", "/api/v1/orders/"): "place_order",  # And dry_run (?dry_run=true).
    ("GET", "/api/v1/orders/"): "orders",  # And order_by_client_order_id.
    ("POST", "/api/v1/orders/batch/"): "place_orders",
    ("POST", "/api/v1/orders/batch/cancel/"): "cancel_orders",
    ("GET", "/api/v1/orders/{order_id}/"): "order",
    ("DELETE", "/api/v1/orders/{order_id}/"): "cancel",
    ("GET", "/api/v1/orders/{order_id}/history/"): "order_history",
    ("POST", "/api/v1/orders/{order_id}/replace/"): "replace",
    ("POST", "/api/v1/orders/cancel-all/"): "cancel_all",
    ("POST", "/api/v1/orders/cancel-all-after/"): "cancel_all_after",
    ("GET", "/api/v1/orders/cancel-all-after/"): "cancel_all_timer",
    ("GET", "/api/v1/fills/"): "fills",
    ("GET", "/api/v1/me/"): "me",
    ("GET", "/api/v1/keys/"): "keys",
    ("DELETE", "/api/v1/keys/{prefix}/"): "revoke_key",
    ("GET", "/api/v1/account/balances/"): "balances",
    ("GET", "/api/v1/account/margin-call/"): "margin_call",
    ("GET", "/api/v1/account/positions/"): "positions",
    ("GET", "/api/v1/account/statement/"): "statement",
    ("GET", "/api/v1/account/entitlements/"): "entitlements",
    ("GET", "/api/v1/account/notices/"): "notices",
    ("POST", "/api/v1/capacity/"): "register_capacity",
    ("GET", "/api/v1/capacity/"): "capacity",
    ("POST", "/api/v1/capacity/{capacity_id}/list/"): "list_for_resale",
    ("POST", "/api/v1/funding/deposits/"): "deposit",
    ("GET", "/api/v1/funding/deposits/"): "deposits",
    ("POST", "/api/v1/funding/withdrawals/"): "withdraw",
    ("GET", "/api/v1/funding/withdrawals/"): "withdrawals",
    ("POST", "/api/v1/funding/withdrawals/{withdrawal_id}/cancel/"): "cancel_withdrawal",
    ("POST", "/api/v1/pricing/option-quote/"): "option_quote",
    ("POST", "/api/v1/pricing/implied-volatility/"): "implied_volatility",
    ("POST", "/api/v1/pricing/hedge/"): "hedge",
    ("GET", "/api/v1/pools/"): "pools",
    ("POST", "/api/v1/pools/"): "create_pool",
    ("GET", "/api/v1/pools/{pool_id}/"): "pool",
    ("PATCH", "/api/v1/pools/{pool_id}/"): "update_pool",
    ("POST", "/api/v1/pools/{pool_id}/fund/"): "fund_pool",
    ("POST", "/api/v1/pools/{pool_id}/withdraw/"): "withdraw_from_pool",
    ("GET", "/api/v1/pools/{pool_id}/members/"): "pool_members",
    ("POST", "/api/v1/pools/{pool_id}/members/"): "add_pool_member",
    ("GET", "/api/v1/pools/{pool_id}/members/{member_id}/"): "pool_member",
    ("PATCH", "/api/v1/pools/{pool_id}/members/{member_id}/"): "set_member_priority",
    ("POST", "/api/v1/pools/{pool_id}/members/{member_id}/graduate/"): "graduate_member",
    ("GET", "/api/v1/pools/{pool_id}/demands/"): "demands",
    ("POST", "/api/v1/pools/{pool_id}/demands/"): "submit_demand",
    ("GET", "/api/v1/pools/{pool_id}/demands/{demand_id}/"): "demand",
    ("PATCH", "/api/v1/pools/{pool_id}/demands/{demand_id}/"): "amend_demand",
    ("DELETE", "/api/v1/pools/{pool_id}/demands/{demand_id}/"): "withdraw_demand",
    ("POST", "/api/v1/pools/{pool_id}/cut-off/"): "cut_off",
    ("GET", "/api/v1/pools/{pool_id}/rounds/"): "pool_rounds",
    ("GET", "/api/v1/pools/{pool_id}/rounds/{round_id}/"): "pool_round",
    ("POST", "/api/v1/pools/{pool_id}/rounds/{round_id}/close/"): "close_round",
    ("GET", "/api/v1/pools/{pool_id}/allocations/"): "pool_allocations",
    ("GET", "/api/v1/pools/{pool_id}/report/"): "pool_report",
    ("GET", "/api/v1/pools/{pool_id}/holdings/"): "pool_holdings",
    ("GET", "/api/v1/pools/{pool_id}/transfers/"): "pool_transfers",
    ("POST", "/api/v1/pools/{pool_id}/take-back/"): "take_back",
    ("POST", "/api/v1/pools/{pool_id}/reallocate/"): "reallocate",
    ("POST", "/api/v1/pools/{pool_id}/offer/"): "offer",
    ("DELETE", "/api/v1/pools/{pool_id}/offer/{order_id}/"): "withdraw_offer",
    ("POST", "/api/v1/pools/{pool_id}/credit/repay/"): "repay_credit",
}

# The client's type for each object the API answers (its schema component).
TYPES = {
    "Instrument": exchange_client.Instrument,
    "Book": exchange_client.Book,
    "Level": exchange_client.Level,
    "Trade": exchange_client.Trade,
    "Candle": exchange_client.Candle,
    "Curve": exchange_client.Curve,
    "CurvePoint": exchange_client.CurvePoint,
    "Settlement": exchange_client.Settlement,
    "Chain": exchange_client.Chain,
    "ChainRow": exchange_client.ChainRow,
    "ChainSide": exchange_client.ChainSide,
    "Me": exchange_client.Me,
    "Balance": exchange_client.Balance,
    "Portfolio": exchange_client.Portfolio,
    "Position": exchange_client.Position,
    "Totals": exchange_client.PortfolioTotals,
    "Order": exchange_client.Order,
    "OrderEvent": exchange_client.OrderEvent,
    "Fill": exchange_client.Fill,
    "Placement": exchange_client.Placement,
    "DryRun": exchange_client.DryRun,
    "CancelAllTimer": exchange_client.CancelAllTimer,
    "MarginCall": exchange_client.MarginCall,
    "StatementLine": exchange_client.StatementLine,
    "Entitlement": exchange_client.Entitlement,
    "Notice": exchange_client.Notice,
    "Key": exchange_client.ApiKeyInfo,
    "Capacity": exchange_client.Capacity,
    "DepositCreated": exchange_client.Deposit,
    "Withdrawal": exchange_client.Withdrawal,
    "OptionValuation": exchange_client.OptionValuation,
    "HedgeRecommendation": exchange_client.HedgeRecommendation,
    "HedgeCost": exchange_client.HedgeCost,
    "HedgeFutures": exchange_client.HedgeFutures,
    "HedgeFuturesLeg": exchange_client.HedgeFuturesLeg,
    "HedgeOptionLeg": exchange_client.HedgeOptionLeg,
    "HedgeOrders": exchange_client.HedgeOrders,
    "HedgeCap": exchange_client.HedgeCap,
    "HedgeCollar": exchange_client.HedgeCollar,
    "SellHedgeRecommendation": exchange_client.SellHedgeRecommendation,
    "SellHedgeRevenue": exchange_client.SellHedgeRevenue,
    "SellHedgeFutures": exchange_client.SellHedgeFutures,
    "SellHedgeFloor": exchange_client.SellHedgeFloor,
    "SellHedgeCollar": exchange_client.SellHedgeCollar,
    "Pool": exchange_client.Pool,
    "PoolDetail": exchange_client.PoolDetail,
    "PoolMemberDetail": exchange_client.PoolMember,
    "PoolCash": exchange_client.PoolCash,
    "PoolDemandTotal": exchange_client.PoolOpenDemand,
    "PoolDemand": exchange_client.PoolDemand,
    "PoolTier": exchange_client.PoolTier,
    "PoolAllocation": exchange_client.PoolAllocation,
    "PoolRoundDetail": exchange_client.PoolRound,
    "PoolReport": exchange_client.PoolReport,
    "PoolReportLine": exchange_client.PoolReportLine,
    "PoolHolding": exchange_client.PoolHolding,
    "PoolTransfer": exchange_client.PoolTransfer,
    "PoolCashMoved": exchange_client.PoolCashMoved,
    "PoolCreditRepaid": exchange_client.PoolCreditRepaid,
}
# Fields the client names otherwise, or leaves out with a reason.
RENAMED = {("PoolRoundDetail", "orders"): "tiers"}
LEFT_OUT = {("DryRun", "dry_run")}  # Always true: the type itself says it.


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_every_operation_has_its_method(schema):
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }

    assert operations == set(OPERATIONS)
    missing = [
        name for name in OPERATIONS.values() if not callable(getattr(ExchangeClient, name, None))
    ]
    assert missing == []


def test_every_field_the_api_answers_is_in_the_clients_type(schema):
    components = schema["components"]["schemas"]
    missing = {}
    for name, client_type in TYPES.items():
        fields = {field.name for field in dataclasses.fields(client_type)}
        answered = {
            RENAMED.get((name, field), field)
            for field in components[name]["properties"]
            if (name, field) not in LEFT_OUT
        }
        if answered - fields:
            missing[name] = sorted(answered - fields)

    assert missing == {}
