"""The daily risk cycle as staff and schedulers run it: the admin's run view (preview, then
confirm), settlement price overrides, margin call actions, the management commands and the
Celery tasks (eager, as in the embedded mode)."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from exchange import tasks
from exchange.models import AuditEntry, MarginCall, Order, RiskCycle, SettlementPrice
from exchange.services.funding import deposit_test_funds
from ledger.models import Entry
from tests.exchange.conftest import _account
from tests.exchange.support import place

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("calendar_ahead")]


def confirm(day) -> dict[str, str]:
    """What the run page's confirm button posts after a preview of ``day``."""
    return {"trading_date": day.isoformat(), "confirm": "1", "confirm_date": day.isoformat()}


@pytest.fixture
def traded(future, buyer, seller):
    """Ten contracts traded at 2.50; returns the trading day the future still trades on."""
    place(seller, future, "sell", 10, "2.50")
    place(buyer, future, "buy", 10, "2.50")
    return future.last_trading_day - timedelta(days=3)


def test_run_view_previews_prices_and_variation_then_settles_on_confirm(
    admin_client, admin_user, future, buyer, traded
):
    url = reverse("admin:exchange_riskcycle_run")
    assert admin_client.get(url).status_code == 200

    # given the day's price is overridden to 2.60 (no trades in its closing window)
    SettlementPrice.objects.create(
        instrument=future, trading_date=traded, price=Decimal("2.60"), source="override"
    )

    # when staff preview the day
    preview = admin_client.post(url, {"trading_date": traded.isoformat(), "preview": "1"})

    # then the page shows the price and each account's variation margin, and nothing is posted
    assert preview.status_code == 200
    prices = {row.settlement.instrument: row.settlement for row in preview.context["prices"]}
    assert (prices[future].price, prices[future].source) == (Decimal("2.60"), "override")
    amounts = {v.account: v.amount for v in preview.context["variation"]}
    gain = Decimal("0.10") * 10 * future.gpu_hours_per_contract
    assert amounts[buyer] == gain
    assert sum(amounts.values()) == 0
    assert "Confirm: settle" in preview.content.decode()
    assert not Entry.objects.filter(idempotency_key__startswith="variation:").exists()

    # when they confirm
    done = admin_client.post(url, confirm(traded))

    # then the day is settled by them, audited, and the variation margin posted
    cycle = RiskCycle.objects.get(trading_date=traded)
    assert done.status_code == 302
    assert (cycle.status, cycle.settled_by) == (RiskCycle.Status.SETTLED, admin_user)
    assert Entry.objects.filter(idempotency_key__startswith=f"variation:{traded}:").count() == 2
    assert AuditEntry.objects.filter(action="risk.daily_settlement", actor=admin_user).exists()


def test_the_prices_a_preview_sets_are_audited_with_the_staff_who_previewed(
    admin_client, admin_user, future, traded
):
    url = reverse("admin:exchange_riskcycle_run")

    # when staff preview a day whose prices are not set yet (the book's mid: no trade closing)
    admin_client.post(url, {"trading_date": traded.isoformat(), "preview": "1"})
    # and preview it again, finding every price set
    admin_client.post(url, {"trading_date": traded.isoformat(), "preview": "1"})

    # then one audit row names them, the day and each price it set, with its source
    row = SettlementPrice.objects.get(instrument=future, trading_date=traded)
    (entry,) = AuditEntry.objects.filter(action="settlement_price.set")
    assert (entry.actor, entry.target_type) == (admin_user, "RiskCycle")
    assert entry.target_id == str(RiskCycle.objects.get(trading_date=traded).pk)
    assert entry.after["trading_date"] == traded.isoformat()
    assert entry.after["prices"] == {future.symbol: {"price": str(row.price), "source": row.source}}


