"""Wake external matchers from the database: NOTIFY for every order command inserted.

PostgreSQL only; SQLite runs the inline matcher, which needs no wake-up.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION exchange_ordercommand_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('exchange_matcher', NEW.instrument_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER exchange_ordercommand_notify
    AFTER INSERT ON exchange_ordercommand
    FOR EACH ROW EXECUTE FUNCTION exchange_ordercommand_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS exchange_ordercommand_notify ON exchange_ordercommand;
DROP FUNCTION IF EXISTS exchange_ordercommand_notify();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("exchange", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
