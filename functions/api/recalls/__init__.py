"""Recalls and subscriptions: the logic the routes call and the SQL it runs."""
