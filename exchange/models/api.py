"""API keys: how automated traders authenticate (see ``exchange.services.api_keys``)."""

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """A key of an organization, with scopes. The secret is shown once and never stored: only
    its SHA-256 digest (for bearer authentication) and, encrypted with the server's key, the
    signing key derived from it (for HMAC request signing)."""

    class Scope(models.TextChoices):
        READ = "read", "Read (market data, account)"
        TRADE = "trade", "Trade (orders, capacity)"
        TRANSFER = "transfer", "Transfer (deposits, withdrawals)"

    organization = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key.")
    secret_digest = models.CharField(max_length=64, help_text="SHA-256 of the secret, hex.")
    signing_key_encrypted = models.TextField(help_text="Fernet token of the signing key.")
    scopes = models.JSONField(default=list)
    ip_allowlist = models.JSONField(
        default=list, blank=True, help_text="Networks (CIDR) the key may be used from; empty: any."
    )
    require_signature = models.BooleanField(
        default=False, help_text="Refuse requests that are not HMAC-signed."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.name} ({self.prefix})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
