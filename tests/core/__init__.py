"""Unit tests for the pure core (``market_spine.core``): no database, no network, no clock."""
