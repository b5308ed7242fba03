"""Every environment variable dbstash reads: the one list the configuration reference is generated from.

``docs/reference.md`` is written from `ENV_VARS` by the docs build (``scripts/mkdocs_hooks.py``), and
``tests/unit/test_envvars.py`` checks that [`dbstash.settings.config.Settings.from_env()`][dbstash.Settings.from_env] reads exactly
these names, so the reference and the code cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One variable: its name, default, accepted form, and whether it holds a secret."""

    name: str
    section: str
    default: str
    form: str
    secret: bool = False


_KEEP = "keep the newest backup of each of the last N {} (0 = rule off)"

ENV_VARS: tuple[EnvVar, ...] = (
    # connection
    EnvVar("DB_URI", "Connection", "—", "connection URI of the engine (postgresql://, mysql://, mariadb://, redis://, rediss://, mongodb://, mongodb+srv://, sqlite:///path)", True),
    EnvVar("DB_URI_FILE", "Connection", "—", "file holding DB_URI (Docker secrets); wins over DB_URI"),
    EnvVar("DB_ENGINE", "Connection", "set by each image", "pg, mysql, mariadb, redis, mongo, sqlite; needed with DB_HOST; must match DB_URI's scheme (mariadb may serve mysql://)"),
    EnvVar("DB_HOST", "Connection", "—", "host, when no URI is given"),
    EnvVar("DB_PORT", "Connection", "engine default", "TCP port"),
    EnvVar("DB_NAME", "Connection", "—", "database; a comma-separated list or all: one backup per database (see DB_ALL_MODE); SQLite: the file"),
    EnvVar("DB_EXCLUDE", "Connection", "—", "with DB_NAME=all: names or globs left out (system databases are left out unless named)"),
    EnvVar("DB_ALL_MODE", "Connection", "separate", "DB_NAME=all: separate (one object per database) or single (one pg_dumpall / --all-databases / mongodump stream)"),
    EnvVar("DB_GLOBALS", "Connection", "true for several databases where supported", "also back up roles/users and grants (_globals object): PostgreSQL, MariaDB"),
    EnvVar("DB_PARALLEL", "Connection", "1", "several databases: how many are dumped at once"),
    EnvVar("DB_USER", "Connection", "—", "user"),
    EnvVar("DB_PASSWORD", "Connection", "—", "password (fills a URI without one)", True),
    EnvVar("DB_PASSWORD_FILE", "Connection", "—", "file holding the password; wins over DB_PASSWORD"),
    EnvVar("DB_AUTH_SOURCE", "Connection", "admin", "MongoDB auth database when the URI has no authSource"),
    # rclone
    EnvVar("RCLONE_REMOTE", "rclone", "— (required)", "rclone path: s3:bucket/backups, b2:bucket, /srv/backups, crypt-remote:; several, separated by spaces or new lines, get the same dump at once (a path with a space: name it through an alias remote)"),
    EnvVar("RCLONE_REMOTE_FILE", "rclone", "—", "file holding RCLONE_REMOTE (Docker secrets: a connection string with a key); wins over RCLONE_REMOTE"),
    EnvVar("BACKUP_REQUIRED_DESTINATIONS", "rclone", "all", "with several destinations: all, any, or how many must commit for the run to succeed (the copies that committed stay either way)"),
    EnvVar("RCLONE_CONFIG", "rclone", "—", "base64 of an rclone.conf (kept in a memfd, never on disk)", True),
    EnvVar("RCLONE_CONFIG_FILE", "rclone", "/config/rclone.conf if present", "path of an rclone.conf"),
    EnvVar("RCLONE_EXTRA_ARGS", "rclone", "—", "flags added to every rclone call, shell-quoted"),
    EnvVar("RCLONE_COMMIT", "rclone", "auto", "auto: object stores (S3, GCS, Azure Blob, B2, Swift, OCI) upload straight to the final name under a guardian; others upload to a partial name and rename. direct or rename force one"),
    EnvVar("RCLONE_RC_URL", "rclone", "—", "base URL of a running rclone rcd: use the rc transport"),
    EnvVar("RCLONE_RC_USER", "rclone", "—", "the rcd's --rc-user"),
    EnvVar("RCLONE_RC_PASS", "rclone", "—", "the rcd's --rc-pass", True),
    EnvVar("RCLONE_RC_PASS_FILE", "rclone", "—", "file holding RCLONE_RC_PASS; wins over it"),
    EnvVar("DBSTASH_RCLONE_BINARY", "rclone", "rclone", "the rclone executable (PATH, or beside the Python interpreter)"),
    # schedule, naming, dump
    EnvVar("BACKUP_SCHEDULE", "Schedule and naming", "0 2 * * *", "cron expression (5 fields; a 6th is seconds), or once"),
    EnvVar("BACKUP_ON_START", "Schedule and naming", "false", "true: one backup at start-up, then the schedule"),
    EnvVar("BACKUP_NAME_TEMPLATE", "Schedule and naming", "{db}-{date}-{time}", "tokens {db} {engine} {date} {time} {ts} {uuid}; no / or .."),
    EnvVar("BACKUP_EXTENSION", "Schedule and naming", "auto", ".sql, .dump, .archive, ... (replaces the automatic one)"),
    EnvVar("TZ", "Schedule and naming", "UTC", "IANA zone for the schedule and the names"),
    EnvVar("BACKUP_MODE", "Dump", "stream", "stream, directory or tar"),
    EnvVar("BACKUP_TEMP_DIR", "Dump", "/tmp/dbstash-work", "absolute path for directory and tar modes"),
    EnvVar("BACKUP_COMPRESS", "Dump", "false", "true (the tool's native compression), false, zstd, gzip, zstd:LEVEL, gzip:LEVEL"),
    EnvVar("DUMP_EXTRA_ARGS", "Dump", "—", "flags for the dump tool, shell-quoted; win over BACKUP_COMPRESS"),
    EnvVar("RESTORE_EXTRA_ARGS", "Dump", "—", "flags appended to the restore tool (psql/pg_restore, mysql, mongorestore), shell-quoted, e.g. --noIndexRestore"),
    # encryption
    EnvVar("BACKUP_ENCRYPT", "Encryption", "none", "age: encrypt every backup to AGE_RECIPIENTS with the age command (.age appended; stream and tar modes)"),
    EnvVar("AGE_RECIPIENTS", "Encryption", "—", "age public keys (age1...) or SSH public keys (ssh-ed25519, ssh-rsa), comma or newline separated"),
    EnvVar("AGE_RECIPIENTS_FILE", "Encryption", "—", "file of recipients, one per line (# comments); added to AGE_RECIPIENTS"),
    EnvVar("AGE_IDENTITY_FILE", "Encryption", "—", "restore and verify only: the age identity (private key) file, mode 0600; never needed to back up"),
    # signing
    EnvVar("BACKUP_SIGNING_KEY_FILE", "Signing", "—", "an OpenSSH ed25519 private key (ssh-keygen -t ed25519 -N ''), mode 0600/0400: every manifest gets <manifest>.sig (SSHSIG, namespace dbstash)"),
    EnvVar("BACKUP_TRUSTED_KEYS", "Signing", "—", "OpenSSH public keys (one a line, # comments) or allowed_signers lines: restore, verify, list, latest and retention accept only backups they signed"),
    EnvVar("BACKUP_TRUSTED_KEYS_FILE", "Signing", "—", "a file of such keys (an allowed_signers file will do); added to BACKUP_TRUSTED_KEYS"),
    # retention
    EnvVar("RETENTION_MAX_FILES", "Retention", "0 (unlimited)", "keep at most N backups"),
    EnvVar("RETENTION_MAX_DAYS", "Retention", "0 (unlimited)", "delete backups older than N days (decimals allowed)"),
    EnvVar("RETENTION_KEEP_HOURLY", "Retention", "0", _KEEP.format("hours")),
    EnvVar("RETENTION_KEEP_DAILY", "Retention", "0", _KEEP.format("days")),
    EnvVar("RETENTION_KEEP_WEEKLY", "Retention", "0", _KEEP.format("ISO weeks")),
    EnvVar("RETENTION_KEEP_MONTHLY", "Retention", "0", _KEEP.format("months")),
    EnvVar("RETENTION_KEEP_YEARLY", "Retention", "0", _KEEP.format("years")),
    # notifications and hooks
    EnvVar("NOTIFY_WEBHOOK_URL", "Notifications and hooks", "—", "Slack, Discord or any JSON webhook URL", True),
    EnvVar("NOTIFY_WEBHOOK_FORMAT", "Notifications and hooks", "auto", "auto, slack, discord, json"),
    EnvVar("NOTIFY_ON", "Notifications and hooks", "failure", "always, failure, success"),
    EnvVar("NOTIFY_URLS", "Notifications and hooks", "—", "apprise URLs (json://, mailto://, tgram://, ntfy://, ...; 100+ services), separated by spaces or commas; honours NOTIFY_ON; needs dbstash[apprise] (in the images)", True),
    EnvVar("NOTIFY_URLS_FILE", "Notifications and hooks", "—", "file holding NOTIFY_URLS (Docker secrets); wins over it"),
    EnvVar("NOTIFY_PING_URL", "Notifications and hooks", "—", "healthchecks.io-style ping URL (start, success, fail)", True),
    EnvVar("NOTIFY_EMAIL_TO", "Notifications and hooks", "—", "comma-separated addresses"),
    EnvVar("NOTIFY_EMAIL_FROM", "Notifications and hooks", "dbstash@<host>", "sender address"),
    EnvVar("NOTIFY_SMTP_URL", "Notifications and hooks", "—", "smtp://, smtps:// or smtp+starttls://user@host:port", True),
    EnvVar("NOTIFY_SMTP_PASSWORD", "Notifications and hooks", "—", "SMTP password", True),
    EnvVar("NOTIFY_SMTP_PASSWORD_FILE", "Notifications and hooks", "—", "file holding the SMTP password"),
    EnvVar("NOTIFY_TIMEOUT", "Notifications and hooks", "10s", "per-delivery timeout (30s, 1m)"),
    EnvVar("HOOK_PRE_BACKUP", "Notifications and hooks", "—", "shell command before each backup; non-zero aborts it"),
    EnvVar("HOOK_POST_BACKUP", "Notifications and hooks", "—", "shell command after each backup (gets DBSTASH_STATUS, DBSTASH_FILE)"),
    EnvVar("HOOK_TIMEOUT", "Notifications and hooks", "5m", "timeout of each hook"),
    # service and safety
    EnvVar("BACKUP_TIMEOUT", "Service and safety", "0 (no limit)", "maximum duration of one backup (1h, 30m, 90s)"),
    EnvVar("BACKUP_STALL_TIMEOUT", "Service and safety", "45s", "fail a run when no byte moved from the dump to the upload for this long (a frozen server, a dead remote); 0 = never"),
    EnvVar("BACKUP_LOCK", "Service and safety", "true", "never two overlapping runs of this job"),
    EnvVar("BACKUP_LOCK_FILE", "Service and safety", "per job in $TMPDIR", "lock file path (share it across containers through a volume)"),
    EnvVar("DRY_RUN", "Service and safety", "false", "show what would happen; touch nothing"),
    EnvVar("HEALTH_PORT", "Service and safety", "8080", "port of /healthz and /metrics in service mode; 0 = off"),
    EnvVar("HEALTH_ADDR", "Service and safety", "0.0.0.0", "address of the health endpoint"),
    EnvVar("LOG_LEVEL", "Service and safety", "info", "debug, info, warn, error"),
    EnvVar("LOG_FORMAT", "Service and safety", "json", "json or text"),
    # restore drill
    EnvVar("VERIFY_TARGET_URI", "Restore drill", "—", "scratch database verify restores into (file path for SQLite/Redis); its data is dropped after", True),
    EnvVar("VERIFY_SCHEDULE", "Restore drill", "—", "cron expression: run verify in service mode"),
)  # fmt: skip


def markdown() -> str:
    """The configuration reference as Markdown tables, one per section, in `ENV_VARS` order."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `dbstash.settings.envvars.ENV_VARS` at docs build time; a test keeps that list equal to",
        "what `Settings.from_env` reads. Variables marked **secret** are masked in logs, errors, dry",
        "runs and notifications, and never reach a child process's argv or environment.",
    ]
    section = None
    for v in ENV_VARS:
        if v.section != section:
            section = v.section
            lines += ["", f"## {section}", "", "| variable | default | form |", "|---|---|---|"]
        name = f"`{v.name}`" + (" (**secret**)" if v.secret else "")
        form = v.form.replace("|", "\\|")
        lines.append(f"| {name} | {v.default} | {form} |")
    return "\n".join(lines) + "\n"


__all__ = ["ENV_VARS", "EnvVar", "markdown"]
