"""Test doubles: the DigitalOcean API double (digitalocean.py)."""
