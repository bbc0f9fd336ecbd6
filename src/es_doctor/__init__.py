"""es-doctor: the EMAIL_SENDER_1 Go Native troubleshooting guide as code."""

__version__ = "0.1.0"
