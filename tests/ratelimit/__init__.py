"""Admission: sliding rate windows, quotas with reservations and revocations, in-process and on
Redis."""
