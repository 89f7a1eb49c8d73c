-- A channel may count incoming units due within N days (include_incoming_days, 0: none).
-- depends: 0007.erp-uncertain

ALTER TABLE channel_policies ADD COLUMN include_incoming_days INTEGER NOT NULL DEFAULT 0;
