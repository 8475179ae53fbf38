"""jobctl: the operator's command-line tool for APScheduler 3 job stores."""

__version__ = "0.1.0"
