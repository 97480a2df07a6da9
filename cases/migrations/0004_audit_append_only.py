"""On PostgreSQL, refuse UPDATE and DELETE on the audit table at the database.

TRUNCATE (used by test teardown) is not a row operation and bypasses it.
"""

from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION pneumo_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS pneumo_audit_append_only ON cases_auditevent;
CREATE TRIGGER pneumo_audit_append_only BEFORE UPDATE OR DELETE ON cases_auditevent
    FOR EACH ROW EXECUTE FUNCTION pneumo_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS pneumo_audit_append_only ON cases_auditevent;
DROP FUNCTION IF EXISTS pneumo_audit_append_only();
"""


def _run(sql: str):
    def apply(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("cases", "0003_roles")]
    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
