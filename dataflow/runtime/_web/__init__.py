"""The runtime's HTTP side: a bounded server (`_server`), the status page and its JSON API."""
