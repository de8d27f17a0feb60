"""One module per command (plan, PR plan, apply, destroy, rollback, batch): sequences the stages."""
