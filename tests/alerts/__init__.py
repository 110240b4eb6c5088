"""Tests of the alerts package (tests may import analytics; alerts itself may not)."""
