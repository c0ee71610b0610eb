"""SQLite through APSW: used by the control plane (workers/) only."""
