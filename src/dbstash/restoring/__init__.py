"""The read side: list, restore and verify backups."""
