def send_reports(customer, fmt="pdf"):
    return f"report for {customer.name} as {fmt}"


def sync_inventory():
    return "synced"


def rotate_logs(keep=7):
    return keep


def cleanup(*paths, **options):
    return paths, options


def touch(path):
    """Used by the live-scheduler tests: proves a job ran by creating a file."""
    with open(path, "a") as fh:
        fh.write("ran\n")
