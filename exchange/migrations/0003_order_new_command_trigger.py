"""Every order inserted as NEW gets its NEW command in the same statement.

The committed order row is the durable command (DESIGN.md); this trigger makes its entry in the
matcher's queue part of that one insert, so accepting an order is a single autocommit statement
and no code path can commit a NEW order the matcher would never see.
"""

from django.db import migrations

COLUMNS = "kind, order_id, instrument_id, price, quantity, status, reject_code, requested_by_id, created_at"
VALUES = (
    "'new', NEW.id, NEW.instrument_id, NULL, NULL, 'pending', '', NEW.placed_by_id, NEW.created_at"
)

POSTGRESQL_CREATE = f"""
CREATE OR REPLACE FUNCTION exchange_order_new_command() RETURNS trigger AS $$
BEGIN
    INSERT INTO exchange_ordercommand ({COLUMNS}) VALUES ({VALUES});
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER exchange_order_new_command
    AFTER INSERT ON exchange_order
    FOR EACH ROW WHEN (NEW.status = 'new') EXECUTE FUNCTION exchange_order_new_command();
"""
POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS exchange_order_new_command ON exchange_order;
DROP FUNCTION IF EXISTS exchange_order_new_command();
"""
SQLITE_CREATE = f"""
CREATE TRIGGER exchange_order_new_command AFTER INSERT ON exchange_order
WHEN NEW.status = 'new'
BEGIN
    INSERT INTO exchange_ordercommand ({COLUMNS}) VALUES ({VALUES});
END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS exchange_order_new_command;"


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_CREATE)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_CREATE)
    else:
        raise NotImplementedError(f"no order command trigger for {vendor}")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    schema_editor.execute(POSTGRESQL_DROP if vendor == "postgresql" else SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("exchange", "0002_command_notify_trigger")]

    operations = [migrations.RunPython(forwards, backwards)]
