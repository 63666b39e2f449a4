"""Applies the sql/ migrations with the admin user; run by a CDK trigger on deploy."""
