"""The OpenAPI document and its two renderings, served by the exchange itself (no CDN)."""

import re

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_with_the_bearer_scheme(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert "/api/v1/orders/" in schema["paths"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_load_their_assets_from_this_server_only(client, path):
    page = client.get(path).content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page loads its viewer"
    for source in sources:
        assert not source.startswith(("http://", "https://", "//")), source
    scripts = [s for s in sources if s.endswith(".js")]
    assert scripts and all(s.startswith("/static/drf_spectacular_sidecar/") for s in scripts)
    for script in scripts:  # and every one of them is really there
        assert finders.find(script.removeprefix("/static/")), script
