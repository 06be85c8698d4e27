"""The core's personal data sources, one module per area (listed in order in `registry.CORE_SOURCES`)."""
