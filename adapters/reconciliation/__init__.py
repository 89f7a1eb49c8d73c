"""Reconciliation and drift diagnosis: outside inventory levels compared with the ledger.

Modules:
- `facts`: the stock facts of many SKU-locations, read in bulk from the event log, and the
  pure fold that gives each one's quantities as of a moment (`StockStreams`, `fold`).
- `ports`: what the reconciler needs from the rest of the service, named by role
  (`IdentityMap`, `InboundEvidence`, `SequenceGaps`, `ExceptionBook`, `InventorySnapshotSource`).
- `diagnosis`: ranked explanations of one mismatch, drawn from the ledger's own facts (pure).
- `engine`: `Reconciler`: translate, compare as of `observed_at`, diagnose, raise and close
  `drift` exceptions, keep the run.
- `thresholds`: per-source absolute and percent thresholds.
- `sources`: snapshot adapters (Shopify observed levels, the ERP's HTTP export).
- `schedule`: the periodic job per configured source.
- `report`: CSV for finance and a rich table for the CLI.
"""
