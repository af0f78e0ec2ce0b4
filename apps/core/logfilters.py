"""Logging filters. urllib3 logs every request line at DEBUG ('POST /services/T000/B000/XXXX HTTP/1.1'): the
path of a Slack or webhook URL is its secret, so the path is hidden (the host stays, for diagnosis)."""
import logging


class HideRequestPaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple("/(path hidden)" if isinstance(a, str) and a.startswith("/") else a
                                for a in record.args)
        return True
