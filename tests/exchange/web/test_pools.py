"""The pool pages: the list, the sponsor's dashboard and the member's page; every write through
its service, with refusals shown next to their field and nothing written; who sees what
(anonymous, viewers, another member, another sponsor, a non-member)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from exchange.models import Instrument, MarginCall, Membership, Order, Organization, Region
from exchange.models.pools import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolRound,
    PoolTransfer,
)
from exchange.selectors.funding import cash_balance
from exchange.selectors.pools import credit_owed
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import position_account
from exchange.services.participants import account_main, member_add, organization_create
from exchange.services.pools import (
    credit_outstanding,
    demand_submit,
    pool_create,
    pool_cut_off,
    pool_fund,
    pool_member_add,
    pool_member_graduate,
    pool_offer,
    pool_round_close,
    pool_settings_set,
    pool_take_back,
)
from exchange.templatetags.money import usd_exact
from tests.exchange.pools.support import sponsor_organization, startup
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

PASSWORD = "pools-pass-2026"
POOL_FUNDS = Decimal("500000")


def _user(organization, username, role=Membership.Role.TRADER):
    return member_add(
        organization=organization,
        username=username,
        email=f"{username}@example.com",
        password=PASSWORD,
        role=role,
    ).user


@pytest.fixture
def sponsor(db) -> Organization:
    return sponsor_organization()


@pytest.fixture
def sam(sponsor):
    """The sponsor's trader."""
    return _user(sponsor, "sam")


@pytest.fixture
def pool(sponsor, sam, futures) -> Pool:
    pool = pool_create(
        sponsor=sponsor,
        name="Seed GPUs",
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("20000"),
        actor=sam,
    )
    pool_fund(pool=pool, amount=POOL_FUNDS, actor=sam)
    return pool


@pytest.fixture
def members(pool, sam) -> list[PoolMember]:
    """Ada and Bolt have cash; Cirrus has none and relies on the credit line."""
    return [
        pool_member_add(pool=pool, organization=startup(slug, funds), priority=p, actor=sam)
        for slug, funds, p in (("ada", "200000", 10), ("bolt", "200000", 20), ("cirrus", "0", 30))
    ]


@pytest.fixture
def ada(members):
    return members[0]


@pytest.fixture
def bolt(members):
    return members[1]


@pytest.fixture
def cirrus(members):
    return members[2]


@pytest.fixture
def ada_user(ada):
    return _user(ada.organization, "ada-trader")


@pytest.fixture
def bolt_user(bolt):
    return _user(bolt.organization, "bolt-trader")


@pytest.fixture
def cirrus_user(cirrus):
    return _user(cirrus.organization, "cirrus-trader")


def _demand(member, future, gpus=10, limit="2.50"):
    return demand_submit(
        member=member,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=gpus,
        limit_price=Decimal(limit),
        actor=None,
    )[0]


def _allocated_round(pool, sam, future, seller, members_gpus):
    """Each (member, GPUs) demands at 2.50; the seller offers enough at 2.40; cut off and
    close: every member is allocated its demand."""
    for member, gpus in members_gpus:
        _demand(member, future, gpus)
    place(seller, future, "sell", sum(g for _, g in members_gpus), "2.40")
    round_ = pool_cut_off(pool=pool, actor=sam)
    return pool_round_close(round_=round_, actor=sam)


def _page(response) -> str:
    return response.content.decode()


def _field_error(page: str, field_id: str) -> str:
    """The error list rendered next to the input ``field_id`` (empty if none)."""
    match = re.search(rf'<ul class="errorlist" id="{re.escape(field_id)}_error">(.*?)</ul>', page)
    return match.group(1) if match else ""


def _pool_url(pool, name="web:pool", *args):
    return reverse(name, args=[pool.pk, *args])


# Anonymous visitors, viewers and isolation ------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(client, pool):
    for url in (reverse("web:pools"), _pool_url(pool), _pool_url(pool, "web:pool_cut_off")):
        response = client.post(url) if url.endswith("cut-off/") else client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not PoolRound.objects.exists()


def test_the_header_links_to_pools_for_members_of_an_organization(client, sam):
    client.force_login(sam)

    page = _page(client.get(reverse("web:pools")))

    assert f'<a href="{reverse("web:pools")}" aria-current="page">Pools</a>' in page


def test_a_sponsor_sees_its_pools_and_the_create_form(client, pool, members, sam):
    client.force_login(sam)

    response = client.get(reverse("web:pools"))

    page = _page(response)
    assert response.status_code == 200
    assert f'<a href="{_pool_url(pool)}">Seed GPUs</a>' in page
    assert "20,000.00" in page  # Credit line per member, USD.
    assert "Create the pool</button>" in page


def test_a_member_sees_the_pools_it_belongs_to(client, pool, ada_user):
    client.force_login(ada_user)

    page = _page(client.get(reverse("web:pools")))

    assert f'<a href="{_pool_url(pool)}">Seed GPUs</a>' in page
    assert "Foundry Ventures" in page
    assert "Create the pool" not in page
    # Block fee tiers follow what an order has filled, not the size it asks for.
    assert "pays a block fee tier on what it has filled" in page
    assert "combined size earns" not in page


