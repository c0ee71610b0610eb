"""The admin API (/admin/v1), served by the supervisor."""
