"""A stand-in application whose schedules live in an APScheduler 4 data store.

jobctl's tests write stores with these functions and classes through APScheduler 4.0.0a6 (in
its own venv, .ci/aps4-venv.sh), then run jobctl where neither this package nor APScheduler 4
can be imported, exactly as an operator would.
"""
