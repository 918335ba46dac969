"""Traffic forecasting with virtual nodes: ``python -m tasks.traffic fit|validate|test|predict|plot``."""
