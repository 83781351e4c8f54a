"""Settings for the GPU capacity exchange.

Everything is read from the environment with embedded defaults, so a fresh clone runs with no
other service: SQLite under ``var/``, the matcher inline in the submitting process, Celery eager.
Production sets ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis or RabbitMQ),
``EXCHANGE_MATCHER_MODE=external`` (``manage.py run_matcher`` processes own the books),
``DJANGO_DEBUG=0``, ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``.
"""

import os
from decimal import Decimal
from pathlib import Path

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

# The admin's classes are generic in their model for the type checker (ModelAdmin[Order]);
# this lets them be subscripted when the module runs too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXCHANGE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    # A fixed key is acceptable only for the embedded development mode.
    SECRET_KEY = "embedded-development-key-not-for-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # Daphne first: its runserver serves HTTP and the WebSocket feed (ASGI) in one process.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "ledger.apps.LedgerConfig",
    "exchange.apps.ExchangeConfig",
]

MIDDLEWARE = [
    # First: an API request for a Host not served gets the JSON 400 before any other
    # middleware asks for the host (Django's answer, with DEBUG on, is its HTML debug page).
    "exchange.api.middleware.ApiHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files in production (collected by `collectstatic` into STATIC_ROOT): the pages'
    # CSS and scripts, the admin's, and Swagger UI and ReDoc for the API docs.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "exchange.urls"
WSGI_APPLICATION = "exchange.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "exchange.web.context_processors.navigation",
            ],
        },
    },
]

SQLITE_PATH = VAR_DIR / "exchange.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock up front, so two writers queue instead of
    # failing with "database is locked" when one upgrades from a read; WAL lets readers go on.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-exchange.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side binding, and psycopg preparing a statement once a connection has run it this
    # many times (Django leaves preparation off unless told): the order path runs the same few
    # statements thousands of times, and without preparation PostgreSQL parsed and planned
    # each one every time, most of its CPU per order. Empty turns preparation off (needed
    # behind a transaction-pooling PgBouncer).
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["server_side_binding"] = env_bool("EXCHANGE_DATABASE_SERVER_SIDE_BINDING", True)
    prepare_threshold = os.environ.get("EXCHANGE_DATABASE_PREPARE_THRESHOLD", "5")
    options["prepare_threshold"] = int(prepare_threshold) if prepare_threshold else None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "exchange" / "web" / "static"]
STATIC_ROOT = VAR_DIR / "static"
# Production serves static files with WhiteNoise from STATIC_ROOT, each under a name with its
# content's hash (cached for ever by browsers) and compressed; a page naming a file that
# `collectstatic` did not collect fails loudly. The embedded mode (and the tests) serve them
# from the apps' folders, where there is nothing to collect first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
if DEBUG:
    # Nothing collected: WhiteNoise finds each file in the apps' folders when asked for it.
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web:portfolio"
LOGOUT_REDIRECT_URL = "web:markets"

# Celery: eager by default so the embedded mode needs no broker. Production points
# CELERY_BROKER_URL at Redis or RabbitMQ and runs workers plus beat.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool(
    "CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL" not in os.environ
)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Dead man's switches (exchange/services/cancel_after.py): orders go within a second.
    "fire-cancel-all-after-switches": {
        "task": "exchange.tasks.orders_cancel_all_after_due",
        "schedule": 1.0,
    },
    "expire-ledger-holds": {
        "task": "exchange.tasks.ledger_holds_expire",
        "schedule": 60.0,
    },
    "list-monthly-strips": {
        "task": "exchange.tasks.instruments_list_upcoming",
        "schedule": 6 * 60 * 60.0,
    },
    "run-pool-cut-offs-and-allocations": {
        "task": "exchange.tasks.pools_run_due",
        "schedule": 60.0,
    },
    "email-unsent-notices": {
        "task": "exchange.tasks.notices_email_unsent",
        "schedule": 10 * 60.0,
    },
}

# Notices (exchange/services/notices.py) email the members of an organization. Production sets
# EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS as its mail
# server needs) and DEFAULT_FROM_EMAIL; without EMAIL_HOST each message is written as a file
# under var/mail/, where `make run`'s notices can be read. Tests use Django's memory outbox.
EXCHANGE_NAME = os.environ.get("EXCHANGE_NAME", "GPU Exchange")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "GPU Exchange <notices@localhost>")
if os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"

# The matcher: "inline" matches in the submitting process under the instrument's row lock
# (embedded mode and tests); "external" leaves NEW orders to `manage.py run_matcher` shards.
EXCHANGE_MATCHER_MODE = os.environ.get("EXCHANGE_MATCHER_MODE", "inline")
if EXCHANGE_MATCHER_MODE not in {"inline", "external"}:
    raise ImproperlyConfigured("EXCHANGE_MATCHER_MODE must be 'inline' or 'external'.")
