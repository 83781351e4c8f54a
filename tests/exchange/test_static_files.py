"""Static files as production serves them: collected by ``collectstatic`` (hashed names,
compressed copies), then answered by WhiteNoise from the web process itself, for the pages,
the admin and the API docs (Swagger UI and ReDoc work offline: nothing comes from a CDN)."""

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

pytestmark = pytest.mark.django_db

PRODUCTION_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A production static root, collected once: ``collectstatic`` with production's storage,
    whose settings hold for the module's tests."""
    root = tmp_path_factory.mktemp("static")
    with override_settings(
        STATIC_ROOT=root,
        STORAGES=PRODUCTION_STORAGES,
        WHITENOISE_USE_FINDERS=False,  # Production's: only what was collected.
        WHITENOISE_AUTOREFRESH=False,
    ):
        call_command("collectstatic", "--noinput", verbosity=0)
        yield root


def assets_of(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', page)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/", "/", "/admin/login/"])
def test_every_asset_a_page_names_is_served_hashed_and_compressed(collected, path):
    client = Client()  # A new handler: the middleware reads the collected root.

    page = client.get(path)
    assets = assets_of(page.content.decode())

    assert page.status_code == 200 and assets
    for asset in assets:
        assert re.search(r"\.[0-9a-f]{12}\.", asset), f"{asset} is not under a hashed name"
        answer = client.get(asset, HTTP_ACCEPT_ENCODING="gzip")
        assert answer.status_code == 200, asset
        assert answer["Cache-Control"] == "max-age=315360000, public, immutable"
        if asset.endswith((".js", ".css")):
            assert answer["Content-Encoding"] == "gzip"
        answer.close()


def test_the_favicon_redirect_names_the_collected_file(collected):
    answer = Client().get("/favicon.ico")

    assert answer.status_code == 301
    assert re.fullmatch(r"/static/exchange/favicon\.[0-9a-f]{12}\.svg", answer["Location"])
    assert Client().get(answer["Location"]).status_code == 200


def test_commands_run_in_production_before_anything_is_collected(tmp_path):
    """Every command loads the URLs: none may need the manifest that ``collectstatic``, one of
    those commands, writes."""
    environment = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "a-production-secret-for-this-test-only-0123456789",
        "DJANGO_ALLOWED_HOSTS": "exchange.example.com",
        "EXCHANGE_VAR_DIR": str(tmp_path),
    }
    environment.pop("DATABASE_URL", None)  # Nothing here reads the database.

    checked = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stderr
