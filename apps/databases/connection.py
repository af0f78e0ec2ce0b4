"""Connection parameters for PostgreSQL client tools and psycopg, without secrets on command lines."""
import os
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

from apps.core.errors import UserError


@dataclass(frozen=True)
class PgConn:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)
    sslmode: str = "prefer"

    @classmethod
    def from_dsn(cls, dsn: str) -> "PgConn":
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql"):
            raise UserError("The DSN must look like postgresql://USER:PASSWORD@HOST:PORT/DBNAME.")
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname or not parts.username:
            raise UserError("The DSN needs a user, a host and a database name: postgresql://USER:PASSWORD@HOST:PORT/DBNAME.")
        try:
            port = parts.port or 5432
        except ValueError:
            raise UserError("The DSN's port is not a number between 1 and 65535.") from None
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return cls(
            host=parts.hostname,
            port=port,
            dbname=dbname,
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            sslmode=query.get("sslmode", "prefer"),
        )

    @classmethod
    def for_target(cls, target) -> "PgConn":
        return cls(
            host=target.host,
            port=target.port,
            dbname=target.dbname,
            user=target.user,
            password=target.get_password(),
            sslmode=target.sslmode,
        )

    def with_db(self, dbname: str) -> "PgConn":
        return replace(self, dbname=dbname)

    def redacted(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def env(self, app_name: str = "backupsite") -> dict[str, str]:
        """Environment for libpq tools: the password travels here, never in argv."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGDATABASE=self.dbname,
            PGUSER=self.user,
            PGSSLMODE=self.sslmode,
            PGAPPNAME=app_name,
            PGCONNECT_TIMEOUT="10",
        )
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def kwargs(self, app_name: str = "backupsite") -> dict:
        """Keyword arguments for psycopg.connect."""
        kw = dict(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            sslmode=self.sslmode,
            application_name=app_name,
            connect_timeout=10,
        )
        if self.password:
            kw["password"] = self.password
        return kw
