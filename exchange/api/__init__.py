"""The REST API, version 1 (``/api/v1/``): thin DRF views over the services and selectors.

See docs/API.md for the guide and ``/api/schema/`` for the OpenAPI document.
"""

# The path converters the routes use, registered before any module builds its routes.
from exchange.api import converters  # noqa: F401
