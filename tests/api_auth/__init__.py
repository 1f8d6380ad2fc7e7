"""Tests of the API's authentication (SigV4), access rules, PostgreSQL store and replica bootstraps."""
