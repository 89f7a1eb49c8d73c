-- Personal data: which inbox bodies were erased, when and why; the reports of Shopify data requests.
-- depends: 0004.shopify-push

CREATE TABLE IF NOT EXISTS inbox_erasures (inbox_id BIGINT PRIMARY KEY, reason TEXT NOT NULL, erased_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS data_requests (request_id TEXT PRIMARY KEY, shop TEXT NOT NULL, customer_id TEXT, report TEXT NOT NULL, created_at TEXT NOT NULL);
