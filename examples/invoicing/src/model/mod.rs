//! What is stored, how it is validated, and the SQL that reads and writes it.

pub mod attachment;
pub mod invoice;
pub mod party;
