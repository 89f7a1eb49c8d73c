-- Exception changes numbered: each open or close takes the next number (never below the ledger
-- position of the fact behind it), the `position` its NATS message carries.
-- depends: 0005.personal-data

CREATE TABLE IF NOT EXISTS ledger_exception_clock (id INTEGER PRIMARY KEY, position BIGINT NOT NULL);
INSERT INTO ledger_exception_clock (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
