-- A document posted without an answer (a timeout) may have been accepted by the ERP: it is never voided.
-- depends: 0006.exception-changes

ALTER TABLE erp_queue ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
