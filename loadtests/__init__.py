"""Load tests: file generators and an end-to-end benchmark against peers (see README.md)."""
