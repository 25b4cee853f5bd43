"""django-data-exchange-tool: bulk imports of large files into Django models."""

__version__ = "0.2.0.dev0"
