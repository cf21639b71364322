"""The embedded warehouse: a persistent local PostgreSQL 16 from the ``pgserver`` wheel.

Used only when ``WAREHOUSE_URL`` is unset. Data lives in ``var/pgdata``; the server
listens on 127.0.0.1:<CRM_PG_PORT> (so any BI tool can connect) and on a Unix
socket in the data directory. PostgreSQL refuses to run as root, so under root
the server runs as the unprivileged ``pgserver`` OS user (created on first use).

Roles: ``crm_admin`` is the cluster's superuser (``initdb -U crm_admin``), used only here to
create ``crm_owner``; ``crm_owner`` is no superuser (CREATEROLE, CREATEDB), owns the database
and runs the migrations. A cluster from before this split (``initdb -U crm_owner``, the owner
a superuser) is refused with how to re-create it (:data:`PRE_SPLIT`): the bootstrap superuser
cannot lose its attribute (docs/security.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from crm.settings import ADMIN, Settings, private_dir

log = logging.getLogger(__name__)

OWNER = "crm_owner"
RUN_AS = "pgserver"
# The owner's attributes: it creates the platform's roles (migrations, `crm rm grant`) and
# databases (tests, scratch benchmarks), ends ordinary sessions (pg_signal_backend), and does
# nothing a superuser alone may do (COPY ... TO PROGRAM, server files, untrusted languages).
OWNER_ATTRIBUTES = "login nosuperuser createrole createdb noreplication nobypassrls"

# The access audit (crm privacy access-log, docs/security.md): the server logs as CSV through its
# logging collector into <pgdata>/log, owner-only files. Which statements are logged is set per
# role (log_statement = 'all' for the reading roles, migration 0016); this file only makes the
# log collectable. Rewritten on every start, included last from postgresql.conf.
AUDIT_LOG_DIR = "log"
AUDIT_LOG_CONF = "crm_access_audit.conf"
AUDIT_LOG_SETTINGS = {
    "logging_collector": "on",
    "log_destination": "csvlog",
    "log_directory": AUDIT_LOG_DIR,
    "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
    "log_file_mode": "0600",
    "log_rotation_age": "1d",
    "log_rotation_size": "100MB",
    "log_line_prefix": "%m [%p] %q%u@%d %c ",
    "log_timezone": "UTC",  # CSV times carry the zone abbreviation: CST etc. are ambiguous
}
# Only the reading roles' statements: everyone else's stay unlogged (volume, and the writers'
# statements carry the data they load).
AUDIT_LOG_ROLE_SETTING = "log_statement"

PRE_SPLIT = (
    "{pgdata} predates the crm_admin/crm_owner split: crm_owner is its superuser, which can run"
    " operating-system commands (COPY ... TO PROGRAM) and cannot be demoted. Re-create it: crm warehouse"
    " stop; mv {pgdata} {pgdata}.pre-split; crm warehouse start; then reload the data (crm history or"
    " crm demo), or move it with pg_dump --no-owner (docs/security.md, 'The owner is no superuser')."
)


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        import pgserver  # the wheel that ships PostgreSQL binaries

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class WarehouseError(RuntimeError):
    """The embedded warehouse could not be started, stopped or reached."""


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    pgdata: Path
    port: int

    def __str__(self) -> str:
        if self.running:
            return f"running (pid {self.pid}) on 127.0.0.1:{self.port}, data in {self.pgdata}"
        return f"stopped, data in {self.pgdata}"


class EmbeddedWarehouse:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pgdata = settings.pgdata
        self.port = settings.pg_port
        self.logfile = self.pgdata / "postgres.log"
        self._as_root = os.geteuid() == 0

    # -- process helpers -------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(_pg_bin() / args[0]), *args[1:]]
        # Output goes to temporary files: pg_ctl keeps pipes open via the postmaster.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                user=RUN_AS if self._as_root else None,
                cwd="/",
            )
            out.seek(0)
            proc.stdout = out.read()
        if check and proc.returncode != 0:
            raise WarehouseError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stdout.strip()}")
        return proc

    def _prepare_root(self) -> None:
        if not self._as_root:
            return
        import fcntl

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        # Parallel first starts (pytest-xdist workers on a fresh machine) would race on
        # `useradd` and the binaries' permissions: one process at a time.
        with open(Path(tempfile.gettempdir()) / "crm-pgserver-setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entry = ensure_user_exists(RUN_AS)
            assert entry is not None
            bin_dir = _pg_bin()
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir, 0o055)
            ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
            if (bin_dir.parent / "share").exists():
                ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        private_dir(self.pgdata)
        # pgserver opens every parent folder to all (g+rx,o+rx); the server's user needs only to
        # traverse CRM_HOME, so nobody else gets to list it.
        home_mode = stat.S_IMODE(self.pgdata.parent.stat().st_mode)
        ensure_prefix_permissions(self.pgdata)
        self.pgdata.parent.chmod(home_mode | 0o011)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    # -- lifecycle -------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        private_dir(self.pgdata)
        if any(self.pgdata.iterdir()):
            raise WarehouseError(f"{self.pgdata} is not empty and holds no PostgreSQL cluster")
        self._prepare_root()
        password = self.settings.role_password(ADMIN)
        fd, pwfile = tempfile.mkstemp(prefix="crm-pw-")
        try:
            os.write(fd, password.encode())
            os.close(fd)
            if self._as_root:  # initdb runs as RUN_AS: its file, still owner-only (mkstemp: 0600)
                import pwd

                entry = pwd.getpwnam(RUN_AS)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                ADMIN,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            os.unlink(pwfile)
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            # Sized for a 2-core laptop-class machine running the whole pipeline.
            conf.write(
                "\n# crm: embedded warehouse settings\n"
                "shared_buffers = 256MB\nwork_mem = 32MB\nmaintenance_work_mem = 256MB\n"
                "max_wal_size = 2GB\nmax_connections = 100\ntimezone = 'UTC'\n"
                # A single local node without replicas: bulk loads into a partition
                # truncated in the same transaction skip the WAL.
                "wal_level = minimal\nmax_wal_senders = 0\n"
            )
        log.info("initialised embedded warehouse in %s", self.pgdata)

    def write_audit_logging_conf(self) -> None:
        """:data:`AUDIT_LOG_SETTINGS` into ``<pgdata>/crm_access_audit.conf`` (server user, 0600),
        included from postgresql.conf (the include line appended once). Takes effect on start."""
        lines = "".join(f"{key} = '{value}'\n" for key, value in AUDIT_LOG_SETTINGS.items())
        conf = self.pgdata / AUDIT_LOG_CONF
        conf.write_text("# crm: the access audit's log (docs/security.md); rewritten on start\n" + lines)
        conf.chmod(0o600)
        main = self.pgdata / "postgresql.conf"
        include = f"include_if_exists = '{AUDIT_LOG_CONF}'"
        if include not in main.read_text(encoding="utf-8").splitlines():
            with open(main, "a", encoding="utf-8") as out:
                out.write(f"\n# crm: the access audit's log settings\n{include}\n")
        if self._as_root:
            import pwd

            entry = pwd.getpwnam(RUN_AS)
            os.chown(conf, entry.pw_uid, entry.pw_gid)

    def status(self) -> Status:
        if not self.initialised():
            return Status(False, None, self.pgdata, self.port)
        proc = self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False)
        pid = None
        if proc.returncode == 0:
            pid_file = self.pgdata / "postmaster.pid"
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = None
        return Status(proc.returncode == 0, pid, self.pgdata, self.port)

    def start(self, timeout: float = 60) -> Status:
        self.init()
        self._prepare_root()
        if self.status().running:
            self.ensure_owner()
            return self.status()
        self.write_audit_logging_conf()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}"
        deadline = time.monotonic() + timeout
        while True:
            # After a kill -9 the orphaned backends keep the shared memory segment for a
            # few seconds and the postmaster refuses to start: retry until they are gone.
            proc = self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-o",
                options,
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "30",
                "start",
                check=False,
            )
            if proc.returncode == 0:
                break
            if time.monotonic() > deadline:
                tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
                raise WarehouseError(f"could not start PostgreSQL in {self.pgdata}: {proc.stdout}\n{tail}")
            log.warning("PostgreSQL did not start yet (%s); retrying", proc.stdout.strip()[-200:])
            time.sleep(1)
        self.ensure_owner()
        status = self.status()
        log.info("embedded warehouse %s", status)
        return status

    def ensure_owner(self) -> None:
        """As ``crm_admin`` (the Unix socket, local trust): create ``crm_owner`` without
        superuser, or re-apply its attributes and password. :class:`WarehouseError` for a
        cluster from before the split (no ``crm_admin``, or a superuser ``crm_owner``)."""
        import psycopg

        try:
            conn = psycopg.connect(self.socket_url("postgres", role=ADMIN), autocommit=True)
        except psycopg.OperationalError as err:
            if f'role "{ADMIN}" does not exist' in str(err):
                raise WarehouseError(PRE_SPLIT.format(pgdata=self.pgdata)) from None
            raise
        with conn:
            ensure_owner_role(conn, self.settings.role_password(OWNER))
            collector = conn.execute("select current_setting('logging_collector')").fetchone()
        self.ensure_code_guard("template1")  # every database created later starts with it
        if collector and collector[0] != "on":
            log.warning(
                "the access audit's log is off until the warehouse restarts"
                " (crm warehouse stop; crm warehouse start)"
            )

    def ensure_code_guard(self, database: str) -> None:
        """As ``crm_admin``: only the owner creates code in ``database`` (crm.warehouse.code_guard)."""
        import psycopg

        from crm.warehouse.code_guard import ensure_code_guard

        with psycopg.connect(self.socket_url(database, role=ADMIN), autocommit=True) as conn:
            ensure_code_guard(conn)

    def stop(self) -> Status:
        if self.status().running:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        return self.status()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)

    # -- addresses -------------------------------------------------------------------
    def url(self, role: str = OWNER, database: str | None = None) -> str:
        from urllib.parse import quote

        password = quote(self.settings.role_password(role), safe="")
        db = database or self.settings.pg_database
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{db}"

    def socket_url(self, database: str | None = None, role: str = OWNER) -> str:
        db = database or self.settings.pg_database
        return f"postgresql://{role}@/{db}?host={self.pgdata}&port={self.port}"


def ensure_owner_role(conn, password: str) -> None:
    """On a superuser's connection ``conn``: ``crm_owner`` exists, is no superuser, and has
    :data:`OWNER_ATTRIBUTES` and ``password`` (sent as a SCRAM verifier). A ``crm_owner``
    that is the cluster's bootstrap superuser cannot be changed: :class:`WarehouseError`."""
    from psycopg import sql

    row = conn.execute("select oid = 10 from pg_roles where rolname = %s", (OWNER,)).fetchone()
    if row and row[0]:
        raise WarehouseError(
            "crm_owner is this server's bootstrap superuser: it cannot be made an ordinary role;"
            " re-create the server with crm_admin as its superuser (docs/security.md)"
        )
    verifier = conn.pgconn.encrypt_password(password.encode(), OWNER.encode(), b"scram-sha-256").decode()
    verb = "alter" if row else "create"
    conn.execute(
        sql.SQL(f"{verb} role {{}} with {OWNER_ATTRIBUTES} password {{}}").format(
            sql.Identifier(OWNER), sql.Literal(verifier)
        )
    )
    # The owner ends the platform roles' sessions on its databases (drop database ... with
    # (force), a copy from a template, a stuck load); never a superuser's (pg_signal_backend).
    conn.execute(sql.SQL("grant pg_signal_backend to {}").format(sql.Identifier(OWNER)))
    # The owner turns statement logging on for the reading roles it creates (migration 0016,
    # crm rm grant): a superuser-only parameter, granted for that one parameter (PostgreSQL 15+).
    if conn.info.server_version >= 150000:
        conn.execute(
            sql.SQL("grant set on parameter {} to {}").format(
                sql.Identifier(AUDIT_LOG_ROLE_SETTING), sql.Identifier(OWNER)
            )
        )


def ensure_owned_database(conn, database: str) -> None:
    """On a superuser's connection: ``database`` exists and belongs to ``crm_owner``."""
    from psycopg import sql

    row = conn.execute(
        "select pg_get_userbyid(datdba) from pg_database where datname = %s", (database,)
    ).fetchone()
    if row is None:
        conn.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(database), sql.Identifier(OWNER))
        )
    elif row[0] != OWNER:
        conn.execute(
            sql.SQL("alter database {} owner to {}").format(sql.Identifier(database), sql.Identifier(OWNER))
        )
