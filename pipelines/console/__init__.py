"""What a user sees while a job runs: one progress bar, a log file, one-line errors."""