def test_an_organization_in_no_pool_sees_an_empty_state(client, pool, maker):
    client.force_login(_user(maker.organization, "hank"))

    page = _page(client.get(reverse("web:pools")))

    assert 'id="pools-empty"' in page and "<strong>helix</strong>" in page
    assert "Seed GPUs" not in page and "Create the pool" not in page


def test_a_non_member_gets_404_for_the_pool_and_its_writes(client, pool, members, maker):
    client.force_login(_user(maker.organization, "hank"))

    assert client.get(_pool_url(pool)).status_code == 404
    assert client.post(_pool_url(pool, "web:pool_cut_off")).status_code == 404
    demand_url = _pool_url(pool, "web:pool_demand_submit")
    assert client.post(demand_url, {"demand-gpus": "1"}).status_code == 404
    assert not PoolRound.objects.exists() and not PoolDemand.objects.exists()


def test_a_pool_id_beyond_any_id_answers_404(client, pool, sam, ada_user):
    # An id the database cannot hold is no pool: 404, not a failed query.
    beyond = 2**64 + 1
    for user in (sam, ada_user):
        client.force_login(user)
        assert client.get(reverse("web:pool", args=[beyond])).status_code == 404
        assert client.post(reverse("web:pool_repay", args=[beyond]), {}).status_code == 404


def test_another_sponsors_pool_answers_404(client, pool, members, future):
    other = organization_create(slug="acme", name="Acme Capital", kind=Organization.Kind.SPONSOR)
    otto = _user(other, "otto")
    _demand(members[0], future)
    client.force_login(otto)

    assert client.get(_pool_url(pool)).status_code == 404
    for name in ("web:pool_cut_off", "web:pool_settings", "web:pool_fund", "web:pool_member_add"):
        assert client.post(_pool_url(pool, name), {}).status_code == 404
    assert not PoolRound.objects.exists()


def test_a_member_never_sees_another_members_demand_or_allocations(
    client, pool, sam, ada, bolt, ada_user, future, seller
):
    round_ = _allocated_round(pool, sam, future, seller, [(ada, 6), (bolt, 4)])
    mine = PoolAllocation.objects.get(round=round_, member=ada)
    theirs = PoolAllocation.objects.get(round=round_, member=bolt)
    open_theirs = _demand(bolt, future, 3)
    client.force_login(ada_user)

    page = _page(client.get(_pool_url(pool)))

    assert f'id="allocation-{mine.pk}"' in page
    assert f'id="allocation-{theirs.pk}"' not in page
    assert f'id="demand-{mine.demand_id}"' in page
    assert f'id="demand-{theirs.demand_id}"' not in page
    assert f'id="demand-{open_theirs.pk}"' not in page
    assert "Bolt" not in page  # Not even the other member's name.
    # The other member's demand by id: 404, and it is unchanged.
    amend = _pool_url(pool, "web:pool_demand_amend", open_theirs.pk)
    withdraw = _pool_url(pool, "web:pool_demand_withdraw", open_theirs.pk)
    assert client.post(amend, {f"amend-{open_theirs.pk}-gpus": "1"}).status_code == 404
    assert client.post(withdraw).status_code == 404
    open_theirs.refresh_from_db()
    assert (open_theirs.status, open_theirs.quantity) == (PoolDemand.Status.OPEN, 3)


def test_a_member_cannot_use_the_sponsors_writes(client, pool, ada, ada_user, future):
    _demand(ada, future)
    client.force_login(ada_user)

    assert client.post(_pool_url(pool, "web:pool_cut_off")).status_code == 404
    assert client.post(_pool_url(pool, "web:pool_fund"), {"fund-amount": "1"}).status_code == 404
    graduate = _pool_url(pool, "web:pool_member_graduate", ada.pk)
    assert client.post(graduate).status_code == 404
    assert not PoolRound.objects.exists()
    ada.refresh_from_db()
    assert ada.status == PoolMember.Status.ACTIVE


def test_the_sponsor_cannot_use_a_members_writes(client, pool, ada, sam, future):
    demand = _demand(ada, future)
    client.force_login(sam)

    assert client.post(_pool_url(pool, "web:pool_demand_submit"), {}).status_code == 404
    withdraw = _pool_url(pool, "web:pool_demand_withdraw", demand.pk)
    assert client.post(withdraw).status_code == 404
    demand.refresh_from_db()
    assert demand.status == PoolDemand.Status.OPEN


def _sponsor_writes(pool, member, symbol, round_):
    return [
        reverse("web:pool_create"),
        _pool_url(pool, "web:pool_settings"),
        _pool_url(pool, "web:pool_fund"),
        _pool_url(pool, "web:pool_withdraw"),
        _pool_url(pool, "web:pool_member_add"),
        _pool_url(pool, "web:pool_member_priority", member.pk),
        _pool_url(pool, "web:pool_member_graduate", member.pk),
        _pool_url(pool, "web:pool_take_back", member.pk, symbol),
        _pool_url(pool, "web:pool_cut_off"),
        _pool_url(pool, "web:pool_round_close", round_.pk),
        _pool_url(pool, "web:pool_reallocate", symbol),
        _pool_url(pool, "web:pool_offer", symbol),
    ]


