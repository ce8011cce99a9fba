//! PLACEHOLDER: replaced by the PostgreSQL job store.
pub struct PostgresJobStore;
