"""The back office's forms: filters of the lists, and the reason a staff action needs."""

from typing import Any

from django import forms

from exchange.models import Instrument

ANY = [("", "Any")]


class InstrumentFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=ANY + list(Instrument.Status.choices), required=False, label="Status"
    )
    kind = forms.ChoiceField(
        choices=ANY + list(Instrument.Kind.choices), required=False, label="Kind"
    )
    symbol = forms.CharField(max_length=64, required=False, label="Symbol contains")


class StatusChangeForm(forms.Form):
    """The reason is required: it is what the audit log keeps of why trading stopped."""

    reason = forms.CharField(
        max_length=300,
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded in the audit log with your name (up to 300 characters).",
    )


class AuditFilterForm(forms.Form):
    actor = forms.CharField(max_length=150, required=False, label="Actor (user name)")
    action = forms.CharField(
        max_length=64,
        required=False,
        label="Action",
        help_text='Exact, or a prefix ending in a dot ("withdrawal.").',
        widget=forms.TextInput(attrs={"list": "audit-actions"}),
    )
    target_type = forms.ChoiceField(choices=ANY, required=False, label="Target type")
    target_id = forms.CharField(max_length=64, required=False, label="Target id")

    def __init__(self, *args: Any, target_types: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["target_type"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = ANY + [(name, name) for name in target_types]