def test_a_sponsors_viewer_sees_the_dashboard_but_every_write_is_403(
    client, pool, sponsor, ada, sam, future, seller
):
    _demand(ada, future)
    round_ = pool_cut_off(pool=pool, actor=sam)
    client.force_login(_user(sponsor, "vera", Membership.Role.VIEWER))

    page = _page(client.get(_pool_url(pool)))
    assert "Your role is viewer" in page
    assert "Cut off now</button>" not in page and "Save the settings" not in page
    assert "Close round and allocate" not in page

    for url in _sponsor_writes(pool, ada, future.symbol, round_):
        assert client.post(url, {}).status_code == 403, url
    assert PoolRound.objects.get().status == PoolRound.Status.WORKING
    assert Pool.objects.count() == 1


def test_a_members_viewer_sees_its_page_but_every_write_is_403(client, pool, ada, future):
    demand = _demand(ada, future)
    client.force_login(_user(ada.organization, "vic", Membership.Role.VIEWER))

    page = _page(client.get(_pool_url(pool)))
    assert f'id="demand-{demand.pk}"' in page
    assert "Submit demand</button>" not in page and "Withdraw</button>" not in page

    for url in (
        _pool_url(pool, "web:pool_demand_submit"),
        _pool_url(pool, "web:pool_demand_amend", demand.pk),
        _pool_url(pool, "web:pool_demand_withdraw", demand.pk),
        _pool_url(pool, "web:pool_repay"),
    ):
        assert client.post(url, {}).status_code == 403, url
    demand.refresh_from_db()
    assert demand.status == PoolDemand.Status.OPEN


# Creating a pool ---------------------------------------------------------------------------


def _create(client, **fields):
    data = {
        "create-name": "Series A GPUs",
        "create-rule": "priority",
        "create-subsidy_percent": "12.5",
        "create-credit_line": "25000",
        "create-cutoff_at": "",
        **{f"create-{name}": value for name, value in fields.items()},
    }
    return client.post(reverse("web:pool_create"), data)


def test_a_sponsor_creates_a_pool(client, sponsor, sam):
    client.force_login(sam)
    cutoff = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")

    response = _create(client, cutoff_at=cutoff)

    created = Pool.objects.get(name="Series A GPUs")
    assert response.status_code == 302 and response["Location"] == _pool_url(created)
    assert (created.rule, created.subsidy_percent) == ("priority", Decimal("12.50"))
    assert created.credit_line == 25_000 * 10**6
    assert created.cutoff_at.strftime("%Y-%m-%dT%H:%M") == cutoff
    assert "created" in _page(client.get(response["Location"]))


def test_a_taken_name_is_refused_next_to_the_name(client, pool, sam):
    client.force_login(sam)

    response = _create(client, name="Seed GPUs")

    assert response.status_code == 400
    assert "POOL_NAME_TAKEN" in _field_error(_page(response), "id_create-name")
    assert Pool.objects.count() == 1


def test_a_past_cut_off_is_refused_next_to_the_cut_off(client, sponsor, sam):
    client.force_login(sam)

    response = _create(client, cutoff_at="2020-01-01T00:00")

    assert response.status_code == 400
    assert "POOL_CUTOFF_INVALID" in _field_error(_page(response), "id_create-cutoff_at")
    assert not Pool.objects.exists()


def test_only_a_sponsor_creates_pools(client, ada_user):
    client.force_login(ada_user)
    pools_before = Pool.objects.count()

    response = _create(client)

    assert response.status_code == 400
    assert "POOL_SPONSOR_REQUIRED" in _page(response)
    assert Pool.objects.count() == pools_before


# Settings and cash -------------------------------------------------------------------------


def _settings(client, pool, **fields):
    data = {
        "settings-rule": "pro_rata",
        "settings-subsidy_percent": "15",
        "settings-credit_line": "30000",
        "settings-cutoff_at": "",
        **{f"settings-{name}": value for name, value in fields.items()},
    }
    return client.post(_pool_url(pool, "web:pool_settings"), data)


def test_the_sponsor_changes_the_settings(client, pool, sam):
    client.force_login(sam)

    response = _settings(client, pool)

    assert response.status_code == 302
    pool.refresh_from_db()
    assert (pool.subsidy_percent, pool.credit_line) == (Decimal("15.00"), 30_000 * 10**6)


def _cutoff_input(page: str) -> dict[str, str]:
    """The attributes of the settings form's cut-off input, as the browser gets them."""
    tag = re.search(r'<input[^>]*name="settings-cutoff_at"[^>]*>', page)
    assert tag is not None
    return dict(re.findall(r'([a-z-]+)="([^"]*)"', tag.group(0)))


def test_saving_the_settings_unchanged_keeps_the_exact_cut_off(client, pool, sam):
    # given a cut-off set over the API at 12:00:30.25 (UTC) three days on
    day = timezone.now() + timedelta(days=3)
    cutoff = day.replace(hour=12, minute=0, second=30, microsecond=250_000)
    pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=pool.subsidy_percent,
        credit_line=Decimal("20000"),
        cutoff_at=cutoff,
        actor=sam,
    )
    client.force_login(sam)

    # when the sponsor opens the dashboard and saves the settings form as it is shown
    cutoff_input = _cutoff_input(_page(client.get(_pool_url(pool))))
    response = _settings(
        client,
        pool,
        rule=pool.rule,
        subsidy_percent="10.00",
        credit_line="20000.00",
        cutoff_at=cutoff_input["value"],
    )

    # then the form showed the seconds, the input steps by the second, and the cut-off is
    # still the one the API set, to the microsecond
    assert cutoff_input["value"] == cutoff.strftime("%Y-%m-%dT12:00:30")
    assert cutoff_input["step"] == "1"
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.cutoff_at == cutoff


