"""The audit log: who changed what, when, before and after. Rows are never edited.

Three guards keep it append-only: ``save()`` refuses a row that exists, ``delete()`` refuses, and
the queryset refuses ``update()`` and ``delete()``. On PostgreSQL a trigger (migration 0008)
refuses UPDATE and DELETE whatever the code does; SQLite has only the code's guards (a trigger
there would also refuse the DELETE with which the test database is emptied).
"""

from typing import Any, NoReturn

from django.conf import settings
from django.db import models


class AuditLogAppendOnly(RuntimeError):
    """An attempt to change or remove an audit row: the log only grows."""


def _refuse(operation: str) -> NoReturn:
    raise AuditLogAppendOnly(f"AUDIT_APPEND_ONLY: {operation} of audit entries is refused.")


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        _refuse("update")

    def delete(self) -> NoReturn:
        _refuse("delete")

    # bulk_update() goes through update(); _raw_delete() is what delete() of a related object
    # cascading here would use, and the actor's PROTECT keeps users from cascading at all.
    def _raw_delete(self, using: Any) -> NoReturn:
        _refuse("delete")


class AuditEntry(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150, help_text="User name, or the system process that acted."
    )
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            # The audit log's filter on actions, and its choices of them (one seek each).
            models.Index(fields=["action"], name="audit_action"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label}: {self.action} {self.target_type} {self.target_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or kwargs.get("force_update"):
            _refuse("update")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete")
