-- ERP postings are claimed with a lease (claimed_by, claimed_until), and an order's rows are read in order.
-- depends: 0002.idempotency-owner

ALTER TABLE erp_queue ADD COLUMN claimed_by TEXT;
ALTER TABLE erp_queue ADD COLUMN claimed_until DOUBLE PRECISION NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS erp_queue_order ON erp_queue (order_id, status, id);
