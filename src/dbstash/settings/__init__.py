"""What a job is configured with: the Settings types and their parsing from the environment."""
