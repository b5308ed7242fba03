"""dbstash as a Django app: ``INSTALLED_APPS += ["dbstash.contrib.django"]`` and a ``DBSTASH`` setting.

``DBSTASH`` holds the keywords of [`dbstash.Settings.create()`][dbstash.Settings.create] (``remote`` at least;
retention,
compression, encryption, signing, ...) and ``backup_before_migrate``: with it ``migrate`` backs the
database up first when it has migrations to apply (not for an empty plan, not for the test
database, not for a database that holds nothing yet), and a failed backup stops the migration.
Commands: ``dbstash_backup``, ``dbstash_list``, ``dbstash_restore`` (``--database`` names the
``DATABASES`` alias, ``default`` by default).
"""