def test_a_date_edited_after_the_preview_is_previewed_not_settled(admin_client, future, traded):
    # given staff previewed the day, whose confirm button names it
    url = reverse("admin:exchange_riskcycle_run")
    preview = admin_client.post(url, {"trading_date": traded.isoformat(), "preview": "1"})
    assert f'name="confirm_date" value="{traded}"' in preview.content.decode()
    assert f"Confirm: settle {traded}" in preview.content.decode()
    entries = Entry.objects.count()

    # when they change the date to the next day and press that button
    later = traded + timedelta(days=1)
    page = admin_client.post(
        url, {"trading_date": later.isoformat(), "confirm": "1", "confirm_date": str(traded)}
    )

    # then neither day is settled: the page says so and previews the day now entered
    content = page.content.decode()
    assert page.status_code == 200
    assert f"Nothing was settled: {later} is not the day previewed ({traded})" in content
    assert page.context["trading_date"] == later
    assert f"Confirm: settle {later}" in content
    assert not RiskCycle.objects.filter(status=RiskCycle.Status.SETTLED).exists()
    assert Entry.objects.count() == entries
    assert not AuditEntry.objects.filter(action="risk.daily_settlement").exists()

    # and its own confirm settles it
    assert admin_client.post(url, confirm(later)).status_code == 302
    assert RiskCycle.objects.get(trading_date=later).status == RiskCycle.Status.SETTLED


