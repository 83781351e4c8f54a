"""The GPU capacity exchange: Django project and market domain."""

from exchange.celery import app as celery_app

__all__ = ["celery_app"]
