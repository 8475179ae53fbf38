def send_reports(customer, fmt="pdf"):
    return f"report for {customer.name} as {fmt}"


def sync_inventory():
    return "synced"


def rotate_logs(keep=7):
    return keep


def cleanup(*paths, **options):
    return paths, options


def touch(path, seconds=0):
    """Used by the live-scheduler tests: proves a job ran by creating a file (a line per run),
    taking SECONDS more if given."""
    with open(path, "a") as fh:
        fh.write("ran\n")
    if seconds:
        import time

        time.sleep(seconds)


class InventoryFeedError(Exception):
    """What `fail` raises: a clear, recognisable error for the run records."""


def fail(path, message="inventory feed unreachable", seconds=0):
    """A job that fails: a line in PATH (it ran), SECONDS of work, then InventoryFeedError(MESSAGE)."""
    touch(path, seconds)
    raise InventoryFeedError(message)
