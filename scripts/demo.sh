#!/usr/bin/env bash
# The main job on an embedded default: a SQLite database backed up into a local folder through rclone.
source "$(dirname "$0")/lib.sh"

apt_ensure sqlite3 sqlite3
venv_ensure rclone

DEMO="$ROOT/demo"
mkdir -p "$DEMO"
"$VENV/bin/python" - "$DEMO/app.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)")
con.executemany("INSERT INTO notes(body) VALUES (?)", [(f"note {i}",) for i in range(1000)])
con.commit()
print(f"demo database {sys.argv[1]}: {con.execute('SELECT count(*) FROM notes').fetchone()[0]} rows", file=sys.stderr)
PY

export PATH="$VENV/bin:$PATH"
log "dbstash backup --uri sqlite:///$DEMO/app.db --remote $DEMO/backups --retention-max-files 5"
LOG_FORMAT=text dbstash backup --uri "sqlite:///$DEMO/app.db" --remote "$DEMO/backups" --retention-max-files 5 --json
log "what rclone sees in $DEMO/backups:"
RCLONE_CONFIG=/dev/null rclone lsl "$DEMO/backups"