@pytest.mark.parametrize(("typed", "seconds"), [("T09:15:45", 45), ("T09:15", 0)])
def test_a_cut_off_typed_in_the_form_keeps_its_seconds(client, pool, sam, typed, seconds):
    # given a day three days on; a browser sends 09:15 for 09:15:00
    day = (timezone.now() + timedelta(days=3)).date()
    client.force_login(sam)

    # when the sponsor saves a cut-off at that day's 09:15 and some seconds
    response = _settings(client, pool, cutoff_at=f"{day.isoformat()}{typed}")

    # then the pool cuts off at that second, UTC
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.cutoff_at.isoformat() == f"{day.isoformat()}T09:15:{seconds:02d}+00:00"


def test_a_credit_line_above_the_maximum_is_refused_next_to_it(client, pool, sam, settings):
    client.force_login(sam)

    response = _settings(client, pool, credit_line=str(settings.EXCHANGE_POOL_CREDIT_LINE_MAX + 1))

    assert response.status_code == 400
    assert "POOL_CREDIT_LINE_INVALID" in _field_error(_page(response), "id_settings-credit_line")
    pool.refresh_from_db()
    assert (pool.subsidy_percent, pool.credit_line) == (Decimal("10.00"), 20_000 * 10**6)


def test_the_sponsor_funds_the_pool_and_withdraws(client, pool, sam, sponsor):
    client.force_login(sam)

    funded = client.post(_pool_url(pool, "web:pool_fund"), {"fund-amount": "1000.00"})
    withdrawn = client.post(_pool_url(pool, "web:pool_withdraw"), {"withdraw-amount": "250.00"})

    assert funded.status_code == withdrawn.status_code == 302
    assert cash_balance(pool.account).posted == POOL_FUNDS + Decimal("750")
    page = _page(client.get(_pool_url(pool)))
    assert '<span class="value" id="pool-cash-posted">500,750.00</span>' in page


def test_funding_above_what_is_available_is_refused_next_to_the_amount(client, pool, sam):
    client.force_login(sam)

    funded = client.post(_pool_url(pool, "web:pool_fund"), {"fund-amount": "99999999.00"})
    withdrawn = client.post(
        _pool_url(pool, "web:pool_withdraw"), {"withdraw-amount": "99999999.00"}
    )

    assert funded.status_code == withdrawn.status_code == 400
    fund_error = _field_error(_page(funded), "id_fund-amount")
    withdraw_error = _field_error(_page(withdrawn), "id_withdraw-amount")
    assert "POOL_INSUFFICIENT_FUNDS" in fund_error and "POOL_INSUFFICIENT_FUNDS" in withdraw_error
    # In dollars as the page writes them, with their thousands separators.
    assert "has less than 99,999,999.00 USD available." in fund_error
    assert "The pool has less than 99,999,999.00 USD available." in withdraw_error
    assert cash_balance(pool.account).posted == POOL_FUNDS


def test_funding_from_an_account_under_a_margin_call_is_refused_above_the_form(
    client, pool, sam, sponsor
):
    MarginCall.objects.create(
        account=account_main(sponsor),
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )
    sponsor_cash = cash_balance(account_main(sponsor)).posted
    client.force_login(sam)

    funded = client.post(_pool_url(pool, "web:pool_fund"), {"fund-amount": "1000.00"})

    assert funded.status_code == 400
    assert "POOL_MARGIN_CALL_OPEN" in _page(funded)
    assert cash_balance(pool.account).posted == POOL_FUNDS
    assert cash_balance(account_main(sponsor)).posted == sponsor_cash


# Members -----------------------------------------------------------------------------------


def test_the_sponsor_adds_a_member_by_slug(client, pool, sam):
    newco = startup("newco", "0")
    client.force_login(sam)

    response = client.post(
        _pool_url(pool, "web:pool_member_add"),
        {"member-organization": "newco", "member-priority": "40"},
    )

    assert response.status_code == 302
    member = PoolMember.objects.get(pool=pool, organization=newco)
    assert member.priority == 40


@pytest.mark.parametrize(
    ("slug", "expected"),
    [
        ("ada", "POOL_ALREADY_MEMBER"),
        ("foundry", "POOL_MEMBER_NOT_STARTUP"),
        ("northwind", "POOL_MEMBER_NOT_STARTUP"),
        ("nobody", "No organization has this slug."),
    ],
)
def test_a_member_that_cannot_join_is_refused_next_to_the_organization(
    client, pool, members, sam, seller, slug, expected
):
    client.force_login(sam)

    response = client.post(
        _pool_url(pool, "web:pool_member_add"),
        {"member-organization": slug, "member-priority": "40"},
    )

    assert response.status_code == 400
    assert expected in _field_error(_page(response), "id_member-organization")
    assert PoolMember.objects.filter(pool=pool).count() == 3


