//! The routes. Each module owns its `Router`; [`crate::app`] merges them.

pub mod attachments;
pub mod files;
pub mod health;
pub mod invoices;
pub mod parties;