if EXCHANGE_MATCHER_MODE == "external" and "postgresql" not in DATABASES["default"]["ENGINE"]:
    raise ImproperlyConfigured("EXCHANGE_MATCHER_MODE=external needs PostgreSQL (DATABASE_URL).")
if EXCHANGE_MATCHER_MODE == "inline":
    # GTD expiry on books nobody trades: as often as an external matcher looks at its own
    # (MatcherLoop.wait_seconds_max), so an expired order is not shown open for long. External
    # matchers expire orders in their loop; beat sends them nothing for it.
    CELERY_BEAT_SCHEDULE["expire-good-till-date-orders"] = {
        "task": "exchange.tasks.orders_expire_due",
        "schedule": 1.0,
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)

# Stripe funding. With no secret key the exchange runs in a clearly labelled test-funds mode:
# deposits are credited from an equity account of test funds and withdrawals pay out to it.
# STRIPE_API_BASE points the client elsewhere (a fake server in tests); empty means Stripe's own.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
FUNDING_TEST_MODE = not STRIPE_SECRET_KEY

# Collateral and fees (see exchange/services/collateral.py and docs/ARCHITECTURE.md); initial
# margin comes from the scenario margin settings of the daily risk cycle below.
# A market order fills no further than this fraction beyond the best opposite price it found
# at acceptance ("market with protection"); its collateral is computed at that price.
EXCHANGE_MARKET_PROTECTION = Decimal(os.environ.get("EXCHANGE_MARKET_PROTECTION", "0.10"))
# Price limits (the fat-finger guard): a future's limit buy above its mark by more than this
# fraction, or sell below it by more, is refused (ORDER_PRICE_OUTSIDE_LIMIT); 0 turns them off.
# The mark is the newer of the latest settlement price and the last trade (selectors/marks.py).
EXCHANGE_PRICE_LIMIT = Decimal(os.environ.get("EXCHANGE_PRICE_LIMIT", "0.25"))
# Position limits (CME's and ICE's guard against one firm cornering a delivery month): the most
# contracts one organization, all its accounts together, may hold net in one future, its
# options counted one contract each on the side of their exposure, worst case with its resting
# orders (RISK_POSITION_LIMIT). A future's own Instrument.position_limit overrides this default;
# 0 (or empty) means no default limit. 5,000 contracts is 5,000 GPUs for the delivery month
# (about 3.65M GPU-hours, some $9M at $2.50): room for a 4,096-GPU training cluster and its
# hedges, while a larger buyer (a hyperscaler, a portfolio program) asks staff for an exemption
# (Organization.position_limit_exempt) or a higher limit on the future.
EXCHANGE_POSITION_LIMIT = int(os.environ.get("EXCHANGE_POSITION_LIMIT", "5000").strip() or 0)
# Fee schedule, fixed on each order at acceptance. Futures and options: USD per contract.
# Resale: a fraction of the notional (a few percent in this market, see MARKET.md).
EXCHANGE_FEES = {
    "future": {"maker": Decimal("0.20"), "taker": Decimal("0.50")},
    "option": {"maker": Decimal("0.10"), "taker": Decimal("0.25")},
    "resale": {"maker": Decimal("0.01"), "taker": Decimal("0.02")},
}
# Block tiers: once an order has filled at least this many contracts, the fill that got it there
# and those after pay this share of the schedule's fees. The tier follows the order's filled
# quantity, not the size it asked for (collateral.block_fee_share); the rates it applies to are
# fixed at acceptance. A portfolio pool's combined order is how small buyers reach the big
# buyer's tier (exchange/services/pools.py).
EXCHANGE_FEE_BLOCK_TIERS = [(100, Decimal("0.80")), (500, Decimal("0.60"))]

# Portfolio pools (exchange/services/pools.py): at most this many price tiers (one pool order
# each) per instrument at a cut-off; how long a round's orders work before the round closes and
# allocates; the largest credit line a sponsor may guarantee each member, USD.
EXCHANGE_POOL_PRICE_TIERS = int(os.environ.get("EXCHANGE_POOL_PRICE_TIERS", "3"))
EXCHANGE_POOL_ROUND_MINUTES = int(os.environ.get("EXCHANGE_POOL_ROUND_MINUTES", "60"))
EXCHANGE_POOL_CREDIT_LINE_MAX = Decimal(os.environ.get("EXCHANGE_POOL_CREDIT_LINE_MAX", "10000000"))
# Pool reports compare allocations with the market's average price over this many days.
EXCHANGE_POOL_MARKET_WINDOW_DAYS = int(os.environ.get("EXCHANGE_POOL_MARKET_WINDOW_DAYS", "30"))