def test_the_sponsor_changes_a_members_priority(client, pool, ada, sam):
    client.force_login(sam)
    url = _pool_url(pool, "web:pool_member_priority", ada.pk)

    done = client.post(url, {f"priority-{ada.pk}-priority": "5"})
    refused = client.post(url, {f"priority-{ada.pk}-priority": "10001"})

    assert done.status_code == 302
    assert refused.status_code == 400
    assert _field_error(_page(refused), f"id_priority-{ada.pk}-priority")
    ada.refresh_from_db()
    assert ada.priority == 5


def test_the_sponsor_graduates_a_member_and_its_open_demand_is_withdrawn(
    client, pool, ada, sam, future
):
    demand = _demand(ada, future)
    client.force_login(sam)
    url = _pool_url(pool, "web:pool_member_graduate", ada.pk)

    done = client.post(url)
    again = client.post(url)

    assert done.status_code == 302
    ada.refresh_from_db()
    demand.refresh_from_db()
    assert ada.status == PoolMember.Status.GRADUATED
    assert demand.status == PoolDemand.Status.WITHDRAWN
    assert again.status_code == 400
    row = _page(again).split(f'id="member-{ada.pk}"')[1].split("</tr>")[0]
    assert "POOL_MEMBER_GRADUATED" in row


# Cut-off, rounds and allocation ------------------------------------------------------------


def test_the_dashboard_shows_open_demand_aggregated_by_instrument(
    client, pool, ada, bolt, sam, future
):
    _demand(ada, future, 6, "2.50")
    _demand(bolt, future, 4, "2.45")
    client.force_login(sam)

    page = _page(client.get(_pool_url(pool)))

    section = page.split('id="open-demand"')[1].split("</section>")[0]
    hours = 10 * future.gpu_hours_per_contract
    assert future.symbol in section
    assert f'<td class="num">{hours:,}</td>' in section
    assert "2.450" in section and "2.500" in section


def test_cut_off_with_no_demand_is_refused_next_to_the_button(client, pool, sam):
    client.force_login(sam)

    response = client.post(_pool_url(pool, "web:pool_cut_off"))

    assert response.status_code == 400
    section = _page(response).split('id="open-demand"')[1].split("</section>")[0]
    assert "POOL_NO_DEMAND" in section
    assert not PoolRound.objects.exists()


def test_a_cut_off_under_the_pools_margin_call_says_why_no_order_was_placed(
    client, pool, ada, sam, future
):
    MarginCall.objects.create(
        account=pool.account,
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )
    _demand(ada, future, 6)
    client.force_login(sam)

    page = _page(client.post(_pool_url(pool, "web:pool_cut_off"), follow=True))

    assert "Round 1 cut off, no order placed: The pool&#x27;s account is under a margin" in page
    round_ = page.split('id="round-')[1].split("</article>")[0]
    assert "Refused" in round_ and "(POOL_MARGIN_CALL_OPEN)" in round_


def test_the_sponsor_cuts_off_closes_and_sees_the_allocation_and_report(
    client, pool, ada, bolt, sam, future, seller
):
    _demand(ada, future, 6)
    _demand(bolt, future, 4)
    place(seller, future, "sell", 5, "2.40")
    client.force_login(sam)

    cut = client.post(_pool_url(pool, "web:pool_cut_off"))

    assert cut.status_code == 302
    round_ = PoolRound.objects.get()
    page = _page(client.get(_pool_url(pool)))
    assert f'id="round-{round_.pk}"' in page and "Close round and allocate" in page
    tier = round_.orders.get()
    assert (tier.quantity, tier.order.filled_quantity) == (10, 5)

    closed = client.post(_pool_url(pool, "web:pool_round_close", round_.pk))
    again = client.post(_pool_url(pool, "web:pool_round_close", round_.pk))

    assert closed.status_code == 302
    round_.refresh_from_db()
    assert round_.status == PoolRound.Status.ALLOCATED
    assert again.status_code == 400
    assert "POOL_ROUND_NOT_WORKING" in _page(again).split(f'id="round-{round_.pk}"')[1]
    page = _page(client.get(_pool_url(pool)))
    allocations = page.split('class="allocations"')[1].split("</table>")[0]
    assert "Ada" in allocations and "Bolt" in allocations
    assert "2.4000" in allocations  # Average $/GPU-hr.
    report = page.split('id="report"')[1]
    hours = future.gpu_hours_per_contract
    assert f'id="report-requested">{10 * hours:,}<' in report
    assert f'id="report-filled">{5 * hours:,}<' in report


def test_a_working_rounds_fills_are_not_offered_to_move(client, pool, ada, sam, future, seller):
    _demand(ada, future, 6)
    place(seller, future, "sell", 6, "2.40")
    round_ = pool_cut_off(pool=pool, actor=sam)
    client.force_login(sam)

    page = _page(client.get(_pool_url(pool)))

    row = page.split(f'id="holding-{future.symbol}"')[1].split("</tr>")[0]
    assert f"In round {round_.number}, still working" in row
    assert "Reallocate</button>" not in row and "Offer</button>" not in row


def test_an_unknown_round_answers_404(client, pool, sam):
    client.force_login(sam)

    assert client.post(_pool_url(pool, "web:pool_round_close", 999)).status_code == 404


# Capacity the pool holds: take back, reallocate, offer --------------------------------------


