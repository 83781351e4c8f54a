"""The database's own guard of the ledger's invariants (in addition to the code's).

- PostgreSQL: a deferred constraint trigger checks at commit that every entry that received
  postings sums to zero per commodity, so no transaction can commit an unbalanced entry, however
  it writes.
- PostgreSQL and SQLite: entries, postings and hold consumptions refuse UPDATE and DELETE.
  Corrections are reversing entries.
"""

from django.db import migrations

APPEND_ONLY_TABLES = ["ledger_entry", "ledger_posting", "ledger_holdconsumption"]

POSTGRESQL_BALANCE = """
CREATE OR REPLACE FUNCTION ledger_entry_must_balance() RETURNS trigger AS $$
DECLARE
    unbalanced RECORD;
BEGIN
    SELECT commodity_id, SUM(amount) AS total INTO unbalanced
    FROM ledger_posting WHERE entry_id = NEW.entry_id
    GROUP BY commodity_id HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'LEDGER_ENTRY_UNBALANCED: entry %% sums to %% in commodity %%',
            NEW.entry_id, unbalanced.total, unbalanced.commodity_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_entry_must_balance
    AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance();

CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'LEDGER_APPEND_ONLY: %% on %% is refused; post a reversing entry',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

POSTGRESQL_APPEND_ONLY = """
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
"""

SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER {table}_no_{operation} BEFORE {verb} ON {table} BEGIN "
    "SELECT RAISE(ABORT, 'LEDGER_APPEND_ONLY: {verb} on {table} is refused'); END;".format(
        table="{table}", operation=verb.lower(), verb=verb
    )
    for verb in ("UPDATE", "DELETE")
]


# Django's schema editor passes SQL through psycopg's placeholder parsing, so the PL/pgSQL
# RAISE placeholders above are written %% and reach PostgreSQL as %.


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BALANCE)
        for table in APPEND_ONLY_TABLES:
            schema_editor.execute(POSTGRESQL_APPEND_ONLY.format(table=table))
    elif vendor == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for statement in SQLITE_APPEND_ONLY:
                schema_editor.execute(statement.format(table=table))
    else:
        raise NotImplementedError(f"no ledger guards for {vendor}")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in APPEND_ONLY_TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update;")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete;")
    if vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS ledger_entry_must_balance ON ledger_posting;")
        schema_editor.execute("DROP FUNCTION IF EXISTS ledger_entry_must_balance();")
        schema_editor.execute("DROP FUNCTION IF EXISTS ledger_append_only();")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
