"""A stand-in for mongod, for the rocket-wizard lab (see ../README.md)."""
