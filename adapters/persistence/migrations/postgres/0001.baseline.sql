-- The ledger's own tables as the create_tables functions made them before versioned migrations
-- (IF NOT EXISTS: a database made by those functions takes this step unchanged).

CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, created_by TEXT, expires_at TEXT, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS admin_audit (id BIGSERIAL PRIMARY KEY, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channel_policies (id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, locations TEXT NOT NULL, safety_stock BIGINT NOT NULL, overrides TEXT NOT NULL, buffer_units BIGINT NOT NULL, buffer_percent INTEGER NOT NULL, excluded TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS channel_policies_channel ON channel_policies (channel, id);
CREATE TABLE IF NOT EXISTS projection_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL, policy_version BIGINT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projection_corrections (name TEXT NOT NULL, row_key TEXT NOT NULL, CONSTRAINT projection_corrections__pk PRIMARY KEY (name, row_key));
CREATE TABLE IF NOT EXISTS ledger_outbox (id BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL, payload TEXT NOT NULL, msg_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS ledger_exceptions (kind TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, position BIGINT, opened_at TEXT NOT NULL, closed_at TEXT, times_opened INTEGER NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS ledger_exceptions_status ON ledger_exceptions (status, kind);
CREATE TABLE IF NOT EXISTS mappings (source TEXT NOT NULL, kind TEXT NOT NULL, external_id TEXT NOT NULL, canonical TEXT NOT NULL, version BIGINT NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (source, kind, external_id));
CREATE TABLE IF NOT EXISTS mapping_history (version BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, external_id TEXT NOT NULL, old TEXT, new TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS mapping_history_key ON mapping_history (source, kind, external_id);
CREATE TABLE IF NOT EXISTS inbox (id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, external_id TEXT NOT NULL, kind TEXT NOT NULL, body BYTEA NOT NULL, headers TEXT NOT NULL, received_at TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, fingerprint TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1, wait_for TEXT, outcome TEXT, mapping_version BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, UNIQUE (source, external_id));
CREATE INDEX IF NOT EXISTS inbox_status ON inbox (status, id);
CREATE INDEX IF NOT EXISTS inbox_wait ON inbox (wait_for);
CREATE TABLE IF NOT EXISTS inbox_uses (inbox_id BIGINT NOT NULL, mapping TEXT NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (inbox_id, mapping));
CREATE INDEX IF NOT EXISTS inbox_uses_mapping ON inbox_uses (mapping);
CREATE TABLE IF NOT EXISTS shopify_observations (kind TEXT NOT NULL, object_id TEXT NOT NULL, location_id TEXT NOT NULL, available BIGINT, sku TEXT, updated_at TEXT, inbox_id BIGINT NOT NULL, PRIMARY KEY (kind, object_id, location_id));
CREATE TABLE IF NOT EXISTS pos_sequences (store TEXT NOT NULL, sequence BIGINT NOT NULL, batch_id TEXT NOT NULL, inbox_id BIGINT NOT NULL, PRIMARY KEY (store, sequence));
CREATE TABLE IF NOT EXISTS pos_transactions (store TEXT NOT NULL, txn_id TEXT NOT NULL, type TEXT NOT NULL, lines TEXT NOT NULL, inbox_id BIGINT NOT NULL, PRIMARY KEY (store, txn_id));
CREATE TABLE IF NOT EXISTS erp_queue (id BIGSERIAL PRIMARY KEY, document TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, order_id TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL, position BIGINT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0, last_error TEXT, erp_reference TEXT, created_at TEXT NOT NULL, posted_at TEXT);
CREATE INDEX IF NOT EXISTS erp_queue_due ON erp_queue (status, next_attempt_at, id);
CREATE TABLE IF NOT EXISTS erp_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS reconciliations (id TEXT PRIMARY KEY, source TEXT NOT NULL, observed_at TEXT NOT NULL, ran_at TEXT NOT NULL, compared BIGINT NOT NULL, mismatches BIGINT NOT NULL, drift BIGINT NOT NULL, report TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reconciliations_ran ON reconciliations (source, ran_at);
CREATE TABLE IF NOT EXISTS idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, status INTEGER, headers TEXT, body BYTEA, completed_at TEXT, PRIMARY KEY (scope, key));
