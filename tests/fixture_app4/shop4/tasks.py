"""The application's task functions (APScheduler 4 stores them as "shop4.tasks:NAME")."""

import time


def send_report(customer, fmt="pdf"):
    return f"report for {customer.name} as {fmt}"


def sync_inventory():
    return "synced"


def rotate_logs(keep=7):
    return keep


def cleanup(*paths, **options):
    return len(paths), sorted(options)


def touch(path, *rest, **options):
    """Used by the live tests: proves a job ran by appending a line (the time) to a file."""
    with open(path, "a") as fh:
        fh.write(f"{time.time():.6f}\n")
    return path


def fail(message="boom"):
    """Used by the live tests: a job whose result (outcome error) has an exception."""
    raise RuntimeError(message)
