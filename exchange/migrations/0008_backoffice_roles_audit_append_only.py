"""The back office's staff roles and the audit log's database guard.

- Three groups, one per staff role: operations (trading status, listings, orders), risk
  (settlement prices, the daily cycle, margin calls and liquidation) and finance (withdrawals,
  the trial balance). exchange/backoffice/roles.py says what each opens; superusers have all.
- PostgreSQL: the audit table refuses UPDATE and DELETE, whatever the code does. SQLite keeps
  the model's guards only: a trigger there would also refuse the DELETE with which tests empty
  the database, and SQLite has no session setting to lift it. TRUNCATE is not guarded (it is
  how the test runner empties PostgreSQL, and the ledger's tables are guarded the same way).
"""

from django.db import migrations

ROLE_GROUPS = ["operations", "risk", "finance"]

# No % placeholders: Django's schema editor passes SQL through psycopg's parameter parsing.
POSTGRESQL_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION exchange_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'AUDIT_APPEND_ONLY: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' is refused',
        ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER exchange_auditentry_append_only
    BEFORE UPDATE OR DELETE ON exchange_auditentry
    FOR EACH ROW EXECUTE FUNCTION exchange_audit_append_only();
"""

POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS exchange_auditentry_append_only ON exchange_auditentry;
DROP FUNCTION IF EXISTS exchange_audit_append_only();
"""


def groups_create(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    for name in ROLE_GROUPS:
        group_model.objects.get_or_create(name=name)


def audit_guard_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_APPEND_ONLY)


def audit_guard_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0007_api_keys"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        # The groups stay on the way back: users may belong to them by then.
        migrations.RunPython(groups_create, migrations.RunPython.noop),
        migrations.RunPython(audit_guard_create, audit_guard_drop),
    ]