@pytest.fixture
def graduate_holding(pool, ada, bolt, sam, future, seller):
    """Ada was allocated 6 contracts and graduated."""
    _allocated_round(pool, sam, future, seller, [(ada, 6)])
    pool_member_graduate(member=ada, actor=sam)
    return ada


def test_the_sponsor_takes_back_a_graduates_contracts(client, pool, graduate_holding, sam, future):
    ada = graduate_holding
    client.force_login(sam)
    page = _page(client.get(_pool_url(pool)))
    assert "Take back</button>" in page.split('id="graduates"')[1].split("</section>")[0]
    url = _pool_url(pool, "web:pool_take_back", ada.pk, future.symbol)
    key = f"take-back-{ada.pk}-{future.symbol}"

    refused = client.post(url, {f"{key}-quantity": "7"})
    done = client.post(url, {f"{key}-quantity": "4"})

    assert refused.status_code == 400
    assert "POOL_NOT_ENOUGH_HELD" in _field_error(_page(refused), f"id_{key}-quantity")
    assert done.status_code == 302
    assert position_account(ada.account, future.symbol).balance == 2
    assert position_account(pool.account, future.symbol).balance == 4
    assert PoolTransfer.objects.get().kind == PoolTransfer.Kind.TAKE_BACK


def test_another_members_contracts_cannot_be_taken_back_by_symbol_they_do_not_hold(
    client, pool, graduate_holding, bolt, sam, future
):
    client.force_login(sam)
    url = _pool_url(pool, "web:pool_take_back", bolt.pk, future.symbol)

    assert client.post(url, {}).status_code == 404


@pytest.fixture
def pool_holding(pool, graduate_holding, sam, future):
    """The pool holds the 6 contracts taken back from Ada."""
    pool_take_back(member=graduate_holding, instrument=future, quantity=6, actor=sam)
    return future


def test_the_sponsor_reallocates_the_pools_contracts(
    client, pool, pool_holding, bolt, members, sam
):
    # given bolt asked for 4 in a round in which nothing filled; cirrus asked for nothing
    future = pool_holding
    _demand(bolt, future, 4)
    pool_round_close(round_=pool_cut_off(pool=pool, actor=sam), actor=sam)
    cirrus = members[2]
    client.force_login(sam)
    url = _pool_url(pool, "web:pool_reallocate", future.symbol)
    key = f"reallocate-{future.symbol}"

    refused = client.post(url, {f"{key}-member": str(bolt.pk), f"{key}-quantity": "9"})
    beyond = client.post(url, {f"{key}-member": str(bolt.pk), f"{key}-quantity": "5"})
    no_demand = client.post(url, {f"{key}-member": str(cirrus.pk), f"{key}-quantity": "1"})
    done = client.post(url, {f"{key}-member": str(bolt.pk), f"{key}-quantity": "2"})

    assert refused.status_code == beyond.status_code == no_demand.status_code == 400
    assert "POOL_NOT_ENOUGH_HELD" in _field_error(_page(refused), f"id_{key}-quantity")
    assert "POOL_REALLOCATION_BEYOND_DEMAND" in _field_error(_page(beyond), f"id_{key}-quantity")
    assert "POOL_REALLOCATION_BEYOND_DEMAND" in _field_error(_page(no_demand), f"id_{key}-member")
    assert done.status_code == 302
    assert position_account(bolt.account, future.symbol).balance == 2
    assert position_account(cirrus.account, future.symbol).balance == 0
    assert position_account(pool.account, future.symbol).balance == 4


def test_a_graduate_is_not_offered_as_a_receiver(client, pool, pool_holding, ada, sam):
    future = pool_holding
    client.force_login(sam)
    key = f"reallocate-{future.symbol}"

    response = client.post(
        _pool_url(pool, "web:pool_reallocate", future.symbol),
        {f"{key}-member": str(ada.pk), f"{key}-quantity": "1"},
    )

    assert response.status_code == 400
    assert _field_error(_page(response), f"id_{key}-member")
    assert position_account(pool.account, future.symbol).balance == 6


def test_the_sponsor_offers_the_pools_contracts_for_sale(client, pool, pool_holding, sam):
    future = pool_holding
    client.force_login(sam)
    url = _pool_url(pool, "web:pool_offer", future.symbol)
    key = f"offer-{future.symbol}"

    off_tick = client.post(url, {f"{key}-quantity": "2", f"{key}-price": "2.6012"})
    too_many = client.post(url, {f"{key}-quantity": "60", f"{key}-price": "2.60"})
    done = client.post(url, {f"{key}-quantity": "2", f"{key}-price": "2.60"})

    assert off_tick.status_code == too_many.status_code == 400
    assert "ORDER_PRICE_OFF_TICK" in _field_error(_page(off_tick), f"id_{key}-price")
    assert "POOL_NOT_ENOUGH_HELD" in _field_error(_page(too_many), f"id_{key}-quantity")
    assert done.status_code == 302
    order = Order.objects.get(account=pool.account, side="sell")
    assert (order.quantity, order.price) == (2, Decimal("2.60"))
    page = _page(client.get(_pool_url(pool)))
    assert f"#{order.pk}" in page.split("The pool's open orders")[1]


