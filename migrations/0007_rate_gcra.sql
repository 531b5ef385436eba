-- Rate limits by GCRA (the generic cell rate algorithm) instead of fixed one-minute windows,
-- which let twice a key's limit through within a second across a minute boundary (a full
-- window's worth at :59 and another at :00). Each key keeps one theoretical arrival time `tat`:
-- a request is admitted when `greatest(tat, now())` plus one emission interval (a minute divided
-- by the key's limit) is at most a minute ahead of now, and that sum becomes the new `tat`; a
-- refused request changes nothing. A key may burst its whole per-minute limit at once, but after
-- that it gets one request per emission interval, so no span of d seconds admits more than the
-- limit plus d / interval. No row, or a `tat` in the past, is a key with its full burst.
-- Unlogged like `rate_windows` was: shared by every ingress process, no WAL flush on the
-- request's path, and a crash merely forgets who was throttled.
CREATE UNLOGGED TABLE rate_gcra (
    key_id  uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    tat     timestamptz NOT NULL
);

DROP TABLE rate_windows;
