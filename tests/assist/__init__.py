"""Tests of ``anyreach_listen/assist``: presence and guidance."""