def test_the_sponsor_withdraws_an_offer_from_its_row(
    client, pool, pool_holding, sam, bolt, bolt_user
):
    # given the pool offers all 6 of its contracts
    future = pool_holding
    offer = pool_offer(pool=pool, instrument=future, quantity=6, price=Decimal("9.00"), actor=sam)
    url = _pool_url(pool, "web:pool_offer_cancel", offer.pk)
    client.force_login(sam)
    assert f'action="{url}' in _page(client.get(_pool_url(pool)))

    # when a member tries, then the sponsor withdraws it
    client.force_login(bolt_user)
    assert client.post(url).status_code == 404
    client.force_login(sam)
    done = client.post(url)

    # then the order is cancelled and its contracts are free again; once more is refused
    assert done.status_code == 302
    offer.refresh_from_db()
    assert (offer.status, offer.cancelled_quantity) == ("cancelled", 6)
    page = _page(client.get(_pool_url(pool)))
    assert "The pool's open orders" not in page
    again = client.post(url)
    assert again.status_code == 400
    assert "ORDER_NOT_LIVE" in _page(again)


def test_a_symbol_the_pool_does_not_hold_answers_404(client, pool, sam, futures):
    client.force_login(sam)

    for name in ("web:pool_reallocate", "web:pool_offer"):
        assert client.post(_pool_url(pool, name, futures[1].symbol), {}).status_code == 404


# The member's page -------------------------------------------------------------------------


def _submit(client, pool, **fields):
    data = {
        "demand-sku": "H100SXM",
        "demand-region": "USEAST",
        "demand-gpus": "8",
        "demand-gpu_hours": "",
        "demand-limit_price": "2.50",
        **{f"demand-{name}": value for name, value in fields.items()},
    }
    return client.post(_pool_url(pool, "web:pool_demand_submit"), data)


def test_the_member_page_shows_the_terms_and_the_demand_form(client, pool, ada_user, futures):
    client.force_login(ada_user)

    page = _page(client.get(_pool_url(pool)))

    assert "Pro rata by requested quantity" in page
    assert "10.00% of each allocation" in page
    assert "20,000.00 USD" in page
    for future in futures:
        month = future.delivery_start
        assert f'value="{month:%Y-%m}"' in page and f"{month:%b %Y}" in page
    assert "Submit demand</button>" in page
    assert "Its fees follow what it has filled" in page
    assert "combined size earns" not in page


def test_a_member_submits_demand_for_several_months(client, pool, ada, ada_user, futures):
    client.force_login(ada_user)
    months = [f"{f.delivery_start:%Y-%m}" for f in futures]

    response = _submit(client, pool, months=months)

    assert response.status_code == 302
    demands = list(PoolDemand.objects.filter(member=ada).order_by("instrument__delivery_start"))
    assert [d.instrument for d in demands] == futures
    assert all(d.quantity == 8 and d.limit_price == Decimal("2.50") for d in demands)
    page = _page(client.get(_pool_url(pool)))
    assert all(f'id="demand-{d.pk}"' in page for d in demands)


def test_the_demand_form_offers_only_months_whose_future_still_trades(
    client, pool, ada, ada_user, futures
):
    # given the first month's last trading day has passed; the daily cycle has not yet expired
    # it, and the service refuses demand for it (POOL_MONTHS_INVALID)
    ended, trading = futures
    Instrument.objects.filter(pk=ended.pk).update(
        last_trading_day=timezone.now().date() - timedelta(days=2)
    )
    client.force_login(ada_user)

    page = _page(client.get(_pool_url(pool)))

    assert f'value="{trading.delivery_start:%Y-%m}"' in page
    assert f'value="{ended.delivery_start:%Y-%m}"' not in page


def test_a_member_submits_demand_in_gpu_hours(client, pool, ada, ada_user, future):
    client.force_login(ada_user)
    hours = 3 * future.gpu_hours_per_contract

    response = _submit(
        client, pool, months=[f"{future.delivery_start:%Y-%m}"], gpus="", gpu_hours=str(hours)
    )

    assert response.status_code == 302
    assert PoolDemand.objects.get(member=ada).quantity == 3


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"gpus": "8", "gpu_hours": "744"}, "gpu_hours", "POOL_QUANTITY_INVALID"),
        ({"gpus": "", "gpu_hours": "100"}, "gpu_hours", "POOL_NOT_WHOLE_CONTRACTS"),
        ({"limit_price": "2.501"}, "limit_price", "POOL_PRICE_INVALID"),
        ({"region": "EUWEST"}, "months", "POOL_MONTHS_INVALID"),
    ],
)
def test_refused_demand_is_shown_next_to_its_field(
    client, pool, ada_user, future, fields, field, code
):
    # A region where no future is listed: the months are refused.
    Region.objects.create(
        code="EUWEST", name="EU West", compliance=[], power_price_usd_per_kwh=Decimal("0.1")
    )
    client.force_login(ada_user)

    response = _submit(client, pool, months=[f"{future.delivery_start:%Y-%m}"], **fields)

    assert response.status_code == 400
    assert code in _field_error(_page(response), f"id_demand-{field}")
    assert not PoolDemand.objects.exists()


def test_demand_without_months_is_refused_next_to_the_months(client, pool, ada_user):
    client.force_login(ada_user)

    response = _submit(client, pool)

    assert response.status_code == 400
    assert _field_error(_page(response), "id_demand-months")
    assert not PoolDemand.objects.exists()


