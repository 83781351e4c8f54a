from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = "Exchange"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from exchange import recent
        from exchange.models import Account, Instrument, MarginCall, Organization

        # What web processes keep for a moment (``exchange.recent``) is forgotten in the process
        # that saves such a row; services that change them with ``update()`` call it too.
        for model in (Account, Instrument, MarginCall, Organization):
            for signal in (post_save, post_delete):
                signal.connect(
                    recent.changed, sender=model, dispatch_uid=f"recent-{model.__name__}"
                )