# The daily risk cycle (exchange/services/risk_cycle.py, docs/ARCHITECTURE.md "The daily risk
# cycle"). Settlement prices come from the trades of the closing window that ends at
# EXCHANGE_SETTLEMENT_CLOSE (UTC) on each trading day; the beat schedule runs the cycle a few
# minutes after it.
EXCHANGE_SETTLEMENT_CLOSE = os.environ.get("EXCHANGE_SETTLEMENT_CLOSE", "16:00")
EXCHANGE_SETTLEMENT_WINDOW_MINUTES = int(os.environ.get("EXCHANGE_SETTLEMENT_WINDOW_MINUTES", "30"))
# Scenario (SPAN-like) margin: the price scan range (fraction of the underlying's price), the
# volatility scan range (absolute), the minimum per short option contract (fraction of the
# strike notional), and the risk-free rate options are discounted at.
EXCHANGE_PRICE_SCAN = Decimal(os.environ.get("EXCHANGE_PRICE_SCAN", "0.15"))
EXCHANGE_VOLATILITY_SCAN = Decimal(os.environ.get("EXCHANGE_VOLATILITY_SCAN", "0.20"))
EXCHANGE_SHORT_OPTION_MINIMUM = Decimal(os.environ.get("EXCHANGE_SHORT_OPTION_MINIMUM", "0.02"))
EXCHANGE_RISK_FREE_RATE = Decimal(os.environ.get("EXCHANGE_RISK_FREE_RATE", "0.04"))
# The volatility options are valued at before any of them has traded: GPU rental prices moved
# 3-4x within a year (MARKET.md), so well above most commodities.
EXCHANGE_DEFAULT_VOLATILITY = Decimal(os.environ.get("EXCHANGE_DEFAULT_VOLATILITY", "0.60"))
# An option with no implied volatility of its own or its siblings' is valued at its future's
# historical volatility (exchange/selectors/volatility.py): from its latest this many settlement
# prices, given at least the minimum, and at least the floor; else at the default above.
EXCHANGE_HISTORICAL_VOLATILITY_PRICES = int(
    os.environ.get("EXCHANGE_HISTORICAL_VOLATILITY_PRICES", "30")
)
EXCHANGE_HISTORICAL_VOLATILITY_PRICES_MIN = int(
    os.environ.get("EXCHANGE_HISTORICAL_VOLATILITY_PRICES_MIN", "10")
)
EXCHANGE_VOLATILITY_FLOOR = Decimal(os.environ.get("EXCHANGE_VOLATILITY_FLOOR", "0.10"))
# Offset credits between underlyings (pricing.margin.portfolio_margin): adjacent delivery months
# of one SKU and region, and the same SKU and month in two regions.
EXCHANGE_CREDIT_ADJACENT_MONTHS = Decimal("0.50")
EXCHANGE_CREDIT_SAME_SKU_OTHER_REGION = Decimal("0.30")
# Maintenance margin as a fraction of initial: an account holding less after the daily top-up
# gets a margin call and may only reduce its positions until it is cured.
EXCHANGE_MAINTENANCE_RATIO = Decimal(os.environ.get("EXCHANGE_MAINTENANCE_RATIO", "0.80"))
# Physical delivery (risk_cycle._delivery_penalties): a party whose futures are cash-settled
# because it could not deliver the GPU-hours (a short) or pay for them (a long) pays this
# fraction of the final settlement value of each contract it failed to the party paired with it
# in the fallback, who bought or sold capacity and got cash instead. 10% is below the price scan
# (0.15), so the margin the failing party held on the future, released into its cash at the
# expiry, covers it; and it is more than GPU rental prices usually move in the
# few days between the last trading day and the month's start, so keeping hours sold forward
# to resell them, or walking away from a purchase, rarely pays. 0 turns it off.
EXCHANGE_DELIVERY_FAILURE_PENALTY = Decimal(
    os.environ.get("EXCHANGE_DELIVERY_FAILURE_PENALTY", "0.10")
)
# Listing as months roll: futures this many months ahead, and option strikes around each
# future's reference price, spaced by this fraction of it (rounded to the option tick).
EXCHANGE_LISTED_MONTHS = int(os.environ.get("EXCHANGE_LISTED_MONTHS", "12"))
EXCHANGE_OPTION_MONTHS = int(os.environ.get("EXCHANGE_OPTION_MONTHS", "3"))
EXCHANGE_STRIKE_STEP_FRACTION = Decimal("0.05")
EXCHANGE_STRIKES_EACH_SIDE = 4

