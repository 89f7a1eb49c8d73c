-- The outbound ATS push to Shopify: per-(shop, location, SKU) writes, its position, targets, sync status.
-- depends: 0003.erp-leases

CREATE TABLE IF NOT EXISTS shopify_writes (shop TEXT NOT NULL, location_id TEXT NOT NULL, sku TEXT NOT NULL, channel TEXT NOT NULL, item_id TEXT, desired BIGINT NOT NULL, position BIGINT NOT NULL, enqueued_at TEXT NOT NULL, changed_at TEXT NOT NULL, known BIGINT, accepted BIGINT, accepted_position BIGINT, accepted_at TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL DEFAULT 0, reason TEXT, PRIMARY KEY (shop, location_id, sku));
CREATE INDEX IF NOT EXISTS shopify_writes_pending ON shopify_writes (shop, position);
CREATE TABLE IF NOT EXISTS shopify_push_position (name TEXT PRIMARY KEY, position BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS shopify_targets (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, shop TEXT, location_id TEXT, actor TEXT NOT NULL, at TEXT NOT NULL, fed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS shopify_targets_channel ON shopify_targets (channel, id);
CREATE TABLE IF NOT EXISTS shopify_sync (shop TEXT PRIMARY KEY, throttle TEXT, stale_compares BIGINT NOT NULL DEFAULT 0, last_accepted_at TEXT, last_accepted_position BIGINT, recovery_checkpoint TEXT, recovery_run_at TEXT, recovered BIGINT NOT NULL DEFAULT 0, configured_at TEXT);