def test_run_view_is_staff_only(client, django_user_model):
    trader = django_user_model.objects.create_user("trader", password="x")
    client.force_login(trader)

    response = client.get(reverse("admin:exchange_riskcycle_run"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_price_override_in_the_admin_needs_a_reason_and_is_audited(
    admin_client, admin_user, future, traded
):
    url = reverse("admin:exchange_settlementprice_add")
    form = {"instrument": future.pk, "trading_date": traded.isoformat(), "price": "2.555"}

    refused = admin_client.post(url, {**form, "reason": " "})
    off_tick = admin_client.post(url, {**form, "price": "2.551", "reason": "Block trade"})
    saved = admin_client.post(url, {**form, "reason": "Block trade reported late"})

    assert "Give a reason for the override." in refused.content.decode()
    assert "tick" in off_tick.content.decode()
    assert saved.status_code == 302
    row = SettlementPrice.objects.get(instrument=future, trading_date=traded)
    assert (row.price, row.source, row.set_by) == (Decimal("2.555"), "override", admin_user)
    entry = AuditEntry.objects.get(action="settlement_price.override")
    assert entry.after["price"] == "2.555" and entry.reason == "Block trade reported late"


def test_settle_day_command_previews_then_settles_once(future, traded, capsys):
    SettlementPrice.objects.create(
        instrument=future, trading_date=traded, price=Decimal("2.45"), source="override"
    )

    call_command("settle_day", "--date", traded.isoformat(), "--preview")
    preview = capsys.readouterr().out
    call_command("settle_day", "--date", traded.isoformat())
    settled = capsys.readouterr().out
    entries = Entry.objects.count()
    call_command("settle_day", "--date", traded.isoformat())

    assert f"{future.symbol}" in preview and "2.45" in preview
    variation = -Decimal("0.05") * 10 * future.gpu_hours_per_contract
    assert f"{variation:+}" in preview  # The buyer's loss, before anything is posted.
    assert f"{traded} settled: 2 variation margin entries" in settled
    assert Entry.objects.count() == entries
    with pytest.raises(CommandError):
        call_command("settle_day", "--date", "2026-13-01")


def test_daily_settlement_task_settles_the_given_day(future, traded):
    SettlementPrice.objects.create(
        instrument=future, trading_date=traded, price=Decimal("2.50"), source="override"
    )

    result = tasks.risk_daily_settlement.delay(traded.isoformat()).get()

    assert result == {"trading_date": traded.isoformat(), "status": "settled"}
    assert "daily-settlement" in settings.CELERY_BEAT_SCHEDULE
    assert "review-margin-calls" in settings.CELERY_BEAT_SCHEDULE


def test_the_scheduled_settlement_after_a_late_close_settles_the_day_that_closed(
    future, traded, monkeypatch
):
    from exchange import calendar
    from exchange.services import settlement_prices

    # given a close at 23:55: the run ten minutes after it falls on the next morning
    monkeypatch.setattr(settings, "EXCHANGE_SETTLEMENT_CLOSE", "23:55")
    day = calendar.business_days_before(future.last_trading_day, 3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=day, price=Decimal("2.50"), source="override"
    )
    next_morning = datetime.combine(day + timedelta(days=1), time(0, 5), tzinfo=UTC)
    monkeypatch.setattr(settlement_prices, "now", lambda: next_morning)

    # when the schedule runs it without a day
    result = tasks.risk_daily_settlement()

    # then it settles the day that closed, not the morning's (not closed yet)
    assert result == {"trading_date": day.isoformat(), "status": "settled"}


def _called_account(future, seller):
    """An account long 10 at 2.50 with only $4,000 of funds, then marked down to 2.10."""
    poor = _account("sprout", "startup", funded=False)
    deposit_test_funds(account=poor, amount=Decimal("4000"), actor=None)
    place(seller, future, "sell", 10, "2.50")
    place(poor, future, "buy", 10, "2.50")
    day = future.last_trading_day - timedelta(days=3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=day, price=Decimal("2.10"), source="override"
    )
    call_command("settle_day", "--date", day.isoformat())
    return poor


def test_a_review_that_fails_leaves_the_other_calls_reviewed(future, seller, monkeypatch, caplog):
    from exchange.services import risk_cycle

    # given two accounts long 10 at 2.50 with $4,000 each, marked down to 2.10 (both called),
    # both funded since, and the first's review failing
    first, second = (_account(slug, "startup", funded=False) for slug in ("sprout", "bloom"))
    for account in (first, second):
        deposit_test_funds(account=account, amount=Decimal("4000"), actor=None)
        place(seller, future, "sell", 10, "2.50")
        place(account, future, "buy", 10, "2.50")
    day = future.last_trading_day - timedelta(days=3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=day, price=Decimal("2.10"), source="override"
    )
    call_command("settle_day", "--date", day.isoformat())
    calls = list(MarginCall.objects.filter(status=MarginCall.Status.OPEN).order_by("pk"))
    assert [call.account for call in calls] == [first, second]
    for account in (first, second):
        deposit_test_funds(account=account, amount=Decimal("10000"), actor=None)
    review = risk_cycle.margin_call_review

    def failing_first(call):
        if call.pk == calls[0].pk:
            raise RuntimeError("deadlock detected")
        return review(call)

    monkeypatch.setattr(risk_cycle, "margin_call_review", failing_first)

    # when the task runs
    cured = tasks.risk_margin_calls_review.delay().get()

    # then the second is cured, the first left open for the next run, and the failure logged
    assert cured == 1
    statuses = [MarginCall.objects.get(pk=call.pk).status for call in calls]
    assert statuses == [MarginCall.Status.OPEN, MarginCall.Status.CURED]
    assert f"margin call #{calls[0].pk}: review failed" in caplog.text


def test_margin_calls_are_reviewed_by_task_command_and_admin(admin_client, future, seller):
    poor = _called_account(future, seller)
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    assert call.amount > 0

    # the task finds nothing to cure while the account has no cash
    assert tasks.risk_margin_calls_review.delay().get() == 0
    # once funds arrive, the admin action cures it
    deposit_test_funds(account=poor, amount=Decimal("10000"), actor=None)
    response = admin_client.post(
        reverse("admin:exchange_margincall_changelist"),
        {"action": "review", "_selected_action": [call.pk]},
        follow=True,
    )

    assert "1 of 1 selected calls cured." in response.content.decode()
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.CURED


def test_liquidate_action_closes_the_position_against_the_book(
    admin_client, admin_user, future, seller, buyer
):
    poor = _called_account(future, seller)
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    place(buyer, future, "buy", 10, "2.05")

    response = admin_client.post(
        reverse("admin:exchange_margincall_changelist"),
        {
            "action": "liquidate",
            "_selected_action": [call.pk],
            "confirm": "1",
            "reason": "deficit unpaid",
        },
        follow=True,
    )

    assert f"{future.symbol}: 10" in response.content.decode()
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.LIQUIDATED
    entry = AuditEntry.objects.get(action="account.liquidate")
    assert entry.actor == admin_user
    assert entry.after["closing"] == [{"symbol": future.symbol, "side": "sell", "quantity": 10}]
    assert timezone.now() - entry.created_at < timedelta(minutes=1)
    # and how the call ended is audited too, after the liquidation's row, with its reason
    ended = AuditEntry.objects.get(action="margin_call.liquidated")
    assert ended.actor == admin_user and ended.reason == entry.reason
    assert ended.target_id == str(call.pk)
    assert ended.after["status"] == MarginCall.Status.LIQUIDATED
    assert ended.before["status"] != MarginCall.Status.LIQUIDATED
    assert ended.pk > entry.pk


def test_roll_listings_from_the_admin_lists_the_missing_months(admin_client, future):
    url = reverse("admin:exchange_instrument_roll")
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, follow=True)
    again = admin_client.post(url, follow=True)

    listed = future.sku.instruments.filter(kind="future").count()
    assert listed >= settings.EXCHANGE_LISTED_MONTHS
    assert "instruments listed:" in response.content.decode()
    assert "0 instruments listed." in again.content.decode()


def test_a_review_that_changes_nothing_writes_nothing(future, seller):
    poor = _called_account(future, seller)
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    entries, before = Entry.objects.count(), MarginCall.objects.values().get(pk=call.pk)

    call_command("review_margin_calls")
    call_command("review_margin_calls")

    assert Entry.objects.count() == entries
    assert MarginCall.objects.values().get(pk=call.pk) == before


def _called_accounts(future, seller, slugs):
    """Accounts each long 10 at 2.50 with only $4,000 of funds, marked down to 2.10: called."""
    accounts = [_account(slug, "startup", funded=False) for slug in slugs]
    for account in accounts:
        deposit_test_funds(account=account, amount=Decimal("4000"), actor=None)
        place(seller, future, "sell", 10, "2.50")
        place(account, future, "buy", 10, "2.50")
    day = future.last_trading_day - timedelta(days=3)
    SettlementPrice.objects.create(
        instrument=future, trading_date=day, price=Decimal("2.10"), source="override"
    )
    call_command("settle_day", "--date", day.isoformat())
    return [MarginCall.objects.get(account=account, status="open") for account in accounts]


def _figures(call):
    return MarginCall.objects.values("status", "required", "held", "deficit", "reviews").get(
        pk=call.pk
    )


@pytest.mark.parametrize("run", ["task", "command"])
def test_the_scheduled_review_audits_each_call_it_changes_as_the_system(future, seller, run):
    # given three called accounts: one funded enough to cure its call, one given a dollar (a
    # top-up, still short) and one given nothing
    cured, topped_up, unchanged = _called_accounts(future, seller, ["sprout", "bloom", "fern"])
    deposit_test_funds(account=cured.account, amount=Decimal("10000"), actor=None)
    deposit_test_funds(account=topped_up.account, amount=Decimal("1"), actor=None)
    before = {call.pk: _figures(call) for call in (cured, topped_up, unchanged)}

    # when the schedule's review runs (the beat task, or the command staff run by hand)
    if run == "task":
        assert tasks.risk_margin_calls_review.delay().get() == 1
    else:
        call_command("review_margin_calls")

    # then each call it changed has one row by the system, with its figures before and after
    rows = AuditEntry.objects.filter(action="margin_call.review").order_by("target_id")
    assert [(row.target_id, row.actor, row.actor_label) for row in rows] == [
        (str(cured.pk), None, "system"),
        (str(topped_up.pk), None, "system"),
    ]
    for row, call in zip(rows, (cured, topped_up), strict=True):
        assert (row.before, row.after) == (before[call.pk], _figures(call))
    assert (rows[0].after["status"], rows[1].after["status"]) == ("cured", "open")
    assert rows[1].after["reviews"] == before[topped_up.pk]["reviews"] + 1
    # and the call it left as it was has none
    assert _figures(unchanged) == before[unchanged.pk]

    # when it runs again with nothing new, it writes no second row
    call_command("review_margin_calls")
    assert AuditEntry.objects.filter(action="margin_call.review").count() == 2


def test_a_scheduled_review_whose_audit_row_fails_changes_nothing(
    future, seller, monkeypatch, caplog
):
    from exchange.services import risk_cycle

    # given a called account funded enough to cure its call, and the audit log failing
    (call,) = _called_accounts(future, seller, ["sprout"])
    deposit_test_funds(account=call.account, amount=Decimal("10000"), actor=None)
    before, entries = _figures(call), Entry.objects.count()

    def audit_failing(**arguments):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(risk_cycle, "audit_record", audit_failing)

    # when the scheduled review runs
    call_command("review_margin_calls")

    # then the cure and its top-up were rolled back with the row: the call is still open
    assert _figures(call) == before
    assert Entry.objects.count() == entries
    assert f"margin call #{call.pk}: review failed" in caplog.text


def test_a_staff_review_is_audited_only_when_it_changed_the_call(
    admin_client, admin_user, future, seller
):
    # given a call on an account with no cash to top its margin up with
    poor = _called_account(future, seller)
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    url = reverse("admin:exchange_margincall_changelist")
    review = {"action": "review", "_selected_action": [call.pk]}

    # when staff review it, it changes nothing, and no audit row says the same before and after
    response = admin_client.post(url, review, follow=True)

    assert "0 of 1 selected calls cured." in response.content.decode()
    assert not AuditEntry.objects.filter(action="margin_call.review").exists()

    # when funds arrive and staff review it again, it is cured and that is recorded
    deposit_test_funds(account=poor, amount=Decimal("10000"), actor=None)
    admin_client.post(url, review)

    entry = AuditEntry.objects.get(action="margin_call.review")
    assert (entry.actor, entry.before["status"], entry.after["status"]) == (
        admin_user,
        MarginCall.Status.OPEN,
        MarginCall.Status.CURED,
    )
    assert entry.before != entry.after


def test_liquidating_a_call_no_longer_open_tells_staff_it_was_skipped(admin_client, future, seller):
    # given a call that was cured after staff selected it
    poor = _called_account(future, seller)
    call = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    MarginCall.objects.filter(pk=call.pk).update(status=MarginCall.Status.CURED)
    orders = Order.objects.count()

    # when staff confirm its liquidation
    response = admin_client.post(
        reverse("admin:exchange_margincall_changelist"),
        {
            "action": "liquidate",
            "_selected_action": [call.pk],
            "confirm": "1",
            "reason": "deficit unpaid",
        },
        follow=True,
    )

    # then the page says which call was skipped and why, and nothing was done
    shown = [(message.level_tag, str(message)) for message in response.context["messages"]]
    assert shown == [
        (
            "warning",
            f"#{call.pk} {poor}: skipped, the call is cured; only open calls are liquidated.",
        )
    ]
    assert not AuditEntry.objects.filter(action="account.liquidate").exists()
    assert Order.objects.count() == orders
    assert MarginCall.objects.get(pk=call.pk).status == MarginCall.Status.CURED


def test_reviewing_calls_no_longer_open_tells_staff_they_were_skipped(admin_client, future, seller):
    # given two selected calls: one cured after staff selected it, and one still open on an
    # account that holds nothing now (a review cures it)
    poor = _called_account(future, seller)
    cured = MarginCall.objects.get(account=poor, status=MarginCall.Status.OPEN)
    MarginCall.objects.filter(pk=cured.pk).update(status=MarginCall.Status.CURED)
    other = MarginCall.objects.create(
        account=_account("lumen", "startup"),
        trading_date=cured.trading_date,
        required=cured.required,
        maintenance=cured.maintenance,
        held=0,
    )

    # when staff review both
    response = admin_client.post(
        reverse("admin:exchange_margincall_changelist"),
        {"action": "review", "_selected_action": [cured.pk, other.pk]},
        follow=True,
    )

    # then the page says which call was skipped and why, beside what came of the other
    shown = [(message.level_tag, str(message)) for message in response.context["messages"]]
    assert shown == [
        (
            "warning",
            f"#{cured.pk} {poor}: skipped, the call is cured; only open calls are reviewed.",
        ),
        ("info", "1 of 2 selected calls cured."),
    ]
    # and the skipped call was not reviewed
    assert AuditEntry.objects.filter(action="margin_call.review").count() == 1
    assert AuditEntry.objects.get(action="margin_call.review").target_id == str(other.pk)


def test_an_override_by_staff_without_the_risk_role_is_refused_in_the_form(
    client, django_user_model, future, traded
):
    # given staff granted Django's permission to add settlement prices, but not the risk role
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", password="x-2026", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="add_settlementprice"))
    client.force_login(clerk)
    form = {
        "instrument": future.pk,
        "trading_date": traded.isoformat(),
        "price": "2.555",
        "reason": "Block trade reported late",
    }

    # when they override a price in the admin
    page = client.post(reverse("admin:exchange_settlementprice_add"), form)

    # then the form names the refusal (not a 500), and nothing is written
    assert page.status_code == 200
    assert "Only staff with the risk role override settlement prices." in page.content.decode()
    assert not SettlementPrice.objects.exists()
    assert not AuditEntry.objects.filter(action="settlement_price.override").exists()


def test_an_override_for_a_day_not_closed_is_refused(
    admin_client, calendar_ahead, monkeypatch, future, traded
):
    # calendar_ahead: the cycle's today, at its last second; tomorrow has not even begun.
    url = reverse("admin:exchange_settlementprice_add")
    from exchange.errors import RiskError
    from exchange.services import settlement_prices
    from exchange.services.settlement_prices import settlement_price_override

    morning = datetime.combine(calendar_ahead, time(10, 0), tzinfo=UTC)
    cases = [
        (calendar_ahead + timedelta(days=1), None, "RISK_DAY_IN_FUTURE"),
        (calendar_ahead + timedelta(days=400), None, "RISK_DAY_IN_FUTURE"),
        (calendar_ahead, morning, "RISK_DAY_NOT_CLOSED"),  # Today, six hours before its close.
    ]
    for day, clock, code in cases:
        if clock is not None:
            monkeypatch.setattr(settlement_prices, "now", lambda moment=clock: moment)
        # when staff override the day, in the admin and through the service
        page = admin_client.post(
            url,
            {
                "instrument": future.pk,
                "trading_date": day.isoformat(),
                "price": "1.800",
                "reason": "A guess",
            },
        )
        with pytest.raises(RiskError) as refused:
            settlement_price_override(
                instrument=future,
                trading_date=day,
                price=Decimal("1.8"),
                reason="A guess",
                actor=None,
            )

        # then both refuse, saying why, and nothing is written
        assert page.status_code == 200
        assert (refused.value.code, refused.value.field) == (code, "trading_date")
        assert refused.value.message in page.content.decode().replace("&#x27;", "'")
    assert not SettlementPrice.objects.exists()
    assert not RiskCycle.objects.exists()
    assert not AuditEntry.objects.filter(action="settlement_price.override").exists()


def test_changing_a_settled_days_price_in_the_admin_is_refused_not_a_500(
    admin_client, future, traded
):
    from exchange.services.risk_cycle import daily_settlement_run

    daily_settlement_run(trading_date=traded)
    row = SettlementPrice.objects.get(instrument=future, trading_date=traded)
    url = reverse("admin:exchange_settlementprice_change", args=[row.pk])

    page = admin_client.post(url, {"price": "3.000", "reason": "Late correction"})

    assert page.status_code == 200
    assert f"{traded} is settled: its prices can no longer change." in page.content.decode()
    row.refresh_from_db()
    assert row.price == Decimal("2.500")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", ["add", "change"])
def test_a_day_settled_between_the_forms_check_and_the_save_is_an_admin_error_not_a_500(
    postgres_only, admin_client, monkeypatch, futures, traded, page
):
    import exchange.admin
    from exchange.services.risk_cycle import daily_settlement_run
    from exchange.services.settlement_prices import settlement_price_override
    from tests.exchange.matcher.test_concurrency import run_threads

    # given the day's prices are set (the second future's by override, changed on the change
    # page), and another person settles the day, on a connection of their own, after the
    # override form has checked it and before its save: the form's check passes, and the
    # save, in the admin's transaction, finds the day settled
    future = futures[1]
    row = SettlementPrice.objects.create(
        instrument=future, trading_date=traded, price=Decimal("2.45"), source="override"
    )
    if page == "add":
        future = futures[0]
        url = reverse("admin:exchange_settlementprice_add")
        form = {"instrument": future.pk, "trading_date": traded.isoformat()}
    else:
        url = reverse("admin:exchange_settlementprice_change", args=[row.pk])
        form = {}
    settled = []

    def settled_by_another_then_saved(**kwargs):
        errors = run_threads(lambda index: daily_settlement_run(trading_date=traded), 1)
        assert not errors, errors
        settled.append(traded)
        return settlement_price_override(**kwargs)

    monkeypatch.setattr(exchange.admin, "settlement_price_override", settled_by_another_then_saved)

    # when staff save the override
    response = admin_client.post(
        url, {**form, "price": "3.000", "reason": "Late correction"}, follow=True
    )

    # then they are back on the form, told by name that nothing was saved
    assert response.status_code == 200
    assert response.redirect_chain == [(url, 302)]
    content = response.content.decode()
    assert f"Nothing was saved: RISK_DAY_SETTLED: {traded} is settled" in content
    # and the day settled at its prices, none at the override's, and no override is audited
    assert settled == [traded]
    assert RiskCycle.objects.get(trading_date=traded).status == RiskCycle.Status.SETTLED
    assert not SettlementPrice.objects.filter(price=Decimal("3")).exists()
    assert not AuditEntry.objects.filter(action="settlement_price.override").exists()


def test_the_preview_names_held_instruments_without_a_price_and_offers_no_confirm(
    admin_client, future, traded, capsys
):
    # given the future's last trading day was never settled: the next day has no price for it
    day = future.last_trading_day + timedelta(days=3)
    url = reverse("admin:exchange_riskcycle_run")

    # when staff preview that day, in the admin and with the command
    page = admin_client.post(url, {"trading_date": day.isoformat(), "preview": "1"})
    call_command("settle_day", "--date", day.isoformat(), "--preview")

    # then both name the held future, the page links its override and offers no confirm
    content = page.content.decode()
    assert 'id="prices-missing"' in content and "RISK_SETTLEMENT_PRICE_MISSING" in content
    override = reverse("admin:exchange_settlementprice_add")
    assert f"{override}?instrument={future.pk}&amp;trading_date={day}" in content
    assert "Confirm: settle" not in content
    assert f"missing {future.symbol}: held, without a price" in capsys.readouterr().out
    # ...and once it has its price, the confirm is offered
    from exchange.services.settlement_prices import settlement_price_override

    settlement_price_override(
        instrument=future, trading_date=day, price=Decimal("2.5"), reason="Final", actor=None
    )
    again = admin_client.post(url, {"trading_date": day.isoformat(), "preview": "1"})
    assert 'id="prices-missing"' not in again.content.decode()
    assert "Confirm: settle" in again.content.decode()


def test_a_day_before_the_latest_settled_day_is_refused_and_writes_nothing(
    admin_client, future, buyer, traded
):
    # given the day is settled with the future at 2.60 (the buyer's cost memo is now at 2.60)
    from exchange.errors import RiskError
    from exchange.services.risk_cycle import daily_settlement_run
    from exchange.services.settlement_prices import settlement_price_override

    SettlementPrice.objects.create(
        instrument=future, trading_date=traded, price=Decimal("2.60"), source="override"
    )
    daily_settlement_run(trading_date=traded)
    earlier = traded - timedelta(days=1)
    counts = (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        RiskCycle.objects.count(),
        AuditEntry.objects.count(),
    )
    url = reverse("admin:exchange_riskcycle_run")

    # when staff preview, confirm and override the day before it, and the command runs it
    pages = [
        admin_client.post(url, form)
        for form in ({"trading_date": earlier.isoformat(), "preview": "1"}, confirm(earlier))
    ]
    override = admin_client.post(
        reverse("admin:exchange_settlementprice_add"),
        {
            "instrument": future.pk,
            "trading_date": earlier.isoformat(),
            "price": "2.400",
            "reason": "Typo in the date",
        },
    )
    with pytest.raises(RiskError) as refused:
        settlement_price_override(
            instrument=future, trading_date=earlier, price=Decimal("2.4"), reason="r", actor=None
        )
    with pytest.raises(CommandError):
        call_command("settle_day", "--date", earlier.isoformat())

    # then each is refused by name, next to the date, and nothing is written: settling it
    # now would pay variation margin backwards, from the later day's marks to the earlier's
    assert (refused.value.code, refused.value.field) == ("RISK_DAY_OUT_OF_ORDER", "trading_date")
    for page in [*pages, override]:
        assert page.status_code == 200
        assert f"{traded}, the latest settled day" in page.content.decode()
    assert "Confirm: settle" not in pages[0].content.decode()
    assert (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        RiskCycle.objects.count(),
        AuditEntry.objects.count(),
    ) == counts


def test_a_date_at_the_start_of_the_calendar_is_a_day_to_preview_not_a_500(admin_client, future):
    url = reverse("admin:exchange_riskcycle_run")

    page = admin_client.post(url, {"trading_date": "0001-01-01", "preview": "1"})

    # It is refused by name (before the first listing), on the page, not with a server error.
    assert page.status_code == 200
    assert "RISK_DAY_BEFORE_LISTING: 0001-01-01 is before" in page.content.decode()


def test_a_second_confirm_of_a_settled_day_says_who_settled_it_and_does_nothing(
    client, admin_client, admin_user, django_user_model, future, traded
):
    # given two risk staff previewed the same day, and the first confirmed it
    from exchange.backoffice.roles import Role
    from exchange.services.staff import staff_roles_grant

    second = django_user_model.objects.create_user("rita", password="x-2026", is_staff=True)
    staff_roles_grant(user=second, roles=[Role.RISK], actor=None)
    url = reverse("admin:exchange_riskcycle_run")
    form = confirm(traded)
    assert admin_client.post(url, form).status_code == 302
    counts = (Entry.objects.count(), AuditEntry.objects.count())

    # when the second confirms from the page still open
    client.force_login(second)
    page = client.post(url, form, follow=True)

    # then the page says by name that the day was already settled, by whom, and claims nothing
    content = page.content.decode()
    assert page.status_code == 200
    assert f"RISK_DAY_SETTLED: {traded} was already settled" in content
    assert admin_user.username in content
    assert "variation margin entries" not in content
    assert (Entry.objects.count(), AuditEntry.objects.count()) == counts
    cycle = RiskCycle.objects.get(trading_date=traded)
    assert cycle.settled_by == admin_user


@pytest.mark.parametrize("days_before_listing", [1, None])
def test_a_day_before_the_first_listing_is_refused_and_writes_nothing(
    admin_client, future, days_before_listing
):
    # given an exchange that never settled, whose first instrument was listed today (with
    # nothing held, such a day settled, closing a day on which nothing could trade)
    from exchange.errors import RiskError
    from exchange.services.risk_cycle import daily_settlement_run
    from exchange.services.settlement_prices import settlement_prices_set

    listed = timezone.localtime(future.created_at, UTC).date()
    day = (
        listed - timedelta(days=days_before_listing)
        if days_before_listing
        else datetime(1, 1, 1, tzinfo=UTC).date()
    )
    counts = (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        RiskCycle.objects.count(),
        AuditEntry.objects.count(),
        MarginCall.objects.count(),
    )
    url = reverse("admin:exchange_riskcycle_run")

    # when staff preview and confirm that day, the command runs and previews it, and the
    # services are called for it
    pages = [
        admin_client.post(url, form)
        for form in ({"trading_date": day.isoformat(), "preview": "1"}, confirm(day))
    ]
    for arguments in (["--date", day.isoformat()], ["--date", day.isoformat(), "--preview"]):
        with pytest.raises(CommandError, match="RISK_DAY_BEFORE_LISTING"):
            call_command("settle_day", *arguments)
    for service in (daily_settlement_run, settlement_prices_set):
        with pytest.raises(RiskError) as refused:
            service(trading_date=day)
        assert (refused.value.code, refused.value.field) == (
            "RISK_DAY_BEFORE_LISTING",
            "trading_date",
        )

    # then each is refused by name, next to the date, and nothing is written: nothing traded
    # that day, and settling it would mark today's positions and margin at that day's prices
    for page in pages:
        assert page.status_code == 200
        assert "RISK_DAY_BEFORE_LISTING" in page.content.decode()
        assert f"the first instrument was listed on {listed}" in page.content.decode()
        assert "Confirm: settle" not in page.content.decode()
    assert (
        Entry.objects.count(),
        SettlementPrice.objects.count(),
        RiskCycle.objects.count(),
        AuditEntry.objects.count(),
        MarginCall.objects.count(),
    ) == counts


def test_the_scheduled_settlement_before_the_first_listing_settles_nothing_and_fails_not(db):
    # given an exchange that lists nothing yet
    from exchange.errors import RiskError

    # when the schedule runs its day, and when the task is asked for that day by name
    result = tasks.risk_daily_settlement()
    with pytest.raises(RiskError, match="RISK_DAY_BEFORE_LISTING"):
        tasks.risk_daily_settlement(result["trading_date"])

    # then the schedule's run says there was nothing to settle (not a failure logged every
    # business day), the named day is refused, and nothing is written
    assert result["status"] == "before_listing"
    assert not RiskCycle.objects.exists()
    assert not AuditEntry.objects.exists()
