//! Fault injection for fail-closed tests: make every audit insert fail, for real, in the
//! database (a `BEFORE INSERT` trigger that raises), and undo it. Test-only: nothing in the
//! host calls this module.

use crate::store::{Store, StoreError, audit};

/// From now on every insert into `audit` fails, on this database, for every host instance.
pub async fn break_audit_writes(store: &Store) -> Result<(), StoreError> {
    audit::set_insert_fault(store, true).await
}

/// Undoes [`break_audit_writes`]; harmless when writes were not broken.
pub async fn repair_audit_writes(store: &Store) -> Result<(), StoreError> {
    audit::set_insert_fault(store, false).await
}
