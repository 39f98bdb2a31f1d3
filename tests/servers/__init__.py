"""Test servers: stand-ins for services the project talks to."""
