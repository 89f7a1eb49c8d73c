-- Each Idempotency-Key claim names its owner (a process and a request) so a claim nobody runs any
-- more can be taken over at once.
-- depends: 0001.baseline

ALTER TABLE idempotency_keys ADD COLUMN owner TEXT;