_close_hour, _close_minute = (int(part) for part in EXCHANGE_SETTLEMENT_CLOSE.split(":"))
_settle_minute = _close_hour * 60 + _close_minute + 10
CELERY_BEAT_SCHEDULE |= {
    # Ten minutes after the close of each business day: the trades of the window are all
    # matched. A close after 23:50 puts the run on the next morning, Tuesday to Saturday (it
    # settles the day that closed: ``last_closed_day``).
    "daily-settlement": {
        "task": "exchange.tasks.risk_daily_settlement",
        "schedule": crontab(
            hour=_settle_minute % (24 * 60) // 60,
            minute=_settle_minute % 60,
            day_of_week="mon-fri" if _settle_minute < 24 * 60 else "tue-sat",
        ),
    },
    "review-margin-calls": {
        "task": "exchange.tasks.risk_margin_calls_review",
        "schedule": 5 * 60.0,
    },
    # Past months' GPU-hours, once their month has ended (nothing to do on most days).
    "retire-ended-months-gpu-hours": {
        "task": "exchange.tasks.entitlements_retire_ended",
        "schedule": crontab(hour=0, minute=20),
    },
}


# The REST API (exchange/api/, docs/API.md) and its push feed (exchange/feed/).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "exchange.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["exchange.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["exchange.api.throttling.PerKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"key": os.environ.get("EXCHANGE_API_RATE", "100/s")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["exchange.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "exchange.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Exchange API",
    "DESCRIPTION": (
        "Futures on GPU-hours, options on them and resale of reserved GPU capacity. Prices are "
        "USD per GPU-hour, quantities contracts. Authenticate with `Authorization: Bearer "
        "<key>`; see docs/API.md for scopes, signing and errors."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A path segment without NUL (exchange/api/converters.py), in the schema a string with the
    # same pattern.
    "PATH_CONVERTER_OVERRIDE": {"text": {"type": "string", "pattern": "^[^/\\x00]+$"}},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # A 400 on every operation (a query parameter it does not take), and ?format=json.
        "exchange.api.views.query_schema",
        "exchange.api.throttling.schema_headers",  # RateLimit-* and Retry-After.
    ],
    "ENUM_NAME_OVERRIDES": {
        "DepositStatusEnum": "exchange.models.funding.Deposit.Status",
        "DepositMethodEnum": "exchange.models.funding.Deposit.Method",
        "PoolStatusEnum": "exchange.models.pools.Pool.Status",
        "PoolMemberStatusEnum": "exchange.models.pools.PoolMember.Status",
        "PoolDemandStatusEnum": "exchange.models.pools.PoolDemand.Status",
        "PoolRoundStatusEnum": "exchange.models.pools.PoolRound.Status",
        "PoolAllocationStatusEnum": "exchange.models.pools.PoolAllocation.Status",
        "OrderStatusEnum": "exchange.models.orders.Order.Status",
    },
}
# With external matchers, a placement or replace through the API (and the web's ticket and
# amend) waits this long for the matcher's outcome (fills, resting, rejected) before answering
# with the order as accepted.
EXCHANGE_API_MATCH_WAIT_SECONDS = float(os.environ.get("EXCHANGE_API_MATCH_WAIT_SECONDS", "2"))
# How long a web process trusts an API key it has read (revocation reaches other processes
# within this many seconds; the revoking process forgets the key at once).
EXCHANGE_API_KEY_CACHE_SECONDS = float(os.environ.get("EXCHANGE_API_KEY_CACHE_SECONDS", "1"))
# How long a process trusts an instrument and an organization's main trading account (with
# its margin-call flag) read for placing orders (``exchange.recent``): its own changes are
# seen at once, other processes' within this many seconds; the matcher re-checks the
# instrument's status under its row lock. 0 reads them for every order.
EXCHANGE_REFERENCE_CACHE_SECONDS = float(os.environ.get("EXCHANGE_REFERENCE_CACHE_SECONDS", "1"))
# Signed requests are accepted this long around their timestamp, and each only once.
EXCHANGE_API_SIGNATURE_WINDOW_SECONDS = int(
    os.environ.get("EXCHANGE_API_SIGNATURE_WINDOW_SECONDS", "30")
)
# A push-feed connection without a key in its handshake has this long to send it in an "auth"
# message before it is closed (4401).
EXCHANGE_FEED_AUTH_SECONDS = float(os.environ.get("EXCHANGE_FEED_AUTH_SECONDS", "10"))
# A private push-feed connection is closed (4401) when its key is revoked: at once through the
# channel layer, and, should that message be lost, when it next reads its key, this often.
EXCHANGE_FEED_KEY_CHECK_SECONDS = float(os.environ.get("EXCHANGE_FEED_KEY_CHECK_SECONDS", "10"))

# The cache: rate limits and seen request signatures. Several web processes must share it
# (Redis in production); the embedded mode's one process keeps it in memory.
REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Channels: the push feed. In memory for the embedded mode (one process); Redis in production,
# so that matchers and every web process meet on one channel layer.
ASGI_APPLICATION = "exchange.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "exchange.feed.layers.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
    if REDIS_URL
    else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
}