def test_a_member_amends_its_open_demand(client, pool, ada, ada_user, future):
    demand = _demand(ada, future, 10, "2.50")
    client.force_login(ada_user)
    url = _pool_url(pool, "web:pool_demand_amend", demand.pk)
    key = f"amend-{demand.pk}"

    refused = client.post(url, {f"{key}-gpus": "4", f"{key}-limit_price": "2.5025"})
    done = client.post(url, {f"{key}-gpus": "4", f"{key}-limit_price": "2.55"})

    assert refused.status_code == 400
    assert "POOL_PRICE_INVALID" in _field_error(_page(refused), f"id_{key}-limit_price")
    assert done.status_code == 302
    demand.refresh_from_db()
    assert (demand.quantity, demand.limit_price) == (4, Decimal("2.55"))


def test_a_member_withdraws_its_open_demand_but_not_after_the_cut_off(
    client, pool, ada, ada_user, sam, future, futures
):
    kept = _demand(ada, future)
    gone = _demand(ada, futures[1])
    client.force_login(ada_user)

    done = client.post(_pool_url(pool, "web:pool_demand_withdraw", gone.pk))
    pool_cut_off(pool=pool, actor=sam)
    locked = client.post(_pool_url(pool, "web:pool_demand_withdraw", kept.pk))
    amend_locked = client.post(
        _pool_url(pool, "web:pool_demand_amend", kept.pk),
        {f"amend-{kept.pk}-gpus": "1", f"amend-{kept.pk}-limit_price": "2.50"},
    )

    assert done.status_code == 302
    gone.refresh_from_db()
    assert gone.status == PoolDemand.Status.WITHDRAWN
    assert locked.status_code == amend_locked.status_code == 400
    assert "POOL_DEMAND_LOCKED" in _page(locked).split(f'id="demand-{kept.pk}"')[1]
    assert "POOL_DEMAND_LOCKED" in _page(amend_locked).split(f'id="demand-{kept.pk}"')[1]
    kept.refresh_from_db()
    assert (kept.status, kept.quantity) == (PoolDemand.Status.SUBMITTED, 10)


def test_a_graduated_member_sees_its_page_without_the_demand_form(client, pool, ada, ada_user, sam):
    pool_member_graduate(member=ada, actor=sam)
    client.force_login(ada_user)

    page = _page(client.get(_pool_url(pool)))

    assert "graduated from this pool" in page
    assert "Submit demand</button>" not in page


def test_members_see_their_allocations_report_and_credit_and_repay_it(
    client, pool, ada, cirrus, ada_user, cirrus_user, sam, future, seller
):
    round_ = _allocated_round(pool, sam, future, seller, [(ada, 6), (cirrus, 4)])
    allocation = PoolAllocation.objects.get(round=round_, member=cirrus)
    assert allocation.status == PoolAllocation.Status.SETTLED and allocation.credit > 0
    owed = credit_outstanding(cirrus)
    assert credit_owed(cirrus) * 10**6 == owed
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    client.force_login(cirrus_user)

    page = _page(client.get(_pool_url(pool)))

    assert f'id="allocation-{allocation.pk}"' in page
    assert f'id="report-filled">{4 * future.gpu_hours_per_contract:,}<' in page
    assert f'id="credit-owed">{Decimal(owed) / 10**6:,.2f}<' in page
    assert "Repay credit</button>" in page

    too_much = client.post(_pool_url(pool, "web:pool_repay"), {"repay-amount": "999999"})
    done = client.post(_pool_url(pool, "web:pool_repay"), {"repay-amount": "100.00"})

    assert too_much.status_code == 400
    assert "POOL_AMOUNT_INVALID" in _field_error(_page(too_much), "id_repay-amount")
    assert done.status_code == 302
    assert credit_outstanding(cirrus) == owed - 100 * 10**6


def test_a_member_repays_its_credit_to_the_last_micro_dollar(
    client, pool, cirrus, cirrus_user, sam, future, seller
):
    # given a subsidy that leaves cirrus's loan with fractions of a cent
    pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=Decimal("7.77"),
        credit_line=Decimal("20000"),
        cutoff_at=None,
        actor=sam,
    )
    _allocated_round(pool, sam, future, seller, [(cirrus, 4)])
    owed = credit_owed(cirrus)
    assert owed != owed.quantize(Decimal("0.01"))
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    client.force_login(cirrus_user)

    # when it repays what the page offers, the whole debt
    page = _page(client.get(_pool_url(pool)))
    assert f'value="{owed}"' in page
    # and shows it as the ledger holds it: rounded to cents, it read as a debt the form's
    # amount would not clear
    assert usd_exact(owed) != f"{owed:,.2f}"
    assert f'id="credit-owed">{usd_exact(owed)}<' in page
    done = client.post(_pool_url(pool, "web:pool_repay"), {"repay-amount": str(owed)})

    # then it owes nothing, as it could through the API
    assert done.status_code == 302
    assert credit_outstanding(cirrus) == 0


def test_the_credit_owed_selector_reads_without_opening_accounts(pool, ada):
    from ledger.models import Account as LedgerAccount

    accounts = LedgerAccount.objects.count()

    assert credit_owed(ada) == 0
    assert LedgerAccount.objects.count() == accounts
