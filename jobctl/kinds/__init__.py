"""What a stored record means, by kind of store: `aps3` for APScheduler 3's job_state pickles
(the SQL table and Redis alike)."""
