"""Sample property-platform data for the demo sandbox and the tests."""
import psycopg

from apps.databases.connection import PgConn

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS billing;
CREATE TABLE properties (
    id bigserial PRIMARY KEY,
    address text NOT NULL,
    city text NOT NULL,
    bedrooms int NOT NULL,
    monthly_rent numeric(10, 2) NOT NULL,
    listed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tenants (
    id bigserial PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL UNIQUE
);
CREATE TABLE leases (
    id bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties(id),
    tenant_id bigint NOT NULL REFERENCES tenants(id),
    starts_on date NOT NULL,
    ends_on date NOT NULL,
    notes text
);
CREATE TABLE billing.payments (
    id bigserial PRIMARY KEY,
    lease_id bigint NOT NULL REFERENCES leases(id),
    paid_on date NOT NULL,
    amount numeric(10, 2) NOT NULL
);
CREATE INDEX ON leases (property_id);
"""

DATA_SQL = """
INSERT INTO properties (address, city, bedrooms, monthly_rent)
    SELECT g || ' Harbour Street', (ARRAY['Lisbon', 'Porto', 'Faro'])[1 + g % 3], 1 + g % 4, 800 + (g % 50) * 10
      FROM generate_series(1, %(n)s) g;
INSERT INTO tenants (full_name, email)
    SELECT 'Tenant ' || g, 'tenant' || g || '@example.com' FROM generate_series(1, %(n)s) g;
INSERT INTO leases (property_id, tenant_id, starts_on, ends_on, notes)
    SELECT g, g, date '2024-01-01' + g % 365, date '2025-01-01' + g % 365, 'confidential-lease-note-' || md5(g::text)
      FROM generate_series(1, %(n)s) g;
INSERT INTO billing.payments (lease_id, paid_on, amount)
    SELECT 1 + g % %(n)s, date '2024-02-01' + g % 300, 800 + g % 500 FROM generate_series(1, %(n)s * 3) g;
"""

SECRET_MARKER = "confidential-lease-note-"


def load(conn: PgConn, *, rows: int = 1000) -> None:
    with psycopg.connect(**conn.kwargs("backupsite-sample")) as c:
        c.execute(SCHEMA_SQL)
        c.execute(DATA_SQL.replace("%(n)s", str(int(rows))))
