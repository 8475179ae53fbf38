"""Schedules: stored triggers in words (`words`), their fire times (`fire`), and what an
operator types for a new one (`parse`)."""
